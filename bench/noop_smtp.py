"""The Python floor of SMTP acceptance: the same aiosmtpd server as ours (same protocol
settings, through `start_smtp_server`), whose handlers only answer 250.

    python -m bench.noop_smtp PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from ingest.mailbox.smtp_server import start_smtp_server


class NoOp:
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 Message accepted"


async def serve(port: int) -> None:
    server = await start_smtp_server(
        NoOp(),  # type: ignore[arg-type]
        "127.0.0.1",
        port,
        max_message_bytes=26_214_400,
        hostname="noop.bench",
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
