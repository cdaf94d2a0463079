"""``GET /api/docs``: Swagger UI served from the hub itself, so the page works with no route to the internet.

The assets come from the ``swagger-ui-bundle-v2`` package (Swagger UI 5, which reads OpenAPI 3.1). Only the files
the page needs are served, by name from a fixed list; the page loads nothing from another origin.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from hub.http import ApiError

router = APIRouter()

ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>AgentCom hub API</title>
<link rel="icon" href="/api/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script src="/api/docs/assets/init.js"></script>
</body>
</html>
"""

INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"""


def assets_dir() -> Path | None:
    """Where the installed Swagger UI files are, or None when the package is missing."""
    try:
        import swagger_ui_bundle  # type: ignore[import-untyped]
    except ImportError:
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)


@router.get("/api/docs", include_in_schema=False)
async def docs_page() -> Response:
    if assets_dir() is None:
        raise ApiError(503, "docs_unavailable", detail="install swagger-ui-bundle-v2 to serve the API docs page")
    return HTMLResponse(PAGE, headers=HEADERS)


@router.get("/api/docs/assets/{name}", include_in_schema=False)
async def docs_asset(name: str) -> Response:
    if name == "init.js":
        return Response(INIT, media_type="text/javascript", headers=HEADERS)
    base = assets_dir()
    if name not in ASSETS or base is None:
        raise ApiError(404, "not_found", detail="no such asset")
    return FileResponse(base / name, media_type=ASSETS[name], headers={**HEADERS, "Cache-Control": "max-age=86400"})
