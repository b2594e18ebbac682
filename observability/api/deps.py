"""The current user of a request, in one dependency, so no endpoint forgets a check.

`require(action)` reads the bearer token (401 with the reason when it is missing, bad, expired or
revoked, or its user is disabled), checks that both the token's scope and the user's role allow
`action` (403 with the reason), and counts the request against the user's rate limit (429 with
Retry-After). The service function called next checks the user's role again and writes the audit
rows, exactly as when the console's page calls it.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from observability.api.context import ApiContext
from observability.auth.api_tokens import Principal, TokenInvalid, verify_token
from observability.auth.roles import roles_for

bearer = HTTPBearer(
    auto_error=False,
    description="A per-user API token (Admin page or `python -m observability.users token create`)",
)

# rate limit scopes: every request counts as "api"; emergency resets and the resume also as "emergency";
# None: never counted nor refused (the stops)
API, EMERGENCY, NEVER = "api", "emergency", None


def context(request: Request) -> ApiContext:
    return request.app.state.ctx


def token_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials is not None else None


def authenticate(ctx: ApiContext, token: str | None) -> Principal:
    """The principal of a token, or HTTP 401 saying why."""
    try:
        return verify_token(ctx.store, token, settings=ctx.settings)
    except TokenInvalid as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


def check_rate(ctx: ApiContext, user: str, scope: str) -> None:
    verdict = ctx.limiter.hit(user, scope)
    if not verdict.allowed:
        what = "emergency requests" if scope == EMERGENCY else "requests"
        raise HTTPException(
            429,
            f"rate limit: at most {verdict.limit} {what} per minute per user; retry in {verdict.retry_after_s} s",
            headers={"Retry-After": str(verdict.retry_after_s)},
        )


def require(action: str, limit: str | None = API) -> Callable[..., Principal]:
    """A dependency: the authenticated principal allowed to do `action`, within its rate limit."""

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> Principal:
        ctx = context(request)
        principal = await run_in_threadpool(authenticate, ctx, token_of(request, credentials))
        if not principal.may(action):
            who = (
                f"the token's scope {principal.scope!r}"
                if principal.scope != principal.role
                else f"role {principal.role!r}"
            )
            if principal.role not in roles_for(action):
                who = f"role {principal.role!r} of {principal.user!r}"
            raise HTTPException(
                403, f"{action}: {who} may not do this (allowed: {', '.join(roles_for(action))})"
            )
        if limit is not None:
            check_rate(ctx, principal.user, API)
            if limit == EMERGENCY:
                check_rate(ctx, principal.user, EMERGENCY)
        return principal

    return dependency
