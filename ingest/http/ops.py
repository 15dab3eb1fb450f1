"""Operations: /healthz for probes and /metrics (Prometheus, administrators only)."""

from fastapi import APIRouter, Response

from ingest import metrics
from ingest.http.deps import ADMIN, Ctx

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/metrics",
    dependencies=ADMIN,
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def prometheus_metrics(ctx: Ctx) -> Response:
    """Prometheus figures of this process (inputs accepted, rejected, processed,
    unmatched, failed; end-to-end latency) and the queue depth. Needs the admin token
    (or an admin's): this listener also takes webhooks, so it may face the Internet."""
    return Response(ctx.runtime.figures.exposition(ctx.sessions), media_type=metrics.CONTENT_TYPE)
