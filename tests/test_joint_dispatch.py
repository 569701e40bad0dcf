"""Joint dispatch (联合派单): when two keyword categories of different departments both
score high, the best one's department leads and the runner-up's joins the co-departments."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from bot.settings import CONFIG_DIR
from nlp.gazetteer import Gazetteer
from nlp.geo import GridLocator
from nlp.router import JOINT_RATIO, Router
from storage.models import Ticket
from tests import wechat
from tests.conftest import services_of

ELEVATOR_AND_PROPERTY = "电梯故障困人，物业不管，维保单位也不来"


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.from_config(CONFIG_DIR, GridLocator([]), Gazetteer([]))


def test_elevator_trapping_with_absent_property_management_is_joint(router):
    scores = router.tagger.tag(ELEVATOR_AND_PROPERTY).scores
    (best, best_code), (second, second_code) = sorted(((s, c) for c, s in scores.items()), reverse=True)[:2]
    assert second >= JOINT_RATIO * best
    r = router.route(ELEVATOR_AND_PROPERTY)
    assert r.category == "elevator" and best_code == "elevator"
    assert r.joint is True
    assert r.lead_department == r.department == "market"  # 市场监管
    assert router.taxonomy.department_name(r.lead_department) == "市场监管"
    runner_up_department = router.taxonomy.categories[second_code].department
    assert {"housing", "property", runner_up_department} <= set(r.co_departments)  # 住建, 物业
    assert r.lead_department not in r.co_departments
    assert len(set(r.co_departments)) == len(r.co_departments)
    assert r.urgency == "特急"  # 困人


def test_a_report_about_one_thing_is_not_joint(router):
    r = router.route("楼下烧烤店油烟太大了熏得窗户都不敢开")
    assert r.category == "cooking_fumes" and r.joint is False
    assert r.lead_department == r.department
    assert r.co_departments == router.taxonomy.categories["cooking_fumes"].co_departments


def test_a_weak_runner_up_is_not_joint(router):
    text = "3号楼电梯又坏了，电梯故障好几天，电梯维修也不来，物业"
    scores = router.tagger.tag(text).scores
    ranked = sorted(scores.values(), reverse=True)
    assert len(ranked) >= 2 and ranked[1] < JOINT_RATIO * ranked[0]
    r = router.route(text)
    assert r.category == "elevator" and r.joint is False
    assert r.co_departments == router.taxonomy.categories["elevator"].co_departments


async def test_a_joint_ticket_keeps_its_co_departments(client, sender, new_openid):
    openid = new_openid()
    await sender.reply(wechat.event(openid, "subscribe"))
    await sender.reply(wechat.text(openid, "同意"))
    reply = await sender.reply(wechat.text(openid, "幸福里小区" + ELEVATOR_AND_PROPERTY))
    assert re.search(r"\d{8}-\d{4}", reply), reply
    async with services_of(client).db.session() as s:
        [ticket] = (await s.exec(select(Ticket).where(Ticket.openid == openid))).all()
    assert ticket.category == "elevator" and ticket.department == "market"
    assert {"housing", "property"} <= set(ticket.co_departments or [])
