"""/api/sources: the webhook sources (administrators): register one (its signing secret is
shown once), list, read, revoke."""

from functools import reduce
from operator import or_
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from crm_core.models import Source
from ingest import sources
from ingest.http.deps import ADMIN, Ctx
from ingest.http.schemas.sources import SourceCreatedOut, SourceListOut, SourceOut
from ingest.registry import REGISTRY

router = APIRouter(prefix="/api")

# The body of POST /api/sources: one of the registry's providers' settings, by `kind`.
SourceIn: Any = Annotated[
    reduce(or_, [p.settings_model for p in REGISTRY.providers.values()]),
    Field(discriminator="kind"),
]


def source_out(request: Request, source: Source) -> dict[str, Any]:
    return {
        "id": source.id,
        "kind": source.kind,
        "name": source.name,
        "hook_url": str(request.base_url).rstrip("/") + REGISTRY.hook_path(source.kind, source.id),
        "settings": source.settings,
        "created_at": source.created_at,
        "revoked_at": source.revoked_at,
    }


@router.post("/sources", status_code=201, dependencies=ADMIN)
def create_source(request: Request, body: SourceIn, ctx: Ctx) -> SourceCreatedOut:
    """Register a sending integration. The answer shows its signing secret once."""
    given = body.model_dump(mode="json", exclude={"kind", "name"})
    provider = REGISTRY.provider(body.kind)
    with ctx.writing() as session:
        source, secret = sources.register(session, ctx.runtime.sealer, provider, body.name, given)
        out = source_out(request, source)
    return SourceCreatedOut(**out, secret=secret)


@router.get("/sources", dependencies=ADMIN)
def list_sources(request: Request, ctx: Ctx) -> SourceListOut:
    with ctx.reading() as session:
        found = sources.list_sources(session)
        return SourceListOut(items=[SourceOut(**source_out(request, s)) for s in found])


@router.get("/sources/{source_id}", dependencies=ADMIN)
def get_source(request: Request, source_id: int, ctx: Ctx) -> SourceOut:
    with ctx.reading() as session:
        return SourceOut(**source_out(request, sources.get(session, source_id)))


@router.delete("/sources/{source_id}", status_code=204, dependencies=ADMIN)
def revoke_source(source_id: int, ctx: Ctx) -> Response:
    """Revoke: its hook answers 404 from now on (through other HTTP processes, within
    CRM_SOURCE_CACHE_SECONDS)."""
    with ctx.writing() as session:
        sources.revoke(session, source_id, ctx.clock())
    ctx.book.forget(source_id)
    return Response(status_code=204)
