"""Templates as a send uses them: the one place a template reference becomes subject, body and html.

The send view (and a batch, message by message) calls render_for_send before the accept path, so a
missing variable or a render error is a 422 at accept time, never a failure at delivery.
"""

from marshmallow import ValidationError

from ..errors import ValidationFailed
from ..queries.templates import get_template
from ..schemas import send_schema
from ..services import get_services
from .engine import RenderError, render

PARTS = ("subject", "body", "html")


def render_parts(template, variables):
    """Render a stored version's subject, body and html with `variables`; raise ValidationFailed naming what failed."""
    rendered = {}
    for part in PARTS:
        if template[part] is None:
            rendered[part] = None
            continue
        try:
            rendered[part] = render(part, template[part], variables)
        except RenderError as exc:
            if exc.missing:
                # Every variable of the template without a value, not only the first part's, in one answer.
                missing = set(exc.missing) | {name for name in template["variables"] if name not in variables}
                details = {name: ["No value was given for this variable."] for name in sorted(missing)}
                raise ValidationFailed(details={"variables": details}) from exc
            raise ValidationFailed(details={"template": [f"The {part} could not be rendered: {exc}"]}) from exc
    try:
        # The rendered subject passes the checks of a client's own subject (header injection, length).
        send_schema.fields["subject"].deserialize(rendered["subject"])
    except ValidationError as exc:
        raise ValidationFailed(details={"subject": [f"As rendered: {m}" for m in exc.messages]}) from exc
    return rendered


def find_template(project_id, name, version=None):
    """Return a live version of the project's template (the latest when `version` is None), or None."""
    with get_services().db.cursor() as cur:
        return get_template(cur, project_id, name, version)


def render_for_send(project_id, email):
    """Return the loaded send body `email` with subject/body/html rendered from its template, if it names one,
    and `template` as {"name", "version"}; a body without a template is returned as it is."""
    name = email.pop("template", None)
    version, variables = email.pop("template_version", None), email.pop("variables", None) or {}
    if name is None:
        email["template"] = None
        return email
    template = find_template(project_id, name, version)
    if template is None:
        missing = f"No version {version} of this template." if version else "No template with this name."
        raise ValidationFailed(details={"template": [missing]})
    email.update(render_parts(template, variables), template={"name": name, "version": template["version"]})
    return email
