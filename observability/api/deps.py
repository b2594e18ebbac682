"""The current user of a request, in one dependency, so no endpoint forgets a check.

`require(action)` reads the bearer token (401 with the reason when it is missing, bad, expired or
revoked, or its user is disabled), checks that both the token's scope and the user's role allow
`action` (403 with the reason), and counts the request against the user's rate limit (429 with
Retry-After). The service function called next checks the user's role again and writes the audit
rows, exactly as when the console's page calls it.

A token verified within API_TOKEN_CACHE_S is taken from `ctx.verified` without a store read and
the rate counter is one non-blocking Redis round trip, so the check costs no worker thread: the
only thread hop of a request is its endpoint's own service call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from observability.api.context import ApiContext
from observability.auth.api_tokens import Principal, TokenInvalid, verify_token
from observability.auth.roles import roles_for
from observability.auth.users import access_changes, acting_as

bearer = HTTPBearer(
    auto_error=False,
    description="A per-user API token (Admin page or `python -m observability.users token create`)",
)

# rate limit scopes: every request counts as "api"; emergency resets and the resume also as "emergency";
# None: never counted nor refused (the stops)
API, EMERGENCY, NEVER = "api", "emergency", None


R = TypeVar("R")


def context_of(request: Request) -> ApiContext:
    return request.app.state.ctx


async def context(request: Request) -> ApiContext:
    """The `ApiContext` as a dependency (async: FastAPI runs a plain function on a worker thread)."""
    return context_of(request)


def threaded(endpoint: Callable[..., R]) -> Callable[..., Any]:
    """An endpoint whose body blocks (store queries) as a coroutine that runs it on a worker thread.

    FastAPI runs a plain `def` endpoint on a worker thread and then validates its answer on another;
    each hop waits for the GIL on a busy process. This keeps one hop, the body's; the answer is
    validated on the event loop. FastAPI reads the parameters from the wrapped function."""

    @functools.wraps(endpoint)
    async def run(*args: Any, **kwargs: Any) -> R:
        # the services act with the token's scope, not the user's full role (`auth.acting_as`)
        scope = next((v.scope for v in kwargs.values() if isinstance(v, Principal)), None)

        def body() -> R:
            with acting_as(scope):
                return endpoint(*args, **kwargs)

        return await run_in_threadpool(body)

    return run


def token_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials is not None else None


async def verified_principal(ctx: ApiContext, token: str | None) -> Principal:
    """The token's principal: from the tokens verified within API_TOKEN_CACHE_S, else read from the
    store on a worker thread (and remembered). Raises TokenInvalid saying why."""
    principal = ctx.verified.get(token)
    if principal is None:
        changes = access_changes()
        principal = await run_in_threadpool(verify_token, ctx.store, token, settings=ctx.settings)
        ctx.verified.put(token or "", principal, changes)
    return principal


async def principal_of(ctx: ApiContext, token: str | None) -> Principal:
    """`verified_principal`, or HTTP 401 saying why."""
    try:
        return await verified_principal(ctx, token)
    except TokenInvalid as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


async def check_rate(ctx: ApiContext, user: str, scope: str) -> None:
    verdict = await ctx.limiter.hit(user, scope)
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
        ctx = context_of(request)
        principal = await principal_of(ctx, token_of(request, credentials))
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
            await check_rate(ctx, principal.user, API)
            if limit == EMERGENCY:
                await check_rate(ctx, principal.user, EMERGENCY)
        return principal

    return dependency
