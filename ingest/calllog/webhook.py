"""Call-log front door: check the source's signature, store each call raw, say which ids
to enqueue. Framework-free: `ingest.http_app` maps its errors to 401/404/422/503.

Nothing is stored before the signature passes; each call is committed before the 2xx; a
call already stored (same source, same provider call id) gets its existing id back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from crm_core import schemas
from crm_core.models import dedupe_key
from ingest import inbound, sources
from ingest.calllog import payloads
from ingest.errors import RejectedInput
from ingest.signatures import check_timestamped, check_twilio_form

CHANNEL = "call"
KINDS = ("calllog", "twilio_voice")


def accept(
    sessions: sessionmaker[Session],
    book: sources.SourceBook,
    request: sources.HookRequest,
    now: datetime,
    default_region: str,
) -> schemas.HookAccepted:
    """Verify and store; raises NotFound, BadSignature, RejectedInput or StoreUnavailable."""
    source = book.active(request.source_id, KINDS)
    region = source.settings.get("default_region") or default_region
    if source.kind == "calllog":
        check_timestamped(
            source.secrets["secret"],
            request.headers.get("x-timestamp"),
            request.headers.get("x-signature"),
            request.body,
            now,
        )
        good, bad = payloads.split_calllog(source.id, request.body, region)
        if not good:
            raise RejectedInput("; ".join(r.error for r in bad))
        calls = [(c.call_id, c.raw) for c in good]
    else:
        # The signature first: nothing of an unsigned body is read (401, not 422).
        params = check_twilio_form(
            source.secrets["auth_token"],
            str(source.settings["public_base_url"]).rstrip("/") + request.path_and_query,
            request.body,
            request.headers.get("x-twilio-signature"),
            request.headers.get("x-twilio-webhooks-signature-settings"),
        )
        call = payloads.twilio_call(source.id, request.body, source.settings, region, now)
        if call is None:
            status = dict(params).get("CallStatus")
            return schemas.HookAccepted(
                accepted=0, ids=[], ignored=f"CallStatus {status} is a progress report, not a call"
            )
        bad, calls = [], [(call.call_id, request.body)]
    ids = inbound.store(
        sessions,
        [
            inbound.NewInput(
                channel=CHANNEL,
                raw=raw,
                dedupe_key=dedupe_key("call", source.id, call_id),
                meta={"source_id": source.id, "kind": source.kind},
            )
            for call_id, raw in calls
        ],
    )
    return schemas.HookAccepted(accepted=len(ids), ids=ids, rejected=bad)
