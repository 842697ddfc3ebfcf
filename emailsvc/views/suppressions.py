"""GET, POST /suppressions and DELETE /suppressions/<address>: the list of the key's project, which its sends are
checked against."""

from flask import Blueprint

from ..addresses import suppression_keys
from ..auth import current_project_id, require_scope
from ..errors import NotFound
from ..list_args import load_args, text_key_page_args
from ..openapi import document
from ..queries.suppressions import add_suppression
from ..schemas import new_suppression_schema, suppression_page_schema, suppression_schema
from ..services import get_services
from ..suppression_list import read_suppression_page, remove_suppression
from ..web import json_body

bp = Blueprint("suppressions", __name__, url_prefix="/suppressions")


@bp.get("")
@document(query=text_key_page_args, response=suppression_page_schema)
@require_scope("send")
def list_entries():
    """Return the list, newest first, a page at a time."""
    args = load_args(text_key_page_args)
    limit = args["limit"]
    rows, next_cursor = read_suppression_page(get_services(), current_project_id(), limit, args["cursor"])
    items = suppression_schema.dump(rows, many=True)
    return {"items": items, "pagination": {"limit": limit, "next_cursor": next_cursor}}


@bp.post("")
@document(body=new_suppression_schema, response=suppression_schema, status=201,
          also={200: (suppression_schema, "The address was on the list already: its entry.")})  # fmt: skip
@require_scope("send")
def add():
    """Suppress an address: 201 when new, 200 with the existing entry when already listed."""
    entry = new_suppression_schema.load(json_body())
    with get_services().db.cursor() as cur:
        row = add_suppression(cur, current_project_id(), *suppression_keys([entry["address"]]), entry["reason"])
    return suppression_schema.dump(row), 201 if row["created"] else 200


@bp.delete("/<path:address>")
@document(status=204, errors=[404])
@require_scope("send")
def remove(address):
    """Take an address off the list, so mail to it is accepted again."""
    if not remove_suppression(get_services(), current_project_id(), address):
        raise NotFound("This address is not on the suppression list.")
    return "", 204
