"""The API's browsable documentation (`/api/v1/docs`): Swagger UI at a pinned version, its files
checked by the browser against their hashes.

Why not FastAPI's default page: it loads `swagger-ui-dist@5` (whatever 5.x is newest) from a CDN,
plus a favicon from fastapi.tiangolo.com, into a page on the console's own origin. A script there
runs with the signed-in operator's session cookie going along with every request it makes to the
console (its Streamlit WebSocket included), so a bad release of that package or a compromised CDN
could act as the operator. Pinned and with Subresource Integrity, the browser runs the files only
if they are exactly the release below; anything else leaves the page blank, with the API itself
and `openapi.json` unaffected. The hashes are those of the files in the npm package
(`npm pack swagger-ui-dist@5.35.0`; `openssl dgst -sha384 -binary <file> | openssl base64 -A`),
which the CDN serves unchanged. The page needs the CDN to be reachable; without it, use
`openapi.json` with a local tool.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json

from starlette.responses import HTMLResponse

SWAGGER_UI_VERSION = "5.35.0"
CDN = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}"
FILES = {  # file -> its Subresource Integrity hash
    "swagger-ui-bundle.js": "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9",
    "swagger-ui.css": "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I",
}
# the page's own script, allowed by its hash (Content-Security-Policy below)
_INIT = """const ui = SwaggerUIBundle({url: %s, dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset], layout: "BaseLayout"});"""


def docs_page(openapi_url: str, title: str) -> HTMLResponse:
    """The documentation page for the OpenAPI document at `openapi_url`."""
    init = _INIT % json.dumps(openapi_url)
    init_hash = base64.b64encode(hashlib.sha256(init.encode()).digest()).decode()
    css, js = (f"{CDN}/{name}" for name in ("swagger-ui.css", "swagger-ui-bundle.js"))
    body = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="{css}" integrity="{FILES["swagger-ui.css"]}" crossorigin="anonymous">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{js}" integrity="{FILES["swagger-ui-bundle.js"]}" crossorigin="anonymous"></script>
<script>{init}</script>
</body>
</html>"""
    policy = (
        f"default-src 'none'; script-src {CDN}/ 'sha256-{init_hash}'; style-src {CDN}/ 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return HTMLResponse(body, headers={"Content-Security-Policy": policy, "Referrer-Policy": "no-referrer"})
