"""Parse + forward extraction throughput, beside the standard library's parser.

    python -m bench.parse [--seconds 5]

One message: a 20 KB Gmail forward with a 50 KB PDF-like attachment. Prints messages/s of
`parse_email` + `find_original` (what a worker does before its transaction) and of
`email.message_from_bytes` on the same bytes (the anchor: parsing alone, no decoding of
addresses, dates, bodies or the forward).
"""

from __future__ import annotations

import argparse
import email
import os
import time
from email.message import EmailMessage
from pathlib import Path

from bench.common import machine, record
from ingest.mailbox.forwarding import find_original
from ingest.mailbox.parsing import parse_email

FORWARD = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "forwarded"


def message() -> bytes:
    body = (FORWARD / "gmail_en_body.txt").read_text(encoding="utf-8")
    filler = "\n".join(
        f"Line {n}: Pellentesque cursus tincidunt mauris non venenatis." for n in range(330)
    )
    mail = EmailMessage()
    mail["From"] = "Anna Sales <anna@example.com>"
    mail["To"] = "card@archive.example.com"
    mail["Subject"] = "Fwd: Integer consequat non purus"
    mail["Date"] = "Fri, 20 Nov 2026 09:30:00 +0000"
    mail["Message-ID"] = "<bench@example.com>"
    mail.set_content(body + "\n" + filler)
    mail.add_attachment(
        os.urandom(50 * 1024), maintype="application", subtype="pdf", filename="quote.pdf"
    )
    return mail.as_bytes()


def rate(action: object, raw: bytes, seconds: float) -> float:
    assert callable(action)
    for _ in range(5):
        action(raw)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        action(raw)
        count += 1
    return count / (time.perf_counter() - start)


def ours(raw: bytes) -> None:
    parsed = parse_email(raw)
    assert find_original(parsed.text, parsed.subject) is not None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    raw = message()
    mine = rate(ours, raw, args.seconds)
    anchor = rate(email.message_from_bytes, raw, args.seconds)
    print(f"machine: {machine()}  message: {len(raw) / 1024:.0f} KB")
    print(f"parse + forward extraction   {mine:10.1f} msg/s")
    print(f"email.message_from_bytes     {anchor:10.1f} msg/s   (anchor)")
    print(f"ratio                        {mine / anchor:10.3f}")
    record(
        [
            {
                "name": "parse_and_forward_extraction_20k_forward_50k_attachment",
                "value": round(mine, 1),
                "unit": "msg/s",
                "anchor": "email.message_from_bytes",
                "anchor_value": round(anchor, 1),
                "ratio": round(mine / anchor, 4),
            }
        ]
    )


if __name__ == "__main__":
    main()
