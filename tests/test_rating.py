"""回访: a resolved ticket's resident rates it in chat (one tap per question) or on the
signed link page; dissatisfied answers reopen it (then escalate past the limit); no
answer in time is 未评价, never satisfied. Staff act through `minyi ticket act`, residents
through /wechat, the page over HTTP, the no-answer sweep through `minyi rating expire`."""

from __future__ import annotations

import re
from pathlib import Path
from datetime import datetime, timedelta

import pytest

from bot.casework import ratings
from bot.casework.ratings import LinkSigner
from bot.dialogs import texts
from tests import wechat
from tests.conftest import services_of
from tests.steps import (events_of, follow, messages_to, minyi, ratings_of, report, staff_act,
                         ticket_by_number, tickets_of)

GARBAGE = "枫林小区垃圾桶满了三天了没人收，臭气熏天招苍蝇"  # 城管, no co-departments, grid of G01
GRID_WORKER = "o-demo-grid-01"
SUPERVISOR = "o-demo-supervisor-01"
ASK = ("您反映的诉求 {number} 已办结，请您评价：\n您对办理结果满意吗？\n1. 满意\n2. 基本满意\n3. 不满意\n请回复数字。\n"
       "也可以打开链接评价：http://127.0.0.1:8080/rating/")
SECOND = "您反映的问题解决了吗？\n1. 已解决\n2. 部分解决\n3. 未解决\n请回复数字。"
COMMENT = "还有什么意见或建议吗？可直接回复意见，或回复 0 跳过。"
LINK = re.compile(r"http://127\.0\.0\.1:8080(/rating/\d+\.\d+\.\d+\.[A-Za-z0-9_-]{43})$")


@pytest.fixture
def rating_env(cli_env, monkeypatch):
    """The CLI signs links with the same secret as the app (tests' WeChat token)."""
    monkeypatch.setenv("MINYI_WECHAT_TOKEN", wechat.TOKEN)
    return cli_env


async def resolved(client, sender, capsys, openid: str) -> str:
    """A garbage report, accepted and resolved by its grid worker; its number."""
    number = await report(sender, openid, GARBAGE)
    await staff_act(capsys, number, "G01", "accept", "resolve", note="已清运")
    return number


async def asked(client, openid: str, number: str) -> str:
    """The rating question the resident got last; its link's path."""
    question = (await messages_to(client, openid))[-1]
    assert question.startswith(ASK.format(number=number)), question
    found = LINK.search(question)
    assert found, question
    return found.group(1)


async def answer(sender, openid: str, *replies: str) -> list[str]:
    return [await sender.reply(wechat.text(openid, reply)) for reply in replies]


async def test_a_resolved_ticket_is_rated_in_one_tap_per_question(client, sender, new_openid, rating_env, capsys):
    openid = await follow(sender, new_openid())
    number = await resolved(client, sender, capsys, openid)
    await asked(client, openid, number)
    assert await answer(sender, openid, "1", "1", "0") == [SECOND, COMMENT, "感谢您的评价！"]

    [rating] = await ratings_of(client, number)
    assert (rating.round, rating.channel, rating.satisfaction, rating.resolution, rating.comment) == (
        1, "chat", "满意", "已解决", None)
    assert rating.answered_at is not None and rating.asked_at <= rating.answered_at
    ticket = await ticket_by_number(client, number)
    assert ticket.status == "rated" and ticket.reopen_count == 0
    rate = [e for e in await events_of(client, number) if e.action == "rate"]
    assert [(e.actor, e.from_status, e.to_status) for e in rate] == [("resident", "resolved", "rated")]
    assert (await messages_to(client, GRID_WORKER))[-1] == f"【回访结果】{number}\n满意度：满意\n解决情况：已解决\n意见：无"
    # Rated: a 「1」 now is no rating answer any more.
    assert await sender.reply(wechat.text(openid, "1")) == texts.NOTHING_TO_SUBMIT


async def test_a_reply_that_is_no_answer_is_understood_afresh(client, sender, new_openid, rating_env, capsys):
    openid = await follow(sender, new_openid())
    number = await resolved(client, sender, capsys, openid)
    assert await sender.reply(wechat.text(openid, "谢谢")) == texts.THANKS  # not trapped …
    assert await answer(sender, openid, "满意", "2") == [SECOND, COMMENT]  # … and the question still open
    assert await sender.reply(wechat.text(openid, "处理得挺快")) == "感谢您的评价！"
    [rating] = await ratings_of(client, number)
    assert (rating.satisfaction, rating.resolution, rating.comment) == ("满意", "部分解决", "处理得挺快")


async def test_dissatisfied_reopens_then_escalates_past_the_limit(client, sender, new_openid, rating_env, capsys):
    openid = await follow(sender, new_openid())
    number = await resolved(client, sender, capsys, openid)
    replies = await answer(sender, openid, "3", "3", "垃圾桶还是满的")
    assert replies[-1] == "感谢您的评价！您的诉求已重新交办，我们会继续跟进办理。"
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.reopen_count, ticket.closed_at) == ("dispatched", 1, None)
    reopen = [e for e in await events_of(client, number) if e.action == "reopen"]
    assert [(e.actor, e.from_status, e.note) for e in reopen] == [
        ("system", "rated", "群众回访不满意（满意度：不满意；解决情况：未解决）：垃圾桶还是满的")]
    told = await messages_to(client, GRID_WORKER)
    assert told[-2].startswith(f"【新工单·网格】{number}")  # back in the grid's queue, and why:
    assert told[-1] == (f"【回访结果】{number}\n满意度：不满意\n解决情况：未解决\n意见：垃圾桶还是满的\n"
                        "群众不满意，工单已重新打开（第1次），请重新处理。")

    # Second round: reopened again (the limit is 2).
    await staff_act(capsys, number, "G01", "accept", "resolve", note="已加派清运车")
    await asked(client, openid, number)
    await answer(sender, openid, "3", "2", "0")
    assert (await ticket_by_number(client, number)).reopen_count == 2

    # Third round: reopened twice already, so escalated to the district's supervisor, not reopened.
    supervisor_before = len(await messages_to(client, SUPERVISOR))
    await staff_act(capsys, number, "G01", "accept", "resolve", note="已协调环卫所")
    await asked(client, openid, number)
    replies = await answer(sender, openid, "不满意", "3", "一个月了还是这样")
    assert replies[-1] == "感谢您的评价！您的诉求已提请上级督办，我们会继续跟进。"
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.reopen_count) == ("rated", 2)
    assert [r.round for r in await ratings_of(client, number)] == [1, 2, 3]
    [escalate] = [e for e in await events_of(client, number) if e.action == "escalate"]
    assert (escalate.actor, escalate.from_status, escalate.to_status) == ("system", "rated", "rated")
    assert escalate.note == "回访仍不满意（满意度：不满意；解决情况：未解决），已重新打开2次，提请督办：一个月了还是这样"
    services = services_of(client)
    area = services.areas.full_name(ticket.area_code)
    category = services.router.taxonomy.label(ticket.category)
    assert (await messages_to(client, SUPERVISOR))[supervisor_before:] == [
        f"【回访督办】{number}\n类别：{category}\n位置：{area}\n已重新打开2次，群众仍不满意。\n"
        "满意度：不满意；解决情况：未解决\n意见：一个月了还是这样\n请督办。"]
    assert (await messages_to(client, GRID_WORKER))[-1].endswith("已重新打开2次，群众仍不满意，已提请督办。")


async def test_no_answer_in_time_is_unrated_and_archived(client, sender, new_openid, rating_env, capsys):
    openid = await follow(sender, new_openid())
    number = await resolved(client, sender, capsys, openid)
    [rating] = await ratings_of(client, number)
    policy = ratings.policy_of(services_of(client).case)
    deadline = rating.asked_at + policy.answer_window

    code, out, err = await minyi(capsys, "rating", "expire", "--at", (deadline - timedelta(minutes=1)).isoformat())
    assert code == 0 and "已处理到期回访 0 条" in out, err
    code, out, err = await minyi(capsys, "rating", "expire", "--at", (deadline + timedelta(minutes=1)).isoformat())
    assert code == 0 and "已处理到期回访 1 条" in out, err

    [rating] = await ratings_of(client, number)
    assert (rating.channel, rating.satisfaction, rating.resolution, rating.answered_at) == ("default", "未评价", None, None)
    ticket = await ticket_by_number(client, number)
    assert ticket.status == "archived"
    [archive] = [e for e in await events_of(client, number) if e.action == "archive"]
    assert (archive.actor, archive.note) == ("system", "群众7天内未评价，记为未评价")
    tally = ratings.tally(policy, [rating])
    assert (tally.recorded, tally.unrated, tally.answered, tally.satisfied, tally.solved) == (1, 1, 0, 0, 0)
    # The chat no longer waits for the answer; running the sweep again finds nothing.
    assert await sender.reply(wechat.text(openid, "1")) == texts.NOTHING_TO_SUBMIT
    code, out, _ = await minyi(capsys, "rating", "expire", "--at", (deadline + timedelta(days=1)).isoformat())
    assert code == 0 and "已处理到期回访 0 条" in out


async def test_answers_whose_comment_never_comes_are_recorded(client, sender, new_openid, rating_env, capsys):
    openid = await follow(sender, new_openid())
    number = await resolved(client, sender, capsys, openid)
    assert await answer(sender, openid, "3", "3") == [SECOND, COMMENT]
    [rating] = await ratings_of(client, number)
    later = rating.answered_at + timedelta(minutes=31)
    code, out, err = await minyi(capsys, "rating", "expire", "--at", later.isoformat())
    assert code == 0 and "已处理到期回访 1 条" in out, err
    [rating] = await ratings_of(client, number)
    assert (rating.channel, rating.satisfaction, rating.resolution, rating.comment) == ("chat", "不满意", "未解决", None)
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.reopen_count) == ("dispatched", 1)  # answered inside the window: reopened


async def test_the_link_page_records_once(client, sender, new_openid, rating_env, capsys):
    openid = await follow(sender, new_openid())
    number = await resolved(client, sender, capsys, openid)
    path = await asked(client, openid, number)

    page = await client.get(path)
    html = await page.text()
    assert page.status == 200 and "您对办理结果满意吗？" in html and number in html
    assert GARBAGE not in html  # the page never shows what was reported
    incomplete = await client.post(path, data={"satisfaction": "满意"})
    assert incomplete.status == 400 and "请选择：您反映的问题解决了吗？" in await incomplete.text()

    done = await client.post(path, data={"satisfaction": "基本满意", "resolution": "已解决", "comment": "态度很好"})
    assert done.status == 200 and "感谢您的评价！" in await done.text()
    [rating] = await ratings_of(client, number)
    assert (rating.channel, rating.satisfaction, rating.resolution, rating.comment) == ("link", "基本满意", "已解决", "态度很好")
    assert (await ticket_by_number(client, number)).status == "rated"
    assert (await messages_to(client, GRID_WORKER))[-1] == f"【回访结果】{number}\n满意度：基本满意\n解决情况：已解决\n意见：态度很好"

    again = await client.post(path, data={"satisfaction": "不满意", "resolution": "未解决"})
    assert again.status == 409 and "已评价" in await again.text()
    assert (await client.get(path)).status == 409
    [rating] = await ratings_of(client, number)
    assert rating.satisfaction == "基本满意"  # no second rating
    # The chat stopped waiting for the answer when the link brought it.
    assert await sender.reply(wechat.text(openid, "1")) == texts.NOTHING_TO_SUBMIT


async def test_dissatisfied_after_the_window_is_recorded_not_reopened(client, sender, new_openid, rating_env, capsys,
                                                                      monkeypatch):
    openid = await follow(sender, new_openid())
    number = await resolved(client, sender, capsys, openid)
    path = await asked(client, openid, number)
    policy = ratings.policy_of(services_of(client).case)
    [rating] = await ratings_of(client, number)
    later = rating.asked_at + policy.reopen_window + timedelta(hours=1)  # the link is still valid
    assert later < rating.asked_at + policy.answer_window
    monkeypatch.setattr("bot.rating_page.utcnow", lambda: later)
    done = await client.post(path, data={"satisfaction": "不满意", "resolution": "未解决", "comment": "太慢了"})
    assert done.status == 200 and "感谢您的评价！" in await done.text()
    ticket = await ticket_by_number(client, number)
    assert (ticket.status, ticket.reopen_count) == ("rated", 0)
    assert (await messages_to(client, GRID_WORKER))[-1] == f"【回访结果】{number}\n满意度：不满意\n解决情况：未解决\n意见：太慢了"


async def test_a_forged_or_expired_link_is_refused(client, sender, new_openid, rating_env, capsys):
    openid = await follow(sender, new_openid())
    number = await resolved(client, sender, capsys, openid)
    path = await asked(client, openid, number)
    body, mac = path.rsplit(".", 1)
    forged = f"{body}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}"
    ticket_id, round_, expires = body.removeprefix("/rating/").split(".")
    longer = f"/rating/{ticket_id}.{round_}.{int(expires) + 86400}.{mac}"  # a later expiry, the old signature
    for bad in (forged, longer, "/rating/1.1.1.x", f"/rating/{int(ticket_id) + 1}.{round_}.{expires}.{mac}"):
        for response in (await client.get(bad), await client.post(bad, data={"satisfaction": "满意", "resolution": "已解决"})):
            assert response.status == 403 and "评价链接无效" in await response.text(), bad

    ticket = await ticket_by_number(client, number)
    past = datetime.now().astimezone() - timedelta(minutes=1)
    expired = ratings.links_of(services_of(client).case).token(ticket.id, 1, past)  # the app's own key
    response = await client.post(f"/rating/{expired}", data={"satisfaction": "满意", "resolution": "已解决"})
    assert response.status == 403 and "评价链接已过期" in await response.text()
    signed_elsewhere = LinkSigner("another-secret", "http://x").token(ticket.id, 1, past + timedelta(days=2))
    assert (await client.get(f"/rating/{signed_elsewhere}")).status == 403
    [rating] = await ratings_of(client, number)
    assert rating.channel is None and (await ticket_by_number(client, number)).status == "resolved"


def test_unanswered_ratings_never_count_as_satisfied():
    from bot.settings import CONFIG_DIR
    from storage.models import Rating

    policy = ratings.RatingPolicy.load(CONFIG_DIR)
    now = datetime.now().astimezone()
    rows = [Rating(ticket_id=1, channel="chat", satisfaction="满意", resolution="已解决", asked_at=now),
            Rating(ticket_id=2, channel="link", satisfaction="基本满意", resolution="部分解决", asked_at=now),
            Rating(ticket_id=3, channel="default", satisfaction="未评价", asked_at=now),
            Rating(ticket_id=4, asked_at=now)]  # still waiting: not counted at all
    assert ratings.tally(policy, rows) == ratings.Tally(recorded=3, answered=2, satisfied=1, solved=1, unrated=1)


def test_the_rating_config_names_real_states_and_actions():
    from bot.casework.workflow import Workflow
    from bot.dialogs import registry
    from bot.settings import CONFIG_DIR

    policy = ratings.RatingPolicy.load(CONFIG_DIR)
    policy.check(Workflow.load(CONFIG_DIR / "workflow.toml"))
    assert policy.dialog_states <= set(registry.SHORT_STATES)  # only short-lived states are taken over
    assert ratings.RATING_STATE in registry.NUMBERED_STATES


async def test_a_new_problem_at_the_comment_step_is_kept_and_can_be_sent_again(client, sender, new_openid,
                                                                                rating_env, capsys):
    """一口进: the text is recorded as the comment, the resident is told it can be sent again
    as a new report — and sent again it is a ticket."""
    openid = await follow(sender, new_openid())
    number = await resolved(client, sender, capsys, openid)
    problem = "幸福里小区3号楼门口的路灯坏了好几天了，晚上黑漆漆的"
    replies = await answer(sender, openid, "1", "1", problem)
    assert replies[-1] == "感谢您的评价！" + texts.RATING_COMMENT_OR_NEW
    [rating] = await ratings_of(client, number)
    assert rating.comment == problem
    again = await sender.reply(wechat.text(openid, problem))
    assert again.startswith("您的诉求已受理！") and number not in again
    assert len(await tickets_of(client, openid)) == 2


async def test_a_comment_on_the_rated_problem_itself_gets_no_new_problem_hint(client, sender, new_openid,
                                                                               rating_env, capsys):
    """Tried in /sim: 「清运挺快的，谢谢」 on a garbage ticket read as a report and got the
    「如果这是一个新的问题」 line. A comment about the same problem is just a comment."""
    openid = await follow(sender, new_openid())
    number = await resolved(client, sender, capsys, openid)
    replies = await answer(sender, openid, "1", "1", "门口垃圾清运挺快的，谢谢")
    assert replies[-1] == "感谢您的评价！"
    [rating] = await ratings_of(client, number)
    assert rating.comment == "门口垃圾清运挺快的，谢谢"


def test_rating_links_are_signed_with_the_link_secret_when_one_is_set():
    """A link signed with the WeChat token does not verify under a dedicated link secret,
    and one signed with that secret does (the same on every worker with the settings)."""
    from datetime import timedelta as _td

    from bot.casework.ratings import LinkRefused, LinkSigner
    from bot.clock import utcnow
    from tests.conftest import make_settings

    base = make_settings(Path("/tmp/minyi-link-test"), "sqlite+aiosqlite:///:memory:")
    by_token = LinkSigner.from_settings(base)
    own = LinkSigner.from_settings(base.replace(server={"link_secret": "a-secret-of-its-own"}))
    now = utcnow()
    token = own.token(7, 1, now + _td(days=1))
    assert own.verify(token, now) == (7, 1)
    with pytest.raises(LinkRefused):
        by_token.verify(token, now)
