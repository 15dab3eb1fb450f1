"""The webhook routes, one per channel of `ingest.registry` (`POST /hooks/<hook>/<source
id>`, and a GET where a provider confirms its URL first): read the body within its cap, find
the source, let its provider verify and split the request, store every input before the
answer, send the ids to the workers, and answer the provider in its own way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from ingest import inbound
from ingest.http.deps import Context, context
from ingest.provider import Handshake, HookAccepted, HookAnswer, HookRequest
from ingest.registry import Registry
from ingest.webhook_channel import WebhookChannel


async def read_hook(request: Request, source_id: int, limit: int) -> HookRequest:
    """The request as a hook needs it; a body over CRM_HOOK_MAX_BODY_BYTES is not read to
    its end (413), whatever Content-Length says."""
    too_large = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE, f"the body is larger than {limit} bytes"
    )
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    query = f"?{request.url.query}" if request.url.query else ""
    return HookRequest(source_id, request.headers, request.url.path + query, bytes(body))


def take(
    ctx: Context, channel: WebhookChannel, hook: HookRequest
) -> tuple[HookAnswer, HookAccepted]:
    """Verify and store, then send what was stored to the workers: one trip off the event
    loop. Raises NotFound, BadSignature, RejectedInput or StoreUnavailable."""
    now = ctx.clock()
    source = ctx.book.active(hook.source_id, channel.providers.keys())
    provider = channel.providers[source.kind]
    provider.verify(source, hook, now)  # nothing of an unsigned body is read
    split = provider.split(source, hook, now, source.region(ctx.settings.default_region))
    meta = {"source_id": source.id, "kind": source.kind}
    new = [
        inbound.NewInput(channel=channel.name, raw=one.raw, dedupe_key=one.dedupe_key, meta=meta)
        for one in split.inputs
    ]
    ids = inbound.store(ctx.runtime.commits, new) if new else []
    ctx.enqueue(channel.name, ids)
    accepted = HookAccepted(
        accepted=len(ids),
        ids=ids,
        rejected=split.rejected,
        ignored="; ".join(split.ignored) or None,
    )
    return provider.answer(accepted), accepted


def receiver(channel: WebhookChannel) -> Callable[[Request, int], Awaitable[Response]]:
    async def receive(request: Request, source_id: int) -> Response:
        ctx = context(request)
        hook = await read_hook(request, source_id, ctx.settings.hook_max_body_bytes)
        answer, accepted = await run_in_threadpool(take, ctx, channel, hook)
        body = answer.body if answer.body is not None else accepted.model_dump_json().encode()
        return Response(body, status_code=answer.status_code, media_type=answer.media_type)

    receive.__doc__ = (
        "Inputs of a "
        + ", ".join(f"`{k}`" for k in channel.providers)
        + (
            " source, each stored before the answer; a batch with bad inputs stores the good "
            "ones and lists the bad ones. An input already received is answered again and "
            "changes nothing."
        )
    )
    return receive


def confirmer(channel: WebhookChannel) -> Callable[[Request, int], Response]:
    kinds = [k for k, p in channel.providers.items() if isinstance(p, Handshake)]

    def confirm(request: Request, source_id: int) -> Response:
        source = context(request).book.active(source_id, kinds)
        provider = channel.providers[source.kind]
        assert isinstance(provider, Handshake)
        return PlainTextResponse(provider.handshake(source, request.query_params))

    confirm.__doc__ = (
        "The provider's check of the webhook URL (" + ", ".join(f"`{k}`" for k in kinds) + "): "
        "the challenge, as text, when the verify token is right; 403 otherwise."
    )
    return confirm


def openapi_body(channel: WebhookChannel) -> dict[str, Any]:
    """The request body as each provider of the channel documents it."""
    content: dict[str, dict[str, Any]] = {}
    for provider in channel.providers.values():
        for media_type, doc in provider.body_docs.items():
            # One schema per media type, with its own examples: the first provider's.
            content.setdefault(media_type, dict(doc))
    described = " ".join(
        f"For a `{p.kind}` source: {p.hook_doc}" for p in channel.providers.values()
    )
    return {"requestBody": {"required": True, "description": described, "content": content}}


def router_for(registry: Registry) -> APIRouter:
    """The hook routes of `registry`'s channels (the app is built with the registry)."""
    router = APIRouter()
    for channel in registry.hooks:
        router.add_api_route(
            f"/hooks/{channel.hook}/{{source_id}}",
            receiver(channel),
            methods=["POST"],
            name=channel.hook,
            status_code=202,
            openapi_extra=openapi_body(channel),
            responses={
                200: {"description": "stored, or `ignored`, for a provider that wants a 200"},
                202: {"model": HookAccepted, "description": "stored, or `ignored`"},
                401: {"description": "bad or missing signature; nothing stored"},
            },
        )
        if any(isinstance(p, Handshake) for p in channel.providers.values()):
            router.add_api_route(
                f"/hooks/{channel.hook}/{{source_id}}",
                confirmer(channel),
                methods=["GET"],
                name=f"{channel.hook}_subscription",
                response_class=PlainTextResponse,
            )
    return router
