"""Chat front door: check the source's signature, store each message or status raw, say
which ids to enqueue; and Meta's verify handshake. Framework-free: `ingest.http_app` maps
its errors to 401/403/404/422/503 and answers in each provider's way.

Nothing is stored before the signature passes; each event is committed before the 2xx; an
event already stored (same source, same provider message id) gets its existing id back.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from crm_core import schemas
from crm_core.errors import Forbidden, InvalidInput
from ingest import inbound, sources
from ingest.chat import payloads
from ingest.errors import RejectedInput
from ingest.signatures import check_hub, check_timestamped, check_twilio_form

CHANNEL = "chat"
KINDS = ("widget", "whatsapp", "twilio")


@dataclass(frozen=True)
class Accepted:
    kind: str  # the source's kind: each provider expects its own answer
    answer: schemas.HookAccepted


def accept(
    sessions: sessionmaker[Session],
    book: sources.SourceBook,
    request: sources.HookRequest,
    now: datetime,
    default_region: str,
) -> Accepted:
    """Verify and store; raises NotFound, BadSignature, RejectedInput or StoreUnavailable."""
    source = book.active(request.source_id, KINDS)
    region = source.settings.get("default_region") or default_region
    bad: list[schemas.HookRejection] = []
    ignored: list[str] = []
    if source.kind == "widget":
        check_timestamped(
            source.secrets["secret"],
            request.headers.get("x-timestamp"),
            request.headers.get("x-signature"),
            request.body,
            now,
        )
        event = payloads.widget_event(source.id, request.body, region)
        events = [payloads.OneEvent(payloads.event_key(source.id, event), request.body)]
    elif source.kind == "whatsapp":
        check_hub(
            source.secrets["app_secret"],
            request.body,
            request.headers.get("x-hub-signature-256"),
        )
        events, bad, ignored = payloads.split_whatsapp(
            source.id, request.body, region, source.settings.get("phone_number_id")
        )
        if not events and bad:
            raise RejectedInput("; ".join(r.error for r in bad))
    else:
        check_twilio_form(
            source.secrets["auth_token"],
            str(source.settings["public_base_url"]).rstrip("/") + request.path_and_query,
            request.body,
            request.headers.get("x-twilio-signature"),
            request.headers.get("x-twilio-webhooks-signature-settings"),
        )
        event = payloads.twilio_event(source.id, request.body, region, now)
        events = [payloads.OneEvent(payloads.event_key(source.id, event), request.body)]
    ids = inbound.store(
        sessions,
        [
            inbound.NewInput(
                channel=CHANNEL,
                raw=one.raw,
                dedupe_key=one.dedupe_key,
                meta={"source_id": source.id, "kind": source.kind},
            )
            for one in events
        ],
    )
    return Accepted(
        source.kind,
        schemas.HookAccepted(
            accepted=len(ids), ids=ids, rejected=bad, ignored="; ".join(ignored) or None
        ),
    )


def verify_subscription(
    book: sources.SourceBook,
    source_id: int,
    mode: str | None,
    token: str | None,
    challenge: str | None,
) -> str:
    """Meta's handshake when a webhook URL is saved: the challenge back if the verify token
    is the source's (compared in constant time), else Forbidden."""
    source = book.active(source_id, ("whatsapp",))
    expected = source.secrets["verify_token"].encode()
    if mode != "subscribe" or not hmac.compare_digest((token or "").encode(), expected):
        raise Forbidden("hub.mode must be subscribe and hub.verify_token the source's token")
    if not challenge:
        raise InvalidInput("hub.challenge: required")
    return challenge
