"""GET /healthz and GET /readyz."""

from flask import Blueprint
from redis.exceptions import RedisError

from .. import smtp_health
from ..errors import ServiceUnavailable
from ..openapi import document
from ..schemas import health_schema, ready_schema
from ..services import get_services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@document(response=health_schema)
def healthz():
    """Answer while the process runs."""
    return health_schema.dump({"status": "ok"})


@bp.get("/readyz")
@document(response=ready_schema, errors=[503])
def readyz():
    """Answer 200 when PostgreSQL and Redis both answer, else 503 naming what is down.

    `smtp` tells what the workers last found wrong with the relay; it is information only: the API
    still accepts mail (it is queued and retried), so a relay problem must not take it out of its
    load balancer.
    """
    services = get_services()
    checks = {"database": services.db.ping()}
    try:
        checks["redis"] = bool(services.redis.ping())
        smtp = smtp_health.read(services.redis)
    except RedisError:
        checks["redis"] = False
    if not all(checks.values()):
        down = sorted(name for name, ok in checks.items() if not ok)
        raise ServiceUnavailable(f"Not ready: {', '.join(down)} unavailable.", details=checks)
    return ready_schema.dump({"status": "ready", "checks": checks, "smtp": smtp})
