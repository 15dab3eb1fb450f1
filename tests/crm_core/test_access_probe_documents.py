"""The outside probe's document findings (issue 20), replayed over real HTTP and SMTP and
answered as fixed: a document's type is a media type, and a mail file's odd type is kept as
bytes, never a 500.

SPEC "Which card?", "Access rights", "History"; seeds 002, 003. Alice and Carol work in
Sales, Bob in Support; Alice and Bob may do everything with their department's deals,
Carol only with her own.
"""

from __future__ import annotations

from email.policy import SMTP

import httpx
from sqlalchemy import text

from ingest.runtime import Runtime
from tests.support.helpers import make_mail, send, wait_for
from tests.support.office import Office

# --- a document's media type ----------------------------------------------------------------


def upload(client: httpx.Client, card_id: int, content_type: str | bytes | None) -> httpx.Response:
    """Upload with this Content-Type (bytes: sent as they are, e.g. Latin-1; None: none)."""
    if isinstance(content_type, str):
        content_type = content_type.encode("ascii")
    headers = {} if content_type is None else {b"Content-Type": content_type}
    return client.post(
        f"/api/cards/{card_id}/documents",
        params={"name": "a.txt"},
        content=b"hello",
        headers=headers,
    )


def test_a_document_type_must_be_a_media_type(office: Office, runtime: Runtime) -> None:
    mine = office.card(office.alice, "alice")
    for given, stored in (
        ('text/plain; charset="utf-8"', 'text/plain; charset="utf-8"'),
        ("application/vnd.ms-excel ; q=1;", "application/vnd.ms-excel ; q=1;"),
        (None, "application/octet-stream"),
    ):
        made = upload(office.alice, mine["id"], given)
        assert made.status_code == 201, (given, made.text)
        assert made.json()["media_type"] == stored
        served = office.alice.get(f"/api/documents/{made.json()['id']}/content")
        assert served.status_code == 200 and served.headers["content-type"] == stored
    before = office.alice.get(f"/api/cards/{mine['id']}/documents").json()["items"]
    for bad in (
        "text",
        "text/",
        "/plain",
        "text/plain; charset",
        "text/pl ain",
        "text/plain; a=b c",
        'text/plain; a="unterminated',
        "text/plain; name=\N{LATIN SMALL LETTER E WITH ACUTE}".encode("latin-1"),
        "application/" + "x" * 300,
    ):
        refused = upload(office.alice, mine["id"], bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["detail"].startswith("Content-Type: "), refused.text
    assert office.alice.get(f"/api/cards/{mine['id']}/documents").json()["items"] == before

    # A type stored before the check (Cyrillic, a line break): served as bytes, never a 500
    legacy = before[0]["id"]
    with runtime.engine.begin() as conn:
        conn.execute(
            text("UPDATE documents SET media_type = :t WHERE id = :i"),
            {"t": "application/x-\u043f\u0440\u0438\r\nX-Evil: 1", "i": legacy},
        )
    served = office.alice.get(f"/api/documents/{legacy}/content")
    assert served.status_code == 200 and served.content == b"hello"
    assert served.headers["content-type"] == "application/octet-stream"
    assert "x-evil" not in served.headers


def test_a_mail_files_odd_type_is_kept_as_bytes(
    office: Office, smtp_server: tuple[str, int], worker: None
) -> None:
    mine = office.card(office.alice, "alice")
    address = office.archive_address(office.alice, mine["id"])
    mail = make_mail(f"Alice <{office.emails['alice']}>", address, subject="Files")
    mail.add_attachment(b"odd", maintype="application", subtype="octet-stream", filename="a.bin")
    raw = mail.as_bytes(policy=SMTP).replace(
        b"Content-Type: application/octet-stream",
        "Content-Type: application/x-\u043f\u0440\u0438".encode(),
    )
    send(smtp_server, raw, address, office.emails["alice"])
    wait_for(
        lambda: office.alice.get(f"/api/cards/{mine['id']}/documents").json()["items"],
        what="the file",
    )
    [document] = office.alice.get(f"/api/cards/{mine['id']}/documents").json()["items"]
    assert document["media_type"] == "application/octet-stream"
    served = office.alice.get(f"/api/documents/{document['id']}/content")
    assert served.status_code == 200 and served.content == b"odd"
