"""/templates: a project's message texts, versioned, previewed with variables; sends name them."""

import re

from flask import Blueprint

from ..auth import current_project_id, require_scope
from ..cursors import split_page
from ..errors import NotFound, TemplateExists, ValidationFailed
from ..list_args import load_args, text_key_page_args
from ..mail_templates.engine import TemplateInvalid, check_source
from ..mail_templates.rendering import PARTS, find_template, render_parts
from ..openapi import document
from ..queries.templates import add_version, create_template, delete_template, list_templates
from ..schemas import (
    TEMPLATE_NAME,
    new_template_schema,
    render_request_schema,
    rendered_schema,
    template_page_schema,
    template_parts_schema,
    template_schema,
)
from ..services import get_services
from ..web import json_body

bp = Blueprint("templates", __name__, url_prefix="/templates")
EXAMPLE = {"name": "welcome", "subject": "Welcome, {{ name }}", "body": "Hello {{ name }},\n\nThanks for joining.",
           "html": "<p>Hello {{ name }},</p><p>Thanks for joining.</p>"}  # fmt: skip
NO_TEMPLATE = "No template with this name."


def _known_name(name):
    """404 for a name no template can have (it could not be stored, e.g. one holding NUL)."""
    if not re.match(TEMPLATE_NAME, name):
        raise NotFound(NO_TEMPLATE)
    return name


def compile_parts(parts):
    """Check every part compiles; return the variables they use, or raise 422 naming the part and line."""
    variables, errors = set(), {}
    for part in PARTS:
        if parts.get(part) is not None:
            try:
                variables.update(check_source(part, parts[part]))
            except TemplateInvalid as exc:
                errors[part] = [str(exc)]
    if errors:
        raise ValidationFailed(details=errors)
    return sorted(variables)


@bp.post("")
@document(body=new_template_schema, example=EXAMPLE, response=template_schema, status=201, errors=[409])
@require_scope("send")
def create():
    """Store a new template as version 1; a name in use is 409 template_exists."""
    parts = new_template_schema.load(json_body())
    name = parts.pop("name")
    variables = compile_parts(parts)
    with get_services().db.cursor() as cur:
        row = create_template(cur, current_project_id(), name, parts, variables)
    if row is None:
        raise TemplateExists()
    return template_schema.dump(row), 201


@bp.put("/<name>")
@document(body=template_parts_schema, response=template_schema, errors=[404])
@require_scope("send")
def update(name):
    """Store the texts as the template's next version; earlier versions stay readable."""
    parts = template_parts_schema.load(json_body())
    variables = compile_parts(parts)
    with get_services().db.cursor() as cur:
        row = add_version(cur, current_project_id(), _known_name(name), parts, variables)
    if row is None:
        raise NotFound(NO_TEMPLATE)
    return template_schema.dump(row)


@bp.get("")
@document(query=text_key_page_args, response=template_page_schema)
@require_scope("read")
def list_all():
    """Return the templates at their latest versions, newest template first, a page at a time."""
    args = load_args(text_key_page_args)
    limit = args["limit"]
    with get_services().read_db.cursor() as cur:
        rows = list_templates(cur, current_project_id(), limit + 1, args["cursor"])
    rows, next_cursor = split_page(rows, limit, lambda row: (row["since"], row["name"]))
    return {"items": template_schema.dump(rows, many=True), "pagination": {"limit": limit, "next_cursor": next_cursor}}


@bp.get("/<name>")
@document(response=template_schema, errors=[404])
@require_scope("read")
def get_latest(name):
    """Return the latest version of a template."""
    return template_schema.dump(_find(name))


@bp.get("/<name>/versions/<int:version>")
@document(response=template_schema, errors=[404])
@require_scope("read")
def get_version(name, version):
    """Return one version of a template."""
    return template_schema.dump(_find(name, version))


@bp.delete("/<name>")
@document(status=204, errors=[404])
@require_scope("send")
def delete(name):
    """Delete a template with all its versions: sends naming it are refused; mail already accepted is untouched."""
    with get_services().db.cursor() as cur:
        if not delete_template(cur, current_project_id(), _known_name(name)):
            raise NotFound(NO_TEMPLATE)
    return "", 204


@bp.post("/<name>/render")
@document(body=render_request_schema, response=rendered_schema, errors=[404])
@require_scope("send")
def preview(name):
    """Render a version (the latest by default) with `variables`, as a send would; nothing is recorded."""
    request = render_request_schema.load(json_body())
    template = _find(name, request["version"])
    return rendered_schema.dump(render_parts(template, request["variables"]))


def _find(name, version=None):
    in_range = version is None or version < 2**31  # beyond: no such version, rather than the database's error
    template = find_template(current_project_id(), _known_name(name), version) if in_range else None
    if template is None:
        raise NotFound(f"No version {version} of this template." if version else NO_TEMPLATE)
    return template
