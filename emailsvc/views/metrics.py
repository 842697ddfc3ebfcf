"""GET /metrics: Prometheus's text format, for an operator key or METRICS_TOKEN (docs/operations.md)."""

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from ..auth import require_operator
from ..metrics.scrape import render
from ..openapi import document
from ..services import get_services

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@document(media_type="text/plain")
@require_operator(token_setting="METRICS_TOKEN")
def metrics():
    """Every metric of every process, and the queues and the log as they are now, in Prometheus's text format.

    Also open to `Authorization: Bearer <METRICS_TOKEN>` when that setting is set, so a scraper needs
    no key; project keys are 403.
    """
    body = render(get_services(), current_app.config["PROMETHEUS_MULTIPROC_DIR"])
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_PLAIN_0_0_4)
