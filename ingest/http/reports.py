"""/api/reports: activities created in a period by type, status and responsible, as JSON
or CSV."""

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Query, Response

from crm_core import permissions, reports
from crm_core.errors import InvalidInput
from ingest.http.deps import Ctx, Who
from ingest.http.schemas.reports import ReportOut, ReportRowOut
from ingest.wire import Instant

router = APIRouter(prefix="/api")


@router.get(
    "/reports/activities",
    response_model=None,
    responses={
        200: {
            "model": ReportOut,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
def activity_report(
    who: Who,
    since: Instant,
    until: Instant,
    ctx: Ctx,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> ReportOut | Response:
    """Activities created in the period by type, status and responsible (JSON or CSV)."""
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidInput("since and until need their UTC offset")
    with ctx.reading() as session:
        rows = reports.activity_counts(
            session, since, until, permissions.visible_activities(session, who)
        )
    if format == "json":
        return ReportOut(
            since=since,
            until=until,
            rows=[ReportRowOut.model_validate(r, from_attributes=True) for r in rows],
        )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["type", "status", "responsible_id", "responsible", "count"])
    for r in rows:
        writer.writerow([r.type, r.status, r.responsible_id, r.responsible, r.count])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="activities.csv"'},
    )
