"""The API's documentation pages, /docs (Swagger UI) and /redoc (ReDoc), and /favicon.ico:
their scripts and styles come from the fastapi-offline package (the only module importing
it), served by the app itself under a Content-Security-Policy, so they work offline.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

# Swagger UI's and ReDoc's own files, as the package ships them (no CDN is ever asked).
ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"
FAVICON = Path(__file__).parent / "web" / "static" / "favicon.ico"

_COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# Swagger UI: its two files, our start script and the spec, all from this origin; no inline
# script or style (React sets styles through the DOM, which the policy allows).
SWAGGER_HEADERS = {
    **_COMMON,
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
}
# ReDoc writes its styles into <style> elements and searches in a worker made from a blob.
REDOC_HEADERS = {
    **_COMMON,
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
}

# Swagger UI's start, as a file of ours (the policy runs no inline script): FastAPI's own
# settings, with no call to the online validator.
SWAGGER_INIT = """\
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapi,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
"""


class _Assets(StaticFiles):
    """The packaged files, with `nosniff` and a day of caching (they change with the package)."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update({**_COMMON, "Cache-Control": "public, max-age=86400"})
        return response


def mount(app: FastAPI) -> None:
    """Add /docs, /redoc, their files and /favicon.ico to `app`, made with `docs_url=None`
    and `redoc_url=None` (FastAPI's own pages load their files from a CDN)."""
    if not (ASSETS / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(
            f"Swagger UI's files are missing from {ASSETS}: reinstall fastapi-offline"
        )
    app.mount(ASSETS_URL, _Assets(directory=ASSETS), name="docs-assets")
    title = html.escape(app.title)

    def spec_url(request: Request) -> str:
        return html.escape(str(request.scope.get("root_path", "")) + str(app.openapi_url))

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = html.escape(str(request.scope.get("root_path", "")))
        page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Swagger UI</title>
<link rel="icon" href="{root}/favicon.ico">
<link rel="stylesheet" href="{root}{ASSETS_URL}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="{spec_url(request)}"></div>
<script src="{root}{ASSETS_URL}/swagger-ui-bundle.js"></script>
<script src="{root}/docs/init.js"></script>
</body>
</html>
"""
        return HTMLResponse(page, headers=SWAGGER_HEADERS)

    @app.get("/docs/init.js", include_in_schema=False)
    def swagger_init() -> Response:
        return Response(SWAGGER_INIT, media_type="text/javascript", headers=_COMMON)

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = html.escape(str(request.scope.get("root_path", "")))
        page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - ReDoc</title>
<link rel="icon" href="{root}/favicon.ico">
</head>
<body>
<redoc spec-url="{spec_url(request)}"></redoc>
<script src="{root}{ASSETS_URL}/redoc.standalone.js"></script>
</body>
</html>
"""
        return HTMLResponse(page, headers=REDOC_HEADERS)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(
            FAVICON,
            media_type="image/vnd.microsoft.icon",
            headers={**_COMMON, "Cache-Control": "public, max-age=86400"},
        )
