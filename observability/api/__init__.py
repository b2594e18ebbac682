"""The HTTP API and its WebSocket under `/api/v1` (FastAPI on the console's ASGI app).

May import the contract modules and the services (`store`, `analytics`, `auth`, `control`,
`alerting`), never `ui` or the pages: each endpoint is a few lines that call the same service
function as the console's page, so role checks and audit rows are the same.

| module | holds |
|---|---|
| `app` | `create_app` (routers, error mapping, OpenAPI at `/api/v1/openapi.json`), `mount` and `Shortcut` for `st.App` |
| `deps` | `require(action)`: token → user (401), scope and role (403), rate limit (429) |
| `ratelimit` | per-user requests per minute, in Redis or in process |
| `routes/` | monitoring and activity, intervention, alerts, emergency |
| `inbound` | PagerDuty / Opsgenie webhooks (the work is `alerting.inbound`) |
| `ws` | the WebSocket hub: rooms, message types, limits |
| `models` | request and response bodies |
"""

from observability.api.app import PREFIX, Shortcut, create_app, mount

__all__ = ["PREFIX", "Shortcut", "create_app", "mount"]
