"""The API's documentation: the OpenAPI document completed with every error answer and how
requests authenticate (`mount`), and /docs, /redoc and /favicon.ico served offline from the
fastapi-offline package (the only module importing it) under a Content-Security-Policy."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from ingest.http.schemas.errors import ErrorOut

# Swagger UI's and ReDoc's own files, as the package ships them (no CDN is ever asked).
ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"
FAVICON = Path(__file__).parents[1] / "web" / "static" / "favicon.ico"

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
    and `redoc_url=None` (FastAPI's own pages load their files from a CDN), and complete its
    OpenAPI document (see `complete`) when it is first built."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way
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


# --- the OpenAPI document --------------------------------------------------------------

# Each error status, documented once under components/responses with the one error shape
# (`ErrorOut`) and what it means; operations refer to those they can answer.
ERRORS = {
    400: ("BadRequest", "the body is not valid JSON"),
    401: (
        "Unauthorized",
        "missing or wrong credentials (token, session or signature); nothing was done",
    ),
    403: (
        "Forbidden",
        "the acting user may not do this, or a change made with the web session lacks "
        "X-Requested-With: crm-ui",
    ),
    404: (
        "NotFound",
        "something the request names does not exist, or the acting user may not read it",
    ),
    409: (
        "Conflict",
        "conflicts with what is stored (e.g. a name already taken, an input in another state)",
    ),
    413: (
        "ContentTooLarge",
        "the body is over its cap (CRM_API_MAX_BODY_BYTES; uploads and hooks have their "
        "own): nothing was read past it",
    ),
    422: (
        "UnprocessableContent",
        "a value is refused: `detail` lists the fields when the request does not have the "
        "shape this document gives, or says in words which rule it breaks",
    ),
    503: (
        "ServiceUnavailable",
        "the database (or the inbound store) is unavailable: try again later",
    ),
}
WRITES = {"post", "put", "patch", "delete"}
# Operations that authenticate without the bearer token: by the token in the body (sign-in)
# or by the source's signature (hooks; 403 is Meta's subscription check).
OWN_AUTH = {("post", "/ui/session"): {401}}
HOOK_STATUSES = {"get": {403, 404, 422, 503}, "post": {401, 404, 413, 422, 503}}
# How /api requests authenticate, replacing the header and cookie parameters FastAPI lists
# for `ingest.http.deps.authenticated` (OpenAPI ignores a parameter named Authorization).
SECURITY_SCHEMES = {
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "the admin token (CRM_API_TOKEN) or a user's personal token",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "crm_session",
        "description": "the web page's session, from `POST /ui/session`",
    },
}
_CREDENTIALS = {("header", "authorization"), ("cookie", "crm_session")}
# A row id in a path: a positive 32-bit database integer (another is answered 404 or 422).
PATH_ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (FastAPI's OpenAPI document) stating the answers the routes give: every
    operation lists the error statuses it can answer, each with the one error shape
    (`ErrorOut`: `detail` a sentence or a list of field problems) in place of FastAPI's
    HTTPValidationError; /api operations name their security schemes instead of header and
    cookie parameters; an optional parameter is never `null`; path ids are bounded."""
    components = schema.setdefault("components", {})
    shapes = components.setdefault("schemas", {})
    error = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    shapes.update(error.pop("$defs", {}))
    shapes["ErrorOut"] = error
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    components["responses"] = {
        name: {"description": meaning, "content": body} for name, meaning in ERRORS.values()
    }
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _complete_operation(path, method, operation)
            _hoist_definitions(operation, shapes)
    # FastAPI's error shapes, now referenced nowhere.
    shapes.pop("HTTPValidationError", None)
    shapes.pop("ValidationError", None)
    return schema


def _complete_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    given = operation.get("parameters", [])
    authenticated = any(p["in"] == "header" and p["name"].lower() == "authorization" for p in given)
    parameters = [
        p for p in given if not (authenticated and (p["in"], p["name"].lower()) in _CREDENTIALS)
    ]
    for parameter in parameters:
        _parameter_schema(parameter)
    if parameters:
        operation["parameters"] = parameters
    else:
        operation.pop("parameters", None)
    body = operation.get("requestBody")
    statuses = set(OWN_AUTH.get((method, path), set()))
    if authenticated:
        operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
        statuses |= {401, 403, 404, 503}
        if method in WRITES:
            statuses.add(409)
    if path.startswith("/hooks/"):
        statuses |= HOOK_STATUSES.get(method, set())
    if any(p["in"] == "path" for p in parameters):
        statuses.add(404)
    if parameters or body:
        statuses.add(422)
    if body:
        statuses.add(413)
        if "application/json" in body.get("content", {}) and not path.startswith("/hooks/"):
            statuses.add(400)  # FastAPI's own reading (a hook says 422 "body: not JSON")
    responses = operation.setdefault("responses", {})
    for code in statuses | {int(c) for c in responses if c.isdigit() and int(c) in ERRORS}:
        name, _meaning = ERRORS[code]
        given_answer = responses.get(str(code), {})
        own = given_answer.get("description", "Validation Error")
        if own in ("Validation Error", ""):  # FastAPI's 422: ours in its place
            responses[str(code)] = {"$ref": f"#/components/responses/{name}"}
        else:  # the route says what it means here (e.g. a hook's 401): keep that
            body_ref = {"$ref": "#/components/schemas/ErrorOut"}
            given_answer["content"] = {"application/json": {"schema": body_ref}}
            responses[str(code)] = given_answer
    operation["responses"] = dict(sorted(responses.items()))


def _hoist_definitions(node: Any, shapes: dict[str, Any]) -> None:
    """A pydantic schema pasted into an operation (a hook's body: `openapi_extra`) keeps
    its `$defs`, which `#/$defs/...` cannot reach from there: they join the components."""
    if isinstance(node, list):
        for item in node:
            _hoist_definitions(item, shapes)
        return
    if not isinstance(node, dict):
        return
    for name, shape in node.pop("$defs", {}).items():
        _hoist_definitions(shape, shapes)
        if shapes.setdefault(name, shape) != shape:
            raise ValueError(f"two different schemas are named {name} in the OpenAPI document")
    reference = node.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/$defs/"):
        node["$ref"] = "#/components/schemas/" + reference.removeprefix("#/$defs/")
    for value in node.values():
        _hoist_definitions(value, shapes)


def _parameter_schema(parameter: dict[str, Any]) -> None:
    """A parameter is absent or has a value: never `null` (FastAPI lists `int | None` as
    anyOf integer or null, and a client would send the text "null"). Path ids are bounded."""
    schema = parameter.get("schema", {})
    choices = schema.get("anyOf")
    if isinstance(choices, list):
        kept = [c for c in choices if c.get("type") != "null"]
        if len(kept) == 1:
            schema.pop("anyOf")
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept
    if parameter["in"] == "path" and schema.get("type") == "integer":
        schema.update(PATH_ID)


def documented_methods(schema: dict[str, Any], path: str) -> list[str]:
    """The methods `schema` documents for a request path (e.g. /api/cards/7), upper case."""
    found: set[str] = set()
    for template, operations in schema.get("paths", {}).items():
        if re.fullmatch(_template_pattern(template, operations), path):
            found.update(method.upper() for method in operations)
    return sorted(found)


def _template_pattern(template: str, operations: dict[str, Any]) -> str:
    """A regex of the paths `template` names: an integer parameter is digits (routes
    declare such ids `{x:int}` where a word could take their place, as /activities/bulk),
    another any text up to the next slash (or part of a segment, as {user_id}.ics)."""
    integers = {
        parameter["name"]
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path" and parameter.get("schema", {}).get("type") == "integer"
    }
    pieces = re.split(r"\{([^}]*)\}", template)  # text, name, text, name, ..., text
    return "".join(
        ("[0-9]+" if piece in integers else "[^/]+") if i % 2 else re.escape(piece)
        for i, piece in enumerate(pieces)
    )
