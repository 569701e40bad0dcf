"""Console logins: the session middleware (who is asking, CSRF on every form), and the
login and logout views. Sessions live in the database (bot/access/sessions.py); a fresh
session id at every login; failed logins are throttled (bot/access/throttle.py)."""

from __future__ import annotations

import logging
import secrets
from typing import Awaitable, Callable
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
from aiohttp import web

from bot.access import passwords, sessions, throttle
from bot.access.identity import staff_actor
from bot.casework.actors import Actor
from bot.casework.org_import import DONE
from bot.clock import format_local, utcnow
from bot.console.keys import ACTOR, CONSOLE, CSRF, LOGIN_CSRF_COOKIE, SESSION_COOKIE
from bot.services import SERVICES
from storage.models import AuditEntry, Staff

log = logging.getLogger(__name__)
PUBLIC = frozenset({"login", "static"})  # route names served without a login
LOGIN_FAILED = "登录失败：工号或密码不正确"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def actor_of(request: web.Request) -> Actor:
    return request[ACTOR]


def forbidden(request: web.Request, message: str) -> web.Response:
    return aiohttp_jinja2.render_template("error.html", request, {"title": "无法操作", "message": message},
                                          status=403)


def _route_name(request: web.Request) -> str | None:
    route = request.match_info.route
    return getattr(route, "name", None) or (route.resource.name if route.resource else None)


async def _form_token(request: web.Request) -> str | None:
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf")
        return value if isinstance(value, str) else None
    return request.headers.get("X-CSRF-Token")


# Pages show personal data: never cached, never framed, no script but our own (there is
# none inline), nothing loaded from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    if _route_name(request) != "static" and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    name = _route_name(request)
    if name in PUBLIC:
        return await handler(request)
    services, console = request.config_dict[SERVICES], request.app[CONSOLE]
    cookie = request.cookies.get(SESSION_COOKIE)
    async with services.db.transaction() as session:
        live = await sessions.resume(session, console.settings, cookie)
    actor = await _actor(services.case, live.staff_id) if live else None
    if live is None or actor is None:
        if request.method != "GET":
            return forbidden(request, "登录已过期，请重新登录")
        target = request.app.router["login"].url_for().with_query(next=request.path_qs)
        raise web.HTTPSeeOther(target)
    if request.method not in ("GET", "HEAD") and not sessions.csrf_matches(live.csrf_token, await _form_token(request)):
        return forbidden(request, "表单已失效（安全校验未通过），请返回刷新页面后重试")
    request[ACTOR], request[CSRF] = actor, live.csrf_token
    return await handler(request)


async def _actor(case, staff_id: int) -> Actor | None:  # type: ignore[no-untyped-def]
    """The logged-in staff member; someone added since this worker last loaded the
    organisation (e.g. by `minyi staff add` a moment ago) is found by reloading it."""
    if case.org.record(staff_id) is None:
        await case.org.refresh_if_changed(case.db)
    return staff_actor(case.org, staff_id)


def _safe_next(target: str | None, request: web.Request) -> str:
    """Only a path inside the console (no open redirect to another site)."""
    home = str(request.app.router["home"].url_for())
    if not target:
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(home) or "\\" in target:
        return home
    return target


def _login_page(request: web.Request, error: str | None = None, status: int = 200,
                login: str = "") -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = aiohttp_jinja2.render_template(
        "login.html", request, {"error": error, "csrf": token, "login": login,
                                "next": _safe_next(request.query.get("next"), request)}, status=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/console/",
                        secure=request.app[CONSOLE].secure_cookies)
    return response


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    services, console = request.config_dict[SERVICES], request.app[CONSOLE]
    form = await request.post()
    login = str(form.get("login") or "").strip()[:64]
    password = str(form.get("password") or "")
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not sessions.csrf_matches(expected, str(form.get("csrf") or "")):
        return forbidden(request, "表单已失效（安全校验未通过），请刷新登录页后重试")
    address = request.remote
    async with services.db.transaction() as session:
        until = await throttle.locked_until(session, login, address)
        if until is not None:
            session.add(AuditEntry(at=utcnow(), actor=f"login:{login}"[:64], action="login", target=address,
                                   outcome="refused", reason="登录失败次数过多，暂时锁定"))
            return _login_page(request, f"登录失败次数过多，请于 {format_local(until)} 后再试", 429, login)
        from sqlmodel import select

        person = (await session.exec(select(Staff).where(Staff.login == login))).first() if login else None
        stored = await passwords.password_hash_of(session, person.id) if person and person.id else None
        good = passwords.verify(stored, password) and person is not None and person.active
        if not good or person is None or person.id is None:
            await throttle.failed(session, console.settings, login, address)
            session.add(AuditEntry(at=utcnow(), actor=f"login:{login}"[:64], action="login", target=address,
                                   outcome="refused", reason="工号或密码不正确，或账号已停用"))
            return _login_page(request, LOGIN_FAILED, 401, login)
        await throttle.succeeded(session, login)
        session_id = await sessions.start(session, console.settings, person.id,
                                          previous=request.cookies.get(SESSION_COOKIE))
        session.add(AuditEntry(at=utcnow(), actor=f"staff:{person.id}", action="login", target=address,
                               outcome=DONE))
    response = web.HTTPSeeOther(_safe_next(str(form.get("next") or ""), request))
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="Lax", path="/console/",
                        secure=console.secure_cookies, max_age=console.settings.session_max_hours * 3600)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/console/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        async with services.db.transaction() as session:
            await sessions.end(session, cookie)
    response = web.HTTPSeeOther(request.app.router["login"].url_for())
    response.del_cookie(SESSION_COOKIE, path="/console/")
    raise response


def login_url(request: web.Request, next_path: str) -> str:
    return f"{request.app.router['login'].url_for()}?next={quote(next_path)}"
