"""The rating page (回访): a small mobile form behind the signed link the resident got
when their ticket was resolved (bot.casework.ratings).

GET shows the questions of config/rating.toml as large tappable choices and a comment
box; POST records the answers once, channel "link", through `ratings.record` (the same
path as a chat answer: the ticket rated, reopened or escalated, the handler told). A
forged, damaged or expired link is 403 with a page that says so; a rating already
recorded (by chat, the link or the no-answer default) is 409 "已评价". The page shows
the ticket number and category only, never the report's text.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs

from aiohttp import web
from sqlmodel import select

from bot.casework import ratings
from bot.casework.ratings import LinkRefused, RatingPolicy
from bot.clock import format_local, utcnow
from bot.httpbody import read_limited
from bot.services import SERVICES, Services
from storage.models import Rating, Ticket

PATH = ratings.LINK_ROUTE
ROUTE_NAME = "rating"
MAX_FORM_BYTES = 8192
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the link is the key: never sent on
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 18px/1.6 -apple-system, "PingFang SC", "Microsoft YaHei", sans-serif; margin: 0; background: #f4f5f7; color: #222; }}
main {{ max-width: 34em; margin: 0 auto; padding: 1em; }}
h1 {{ font-size: 1.3em; margin: .4em 0; }}
fieldset {{ border: 0; background: #fff; border-radius: 8px; margin: 0 0 1em; padding: .8em 1em; }}
legend {{ font-weight: bold; padding: 0; }}
label.choice {{ display: block; margin: .5em 0; padding: .6em .8em; border: 1px solid #ccc; border-radius: 6px; }}
textarea {{ width: 100%; box-sizing: border-box; font: inherit; min-height: 5em; }}
button {{ width: 100%; font: inherit; font-size: 1.1em; padding: .7em; border: 0; border-radius: 6px;
         background: #07c160; color: #fff; }}
.note {{ color: #666; font-size: .9em; }}
.error {{ color: #c00; }}
</style></head>
<body><main>
<h1>{title}</h1>
{body}
</main></body></html>
"""


def _page(status: int, title: str, body: str) -> web.Response:
    html = PAGE.format(title=escape(title), body=body)
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8", headers=HEADERS)


def _message(status: int, title: str, text: str) -> web.Response:
    return _page(status, title, f"<p>{escape(text)}</p>")


def _form(policy: RatingPolicy, ticket: Ticket, category: str, action: str, error: str = "",
          chosen: dict[str, str] | None = None, comment: str = "") -> str:
    chosen = chosen or {}
    parts = [f'<p class="note">诉求编号 {escape(ticket.number)}（{escape(category)}），'
             f'办结时间 {escape(format_local(ticket.resolved_at) or "—")}</p>']
    if error:
        parts.append(f'<p class="error">{escape(error)}</p>')
    parts.append(f'<form method="post" action="{escape(action)}">')
    for question in policy.questions:
        choices = "".join(
            f'<label class="choice"><input type="radio" name="{escape(question.field)}" value="{escape(option)}"'
            f'{" checked" if chosen.get(question.field) == option else ""} required> {escape(option)}</label>'
            for option in question.options)
        parts.append(f"<fieldset><legend>{escape(question.text)}</legend>{choices}</fieldset>")
    parts.append(f'<fieldset><legend>意见或建议（可不填）</legend><textarea name="comment" '
                 f'maxlength="{policy.comment_max_chars}">{escape(comment)}</textarea></fieldset>')
    parts.append('<button type="submit">提交评价</button></form>')
    return "".join(parts)


async def _find(services: Services, session, ticket_id: int, round_: int) -> tuple[Rating | None, Ticket | None]:  # type: ignore[no-untyped-def]
    rating = (await session.exec(select(Rating).where(Rating.ticket_id == ticket_id, Rating.round == round_))).first()
    ticket = await session.get(Ticket, ticket_id) if rating is not None else None
    return rating, ticket


def _verified(request: web.Request) -> tuple[int, int]:
    return ratings.links_of(request.app[SERVICES].case).verify(request.match_info["token"], utcnow())


async def show(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    policy = ratings.policy_of(services.case)
    try:
        ticket_id, round_ = _verified(request)
    except LinkRefused as exc:
        return _message(403, "无法评价", str(exc))
    async with services.db.session() as s:
        rating, ticket = await _find(services, s, ticket_id, round_)
    if rating is None or ticket is None:
        return _message(404, "无法评价", "没有找到这次回访。")
    if rating.channel is not None:
        return _message(409, "已评价", policy.text["already"])
    category = services.router.taxonomy.label(ticket.category)
    return _page(200, "诉求办理评价", _form(policy, ticket, category, request.path))


async def submit(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    case = services.case
    policy = ratings.policy_of(case)
    try:
        ticket_id, round_ = _verified(request)
    except LinkRefused as exc:
        return _message(403, "无法评价", str(exc))
    body = await read_limited(request, MAX_FORM_BYTES)
    if body is None:
        return _message(413, "无法评价", "提交的内容太长了。")
    form = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
    answers = {q.field: form.get(q.field, "") for q in policy.questions}
    comment = form.get("comment", "")[:policy.comment_max_chars]
    async with services.db.transaction() as session:
        rating, ticket = await _find(services, session, ticket_id, round_)
        if rating is None or ticket is None:
            return _message(404, "无法评价", "没有找到这次回访。")
        missing = next((q for q in policy.questions if answers[q.field] not in q.options), None)
        if missing is not None and rating.channel is None:
            category = services.router.taxonomy.label(ticket.category)
            return _page(400, "诉求办理评价", _form(policy, ticket, category, request.path, f"请选择：{missing.text}",
                                                answers, comment))
        outcome = await ratings.record(case, session, rating.id or 0, dict(answers), comment, policy.link, utcnow())
    if outcome.kind == ratings.ALREADY:
        return _message(409, "已评价", outcome.reply)
    case.outbox.kick()
    return _message(200, "评价成功", outcome.reply)


def setup_rating_page(app: web.Application) -> None:
    app.router.add_get(PATH, show, name=ROUTE_NAME)
    app.router.add_post(PATH, submit)
