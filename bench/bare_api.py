"""The anchor of the webhook benchmark: one endpoint on the same server stack as ours
(FastAPI on uvicorn, built by `make_http_server`) that reads the body and answers 202.

    python -m bench.bare_api PORT
"""

from __future__ import annotations

import asyncio
import sys

from fastapi import FastAPI, Request, Response

from ingest.http.server import make_http_server


def app() -> FastAPI:
    bare = FastAPI()

    @bare.post("/bare", status_code=202)
    async def accept(request: Request) -> Response:
        await request.body()
        return Response(status_code=202)

    return bare


if __name__ == "__main__":
    server = make_http_server(app(), "127.0.0.1", int(sys.argv[1]))
    asyncio.run(server.serve())
