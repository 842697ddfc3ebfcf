"""The template engine: Jinja2 in its immutable sandbox, strict about undefined variables, with bounded work.

A template is written by a client and rendered in the web process at accept time, so it must not be
able to reach Python internals (the sandbox), nor pin a worker or exhaust its memory: every call,
filter and loop iteration costs a step from a per-render budget, the operators and filters that can
multiply a string check the size first, and every string the template builds, as well as the output,
is held to MAX_OUTPUT characters. A render that breaks a rule fails with RenderError, never a 500.
"""

import contextvars
import functools
import re
import time

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT = 10 * 1024 * 1024  # characters of any string a render builds: the default MAX_MESSAGE_BYTES
MAX_STEPS = 50_000  # calls, filters and loop turns per render (about 0.4 s); a long email needs a few thousand
MAX_SECONDS = 1.0  # a backstop for work the steps do not see
MAX_RANGE = 10_000  # items of range(); the sandbox's own limit is 100,000
MAX_WIDTH = 1000  # a width, count or batch size given to a filter
MAX_EXPONENT_BITS = 10_000  # size of the result of `**`
STEP = "__emailsvc_step"  # a no-op global each loop iteration calls, so iterations are counted
# A %-format or str.format field with a width or precision of four digits or more, or one taken from an argument.
WIDE_PERCENT_FIELD = re.compile(r"%[-#0 +]*(\*|[0-9]{4,}|\.\*|\.[0-9]{4,})")
WIDE_BRACE_FIELD = re.compile(r"\{[^{}]*:[^{}]*([0-9]{4,}|\{)")
# Filters and str methods whose number argument is a width or count that sizes what they return.
WIDTH_TAKERS = {"center", "ljust", "rjust", "zfill", "expandtabs", "batch", "slice"}
_budget = contextvars.ContextVar("template_budget")


class RenderError(Exception):
    """A template could not be rendered; `missing` names undefined variables when that is why."""

    def __init__(self, message, missing=()):
        super().__init__(message)
        self.missing = list(missing)


class TemplateInvalid(Exception):
    """A template's source does not compile; the message gives the line."""


class Budget:
    """The steps and time one render may still use."""

    def __init__(self):
        self.steps = MAX_STEPS
        self.deadline = time.monotonic() + MAX_SECONDS

    def charge(self, steps=1):
        self.steps -= steps
        if self.steps < 0:
            raise RenderError(f"The template does too much work (more than {MAX_STEPS} calls, filters and loop turns).")
        if self.steps % 256 == 0 and time.monotonic() > self.deadline:
            raise RenderError(f"The template took longer than {MAX_SECONDS} s to render.")


def charge(steps=1):
    """Take `steps` from the current render's budget (a render outside render() has none: nothing to bound)."""
    budget = _budget.get(None)
    if budget is not None:
        budget.charge(steps)


def checked(value):
    """Return `value`, or raise RenderError when it is a string or sequence over MAX_OUTPUT."""
    if isinstance(value, str | list | tuple | bytes) and len(value) > MAX_OUTPUT:
        raise RenderError(f"The template builds a value longer than {MAX_OUTPUT} characters.")
    return value


def _check_format(text):
    if isinstance(text, str) and (WIDE_PERCENT_FIELD.search(text) or WIDE_BRACE_FIELD.search(text)):
        raise RenderError(f"A format width or precision must be below {MAX_WIDTH}.")


class StepCountingCodeGenerator(CodeGenerator):
    """Jinja's code generator with every loop iteration calling STEP, and every `~` checked for size."""

    def visit_For(self, node, frame):
        step = nodes.Call(nodes.Name(STEP, "load", lineno=node.lineno), [], [], None, None, lineno=node.lineno)
        node.body = [nodes.ExprStmt(step, lineno=node.lineno), *node.body]
        super().visit_For(node, frame)

    def visit_Concat(self, node, frame):
        self.write("environment.checked_concat(")
        super().visit_Concat(node, frame)
        self.write(")")


class TemplateSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with a budget: see the module's docstring."""

    code_generator_class = StepCountingCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, autoescape):
        super().__init__(autoescape=autoescape, undefined=StrictUndefined, auto_reload=False, cache_size=400)
        self.globals = {"range": self.budgeted_range, "dict": dict, STEP: lambda: None}
        self.filters = {name: self._bounded_filter(name, f) for name, f in self.filters.items() if name != "pprint"}

    @staticmethod
    def budgeted_range(*args):
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise RenderError(f"range() may give at most {MAX_RANGE} numbers.")
        return numbers

    def checked_concat(self, value):
        return checked(value)

    def call(__self, __context, __obj, *args, **kwargs):
        # Double underscores as in the sandbox's own: a template's keyword argument cannot collide with them.
        charge()
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format in a function of its own
        if isinstance(getattr(method, "__self__", None), str):
            if method.__name__ == "join" and args and not isinstance(args[0], str | list | tuple | dict):
                args = (list(args[0]), *args[1:])
            # str.join(items): the items are the argument and the separator the string
            joined = method.__name__ == "join" and args
            if joined:
                check_growth("join", args[0], [method.__self__], {})
            else:
                check_growth(method.__name__, method.__self__, args, kwargs)
        return checked(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context, operator, left, right):
        charge()
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                    _check_size(len(sequence) * max(times, 0))
        elif operator == "**" and isinstance(left, int | float) and isinstance(right, int | float):
            if abs(left) > 1 and right * max(abs(left), 2).bit_length() > MAX_EXPONENT_BITS:
                raise RenderError("The result of ** would be too large.")
        elif operator == "%":
            _check_format(left)
        return checked(super().call_binop(context, operator, left, right))

    @staticmethod
    def _bounded_filter(name, function):
        """Wrap a filter so it costs a step, refuses to grow a value past MAX_OUTPUT, and never returns one."""

        def bounded(*args, **kwargs):
            charge()
            # A filter that takes the context or environment first (pass_context, …) has the value second.
            skip = 1 if args and (hasattr(args[0], "environment") or hasattr(args[0], "filters")) else 0
            value, *rest = args[skip:] or [None]
            if name == "join" and not isinstance(value, str | list | tuple | dict):
                value = list(value)  # what the filter does itself; materialised here so its size can be checked
                args = (*args[:skip], value, *rest)
            check_growth(name, value, rest, kwargs)
            return checked(function(*args, **kwargs))

        if hasattr(function, "jinja_pass_arg"):  # pass_context / pass_eval_context / pass_environment
            bounded.jinja_pass_arg = function.jinja_pass_arg
        return bounded


def check_growth(name, value, args, kwargs):
    """Refuse a filter or str method (`name` on `value`) that would build a value over MAX_OUTPUT, before it does."""
    extras = [*args, *kwargs.values()]
    text = value if isinstance(value, str) else ""
    if name in ("format", "format_map"):
        _check_format(value)
    elif name in WIDTH_TAKERS and any(isinstance(x, int) and x > MAX_WIDTH for x in extras):
        raise RenderError(f"`{name}` takes a width or count of at most {MAX_WIDTH}.")
    if name == "indent" and extras:
        width = extras[0] if isinstance(extras[0], int) else len(str(extras[0]))
        _check_size(len(text) + (text.count("\n") + 1) * width)
    elif name == "wordwrap":
        wrap = next((x for x in extras if isinstance(x, str)), "\n")
        width = extras[0] if extras and isinstance(extras[0], int) and extras[0] > 0 else 79
        _check_size(len(text) * (1 + len(wrap) // width + 1))
    elif name == "replace" and len(extras) >= 2 and all(isinstance(x, str) for x in extras[:2]):
        old, new = extras[:2]
        _check_size(len(text) + (text.count(old) if old else len(text) + 1) * len(new))
    elif name == "join" and isinstance(value, list | tuple):
        separator = next((x for x in extras if isinstance(x, str)), "")
        _check_size(len(separator) * len(value))
    elif name == "sum" and any(not isinstance(x, int | float) for x in [*args[1:2], kwargs.get("start", 0)]):
        raise RenderError("`sum` adds numbers only.")


def _check_size(size):
    if size > MAX_OUTPUT:
        raise RenderError(f"The template builds a value longer than {MAX_OUTPUT} characters.")


TEXT = TemplateSandbox(autoescape=False)
HTML = TemplateSandbox(autoescape=True)


def environment_for(part):
    """The environment of one part of a message: `html` is autoescaped, `subject` and `body` are not."""
    return HTML if part == "html" else TEXT


def check_source(part, source):
    """Compile one part; return the variables it uses, sorted, or raise TemplateInvalid naming the line."""
    env = environment_for(part)
    try:
        tree = env.parse(source)
        env.compile(tree)  # unknown filters and tests are found here
    except TemplateSyntaxError as exc:
        raise TemplateInvalid(f"Line {exc.lineno}: {exc.message}") from exc
    return sorted(meta.find_undeclared_variables(tree) - env.globals.keys())


@functools.lru_cache(maxsize=512)
def _compiled(part, source):
    """The compiled template of a source: compiling costs more than rendering, and a template is sent many times."""
    return environment_for(part).from_string(source)


def render(part, source, variables):
    """Render one part with `variables`; raise RenderError (with the missing names when that is why)."""
    token = _budget.set(Budget())
    try:
        template = _compiled(part, source)
        size, pieces = 0, []
        for piece in template.generate(variables):
            size += len(piece)
            if size > MAX_OUTPUT:
                raise RenderError(f"The rendered {part} is longer than {MAX_OUTPUT} characters.")
            pieces.append(piece)
        return "".join(pieces)
    except UndefinedError as exc:
        used = check_source(part, source)
        raise RenderError(str(exc), missing=[name for name in used if name not in variables]) from exc
    except RenderError:
        raise
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, RecursionError, MemoryError) as exc:
        raise RenderError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        _budget.reset(token)
