"""The template engine: strict variables, autoescaped HTML, and a sandbox whose escapes and bombs are refused."""

import pytest

from emailsvc.mail_templates.engine import RenderError, TemplateInvalid, check_source, render


def test_variables_are_listed_and_rendered():
    source = "Hi {{ name }}, {% for i in items %}{{ i }}{% endfor %}{% set x = 1 %}{{ x }}"
    assert check_source("body", source) == ["items", "name"]
    assert render("subject", "Hi {{ name|upper }}", {"name": "al"}) == "Hi AL"


def test_a_missing_variable_is_named():
    with pytest.raises(RenderError) as caught:
        render("body", "Hi {{ name }} from {{ shop }}", {"shop": "Acme"})
    assert caught.value.missing == ["name"]


def test_html_is_autoescaped_and_text_is_not():
    value = {"x": "<script>alert(1)</script>"}
    assert render("html", "<p>{{ x }}</p>", value) == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert render("body", "{{ x }}", value) == "<script>alert(1)</script>"


@pytest.mark.parametrize(
    "source, line",
    [("Hi {{ name ", 1), ("a\n{% if %}", 2), ("{{ x|no_such_filter }}", 1), ("{% for x in y %}", 1)],
)
def test_a_syntax_error_names_its_line(source, line):
    with pytest.raises(TemplateInvalid, match=f"^Line {line}: "):
        check_source("body", source)


BOMBS = {
    "python internals": ("{{ ''.__class__.__mro__ }}", {}),
    "subclasses": ("{{ ().__class__.__base__.__subclasses__() }}", {}),
    "a huge range": ("{{ range(10**9)|list }}", {}),
    "nested loops": ("{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}", {}),
    "loops over a variable": (
        "{% for a in xs %}{% for b in xs %}{% for c in xs %}{% endfor %}{% endfor %}{% endfor %}",
        {"xs": list(range(20000))},
    ),  # fmt: skip
    "string multiplication": ("{{ 'a' * 10**9 }}", {}),
    "a huge power": ("{{ 2 ** (10**9) }}", {}),
    "a wide center": ("{{ 'x'|center(10**9) }}", {}),
    "a wide ljust": ("{{ 'x'.ljust(10**9) }}", {}),
    "a wide % format": ("{{ '%0999999999d' % 1 }}", {}),
    "a wide format filter": ("{{ '%0999999999d'|format(1) }}", {}),
    "a wide str.format": ("{{ '{:>999999999}'.format(1) }}", {}),
    "doubling by ~": (
        "{% set a = v ~ v %}" + "".join("{% set a = a ~ a %}" for _ in range(12)) + "{{ a }}",
        {"v": "x" * 60000},
    ),  # fmt: skip
    "exponential macro": ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}", {}),
    "replace into every gap": ("{{ v|replace('', v) }}", {"v": "x" * 60000}),
    "a long join": ("{{ range(10000)|map('string')|join(v) }}", {"v": "x" * 60000}),
    "endless recursion": ("{% for x in [1] recursive %}{{ loop([1, 1]) }}{% endfor %}", {}),
    "lists summed": ("{{ range(100)|batch(1)|list|sum(start=[]) }}", {}),
}


@pytest.mark.parametrize("source, variables", BOMBS.values(), ids=BOMBS.keys())
def test_escapes_and_bombs_are_refused(source, variables):
    # Each is refused within its budget (50,000 steps, 1 s): left alone, the slowest would run for hours.
    with pytest.raises(RenderError):
        render("body", source, variables)
