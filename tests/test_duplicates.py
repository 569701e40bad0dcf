"""Near-duplicate reports and repeat complaints: the similarity function, and the
links a new ticket gets, end to end through /wechat."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func
from sqlmodel import select

from nlp import similarity
from storage.models import Outbox, Ticket, TicketEvent
from tests import wechat
from tests.steps import follow
from tests.conftest import services_of

NUMBER = re.compile(r"\d{8}-\d{4}")
GRID_1 = "420199002001001"  # 幸福里第一网格
GRID_1_WORKER = "o-demo-grid-05"

ELEVATOR = "幸福里小区3号楼电梯坏了，老人下不了楼"
ELEVATOR_AGAIN = "幸福里3号楼的电梯又坏啦 老人没法下楼 快来修"

# Realistic restatements of one problem, and different problems of the same grid/place.
PARAPHRASES = [
    (ELEVATOR, ELEVATOR_AGAIN),
    ("幸福里小区3号楼的电梯又坏了，老人上下楼很困难，请尽快派人修", ELEVATOR),
    (ELEVATOR, "幸福里小区三号楼电梯不能用了 老年人下不去楼"),
    ("枫林小区楼下烧烤摊每天晚上油烟太大，窗户都不敢开", "枫林小区楼下那个烧烤摊油烟太呛了 晚上根本不敢开窗"),
    ("翠竹苑小区垃圾站好几天没人清运了，臭气熏天", "翠竹苑垃圾站垃圾堆了好几天没人清运 太臭了"),
    ("锦绣路上的下水道井盖丢了，晚上很容易有人掉进去", "锦绣路下水道井盖没了 晚上走路容易掉下去 太危险"),
    ("春晖家园楼上邻居天天半夜装修砸墙，吵得孩子睡不着", "春晖家园楼上半夜装修砸墙 孩子吵得睡不着觉"),
    ("枫林路的路灯坏了一整排，晚上黑漆漆的很不安全", "枫林路路灯一排都不亮了，晚上黑乎乎的不安全"),
    ("幸福路菜场门口占道经营，早上车都过不去", "幸福路菜场门口小摊贩占道 早上堵得车过不去"),
    ("东湖名苑小区的路灯坏了好几盏了晚上回家很黑", "东湖名苑路灯不亮 好几盏都坏了 晚上黑黢黢的"),
    ("湖滨公园里有人遛狗不拴绳，还咬伤了小孩", "湖滨公园遛狗不牵绳 小孩被狗咬了"),
    ("金桂苑物业把绿化带改成停车位收费，业主都有意见", "金桂苑物业私自把绿化带改停车位还收钱"),
]
DIFFERENT = [
    (ELEVATOR, "幸福里小区门口垃圾好几天没人清运了，很臭"),
    (ELEVATOR, "幸福里小区5号楼楼道里堆满杂物，消防通道堵了"),
    (ELEVATOR, "幸福里幼儿园门口早上乱停车，孩子过马路很危险"),
    (ELEVATOR, "幸福里小区3号楼楼上漏水，家里天花板都泡坏了"),
    (ELEVATOR, "幸福里小区7号楼的路灯坏了，晚上老人出门不方便"),
    (ELEVATOR, "幸福里小区3号楼电梯里广告屏声音太大"),
    ("枫林小区楼下烧烤摊每天晚上油烟太大，窗户都不敢开", "枫林小区楼下广场舞每天晚上音响太大，孩子都睡不着"),
    ("翠竹苑小区垃圾站好几天没人清运了，臭气熏天", "翠竹苑小区物业乱收停车费，业主很有意见"),
    ("锦绣路上的下水道井盖丢了，晚上很容易有人掉进去", "锦绣路上的路灯坏了，晚上很黑"),
    ("春晖家园楼上邻居天天半夜装修砸墙，吵得孩子睡不着", "春晖家园楼下邻居在楼道里堆放杂物"),
    ("东湖名苑小区的路灯坏了好几盏了晚上回家很黑", "东湖名苑小区地下车库积水很深，车都开不进去"),
    ("湖滨公园里有人遛狗不拴绳，还咬伤了小孩", "湖滨公园的健身器材坏了，小孩玩很危险"),
    ("金桂苑物业把绿化带改成停车位收费，业主都有意见", "金桂苑物业不作为，楼道灯坏了半年没人修"),
]


# --- the similarity function -------------------------------------------------------

def test_identical_texts_score_one_and_normalisation_ignores_width_case_and_punctuation():
    assert similarity.similarity(ELEVATOR, ELEVATOR) == 1.0
    assert similarity.similarity("幸福里小区３号楼电梯坏了！！老人下不了楼", ELEVATOR) == 1.0
    assert similarity.normalise("ＡＢｃ 1２3，。!") == "abc123"


def test_paraphrases_score_above_the_threshold_and_different_problems_below():
    for a, b in PARAPHRASES:
        assert similarity.similarity(a, b) >= similarity.THRESHOLD, (a, b)
    for a, b in DIFFERENT:
        assert similarity.similarity(a, b) < similarity.THRESHOLD, (a, b)


def test_the_estimate_tracks_the_exact_jaccard():
    for a, b in PARAPHRASES + DIFFERENT:
        assert abs(similarity.similarity(a, b) - similarity.jaccard(a, b)) < 0.15, (a, b)


def test_signature_is_compact_and_the_same_in_another_process():
    signature = similarity.signature(ELEVATOR)
    assert signature is not None and len(signature) <= 700
    assert similarity.estimate(signature, similarity.signature(ELEVATOR)) == 1.0
    assert similarity.decode(signature) == similarity.pack(similarity.minhash(ELEVATOR))  # type: ignore[arg-type]
    other = subprocess.run([sys.executable, "-c", f"from nlp import similarity; print(similarity.signature({ELEVATOR!r}))"],
                           capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
                           env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert other.stdout.strip() == signature


def test_short_or_missing_text_has_no_signature():
    assert similarity.signature("好的") is None
    assert similarity.estimate(None, similarity.signature(ELEVATOR)) == 0.0
    assert similarity.estimate("not a signature", similarity.signature(ELEVATOR)) == 0.0


# --- tickets, end to end --------------------------------------------------------------



async def in_grid_1(sender: wechat.Sender, openid: str) -> None:
    """「幸福里3号楼」 alone names no place the gazetteer knows: the resident shares a location."""
    assert "幸福里第一网格" in await sender.reply(wechat.location(openid, 30.590, 114.350))


async def report(sender: wechat.Sender, openid: str, text: str) -> tuple[str, str]:
    reply = await sender.reply(wechat.text(openid, text))
    found = NUMBER.search(reply)
    assert found, reply
    return reply, found.group(0)


async def ticket(client, number: str) -> Ticket:  # type: ignore[no-untyped-def]
    async with services_of(client).db.session() as s:
        return (await s.exec(select(Ticket).where(Ticket.number == number))).one()


async def actions(client, ticket_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    async with services_of(client).db.session() as s:
        return list((await s.exec(select(TicketEvent.action).where(TicketEvent.ticket_id == ticket_id)
                                  .order_by(TicketEvent.id))).all())


async def notices_to(client, openid: str) -> int:  # type: ignore[no-untyped-def]
    async with services_of(client).db.session() as s:
        return (await s.exec(select(func.count()).select_from(Outbox).where(Outbox.openid == openid))).one()


async def test_a_second_resident_reporting_the_same_problem_is_linked_without_new_staff_notices(
        client, sender, new_openid):
    first, second = new_openid(), new_openid()
    await follow(sender, first)
    await follow(sender, second)
    _, number = await report(sender, first, ELEVATOR)
    original = await ticket(client, number)
    assert original.area_code == GRID_1 and original.category == "elevator"
    assert original.signature and original.duplicate_of_id is None
    notices = await notices_to(client, GRID_1_WORKER)
    assert notices == 1

    await in_grid_1(sender, second)
    reply, linked_number = await report(sender, second, ELEVATOR_AGAIN)
    assert linked_number != number
    # Told their own number and that it is being handled, never the first resident's number.
    assert f"编号：{linked_number}" in reply and "一并处理" in reply and "进展" in reply
    assert NUMBER.findall(reply) == [linked_number]
    linked = await ticket(client, linked_number)
    assert linked.duplicate_of_id == original.id and linked.repeat_of_id is None
    assert linked.status == original.status and linked.openid == second  # recorded all the same
    assert "link_duplicate" in await actions(client, linked.id)
    assert await notices_to(client, GRID_1_WORKER) == notices  # only the original's staff handle it

    # A third resident: still linked to the original, not to the linked duplicate.
    third = new_openid()
    await follow(sender, third)
    reply, third_number = await report(sender, third, "幸福里小区3号楼的电梯又坏了，老人上下楼很困难，请尽快派人修")
    assert NUMBER.findall(reply) == [third_number] and "一并处理" in reply
    assert (await ticket(client, third_number)).duplicate_of_id == original.id
    assert await notices_to(client, GRID_1_WORKER) == notices


async def test_a_different_problem_in_the_same_grid_is_not_linked(client, sender, new_openid):
    first, second = new_openid(), new_openid()
    await follow(sender, first)
    await follow(sender, second)
    _, number = await report(sender, first, ELEVATOR)
    reply, other = await report(sender, second, "幸福里小区门口垃圾好几天没人清运了，臭得不行")
    assert number not in reply
    linked = await ticket(client, other)
    assert linked.area_code == GRID_1
    assert linked.duplicate_of_id is None and linked.repeat_of_id is None
    assert await notices_to(client, GRID_1_WORKER) == 2


async def test_the_same_text_in_another_grid_is_not_linked(client, sender, new_openid):
    first, second = new_openid(), new_openid()
    await follow(sender, first)
    await follow(sender, second)
    _, number = await report(sender, first, ELEVATOR)
    # The second resident sends a location in 幸福里第二网格 first: the report is placed there.
    await sender.reply(wechat.location(second, 30.590, 114.370))
    reply, other = await report(sender, second, ELEVATOR)
    elsewhere = await ticket(client, other)
    assert elsewhere.area_code != GRID_1
    assert number not in reply
    assert elsewhere.duplicate_of_id is None and elsewhere.repeat_of_id is None


async def test_the_same_resident_complaining_again_is_flagged_as_a_repeat(client, sender, new_openid):
    openid = new_openid()
    await follow(sender, openid)
    await in_grid_1(sender, openid)
    _, number = await report(sender, openid, ELEVATOR)
    original = await ticket(client, number)
    reply, again = await report(sender, openid, ELEVATOR_AGAIN)
    assert again != number and number in reply and "再次反映" in reply
    repeat = await ticket(client, again)
    assert repeat.repeat_of_id == original.id and repeat.duplicate_of_id is None
    assert "repeat" in await actions(client, repeat.id)
    assert await notices_to(client, GRID_1_WORKER) == 2  # a repeat complaint reaches the staff again


async def test_a_repeat_of_a_linked_duplicate_stays_linked_to_the_original(client, sender, new_openid):
    first, second = new_openid(), new_openid()
    await follow(sender, first)
    await follow(sender, second)
    _, number = await report(sender, first, ELEVATOR)
    await in_grid_1(sender, second)
    _, linked_number = await report(sender, second, ELEVATOR_AGAIN)
    reply, again = await report(sender, second, ELEVATOR_AGAIN)
    repeat = await ticket(client, again)
    assert repeat.repeat_of_id == (await ticket(client, linked_number)).id
    assert repeat.duplicate_of_id == (await ticket(client, number)).id
    # Their own numbers (the new ticket, the earlier one it repeats), not the first resident's.
    assert NUMBER.findall(reply) == [again, linked_number] and "再次反映" in reply
    assert await notices_to(client, GRID_1_WORKER) == 1
