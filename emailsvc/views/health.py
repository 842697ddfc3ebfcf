"""GET /healthz and GET /readyz."""

from flask import Blueprint
from redis.exceptions import RedisError

from ..errors import ServiceUnavailable
from ..services import get_services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Answer while the process runs."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Answer 200 when PostgreSQL and Redis both answer, else 503 naming what is down."""
    services = get_services()
    checks = {"database": services.db.ping()}
    try:
        checks["redis"] = bool(services.redis.ping())
    except RedisError:
        checks["redis"] = False
    if not all(checks.values()):
        down = sorted(name for name, ok in checks.items() if not ok)
        raise ServiceUnavailable(f"Not ready: {', '.join(down)} unavailable.", details=checks)
    return {"status": "ready", "checks": checks}
