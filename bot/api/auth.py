"""Bearer tokens (`minyi token create`): every operation but the OpenAPI document needs
`Authorization: Bearer <token>` of an active staff member, and then has exactly that
staff member's rights. A missing, unknown or revoked token, or a disabled account, is a
401 with `WWW-Authenticate: Bearer`."""

from __future__ import annotations

import re

from aiohttp import web

from bot.access.identity import staff_actor
from bot.access.tokens import api_token_staff
from bot.api.errors import ApiError, Handler
from bot.api.keys import ACTOR
from bot.casework.actors import Actor
from bot.services import SERVICES

PUBLIC_ROUTES = frozenset({"openapi"})  # route names served without a token
REALM = 'Bearer realm="minyi-api"'
# RFC 6750 b64token, bounded (tokens minyi issues are ~46 characters).
BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]{1,200}=*)")
MISSING = "缺少 API 令牌：请加请求头 Authorization: Bearer <令牌>（minyi token create --staff 工号）"
INVALID = "API 令牌无效或已吊销，或其工作人员账号已停用"


def actor_of(request: web.Request) -> Actor:
    return request[ACTOR]


def unauthorized(message: str, invalid: bool) -> ApiError:
    challenge = REALM + (', error="invalid_token"' if invalid else "")
    return ApiError("unauthorized", message, {"WWW-Authenticate": challenge})


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header; "" when the header is there but
    malformed; None when there is none."""
    if not header or not header.strip():
        return None
    found = BEARER.fullmatch(header.strip())
    return found.group(1) if found else ""


def _route_name(request: web.Request) -> str | None:
    route = request.match_info.route
    return route.name or (route.resource.name if route.resource is not None else None)


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    problem = request.match_info.http_exception
    if problem is not None:  # unknown path or method: the same 404/405 with or without a token
        raise problem
    if _route_name(request) in PUBLIC_ROUTES:
        return await handler(request)
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise unauthorized(MISSING, invalid=False)
    case = request.config_dict[SERVICES].case
    staff_id = None
    if token:
        async with case.db.transaction() as session:  # notes the token's last use
            staff_id = await api_token_staff(session, token)
    actor = staff_actor(case.org, staff_id) if staff_id is not None else None
    if staff_id is not None and actor is None:
        # The database says active (api_token_staff checked): this worker's staff cache is
        # older (a member added or re-enabled elsewhere).
        await case.org.refresh_if_changed(case.db)
        actor = staff_actor(case.org, staff_id)
    if actor is None:
        raise unauthorized(INVALID, invalid=True)
    request[ACTOR] = actor
    return await handler(request)
