"""GET /project: the key's own project, its keys and today's counts."""

from flask import Blueprint

from ..auth import current_project_id, require_scope
from ..list_args import load_args, today_args
from ..log_pages import read_today
from ..openapi import document
from ..queries.api_keys import list_project_keys
from ..queries.projects import get_project
from ..schemas import project_schema
from ..services import get_services

bp = Blueprint("projects", __name__)


@bp.get("/project")
@document(query=today_args, response=project_schema)
@require_scope()
def show():
    """Return the project of the key: its name, its active keys (never their secrets) and today's counts."""
    args, project_id, services = load_args(today_args), current_project_id(), get_services()
    with services.read_db.cursor() as cur:
        project = get_project(cur, project_id)
        project["keys"] = list_project_keys(cur, project_id)
    return {**project_schema.dump(project), "today": read_today(services, project_id, args["tz"])}
