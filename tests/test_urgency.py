"""Urgency rules (config/urgency.toml + nlp/urgency.py).

The table below is hand-written for these tests (none of it is copied from
tests/data/routing_eval.csv): each 特急 line stands for a class of wording, each
non-urgent line for a class that must NOT raise a red warning (negation, past events,
prevention, worry, hypotheticals, drills, questions, look-alike phrases).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bot.settings import CONFIG_DIR
from nlp.urgency import UrgencyDetector

EVAL_CSV = Path(__file__).parent / "data" / "routing_eval.csv"


@pytest.fixture(scope="module")
def detector() -> UrgencyDetector:
    return UrgencyDetector.load(CONFIG_DIR / "urgency.toml")


RED = "特急"

CASES: list[tuple[str, str]] = [
    # ---- 特急: one line per class of wording
    ("煤气味好大，快来人", RED),                                  # gas smell, "X味" forms
    ("闻到一股液化气味，好像是楼上漏的", RED),
    ("厨房天然气管子嘶嘶往外漏气，家里还有老人", RED),             # pipe + leak sound
    ("单元门口的燃气管道被挖掘机挖爆了", RED),
    ("有人拿着刀在小区里晃", RED),                                # holding a weapon
    ("那个男的拿刀追着砍人", RED),
    ("两个人在街上拿着钢管互相打，一个人头上在流血", RED),
    ("他站在窗台上说要跳下去", RED),                              # jumping / suicide intent
    ("桥上有个女的一直在哭，看样子要往下跳", RED),
    ("隔壁天台边上坐着一个小伙子，劝了半天不肯下来", RED),
    ("我真的活不下去了，吃了好多安眠药", RED),
    ("今晚就想结束这一切，谁也别找我", RED),
    ("老人倒地不动了，快叫救护车", RED),                          # unresponsive person
    ("一辆货车撞了行人，人躺在路中间一动不动", RED),
    ("我妈在卫生间摔了，怎么喊都叫不醒", RED),
    ("爷爷呼吸很微弱，脸色发紫", RED),
    ("天台上有个人站在边缘，看着要出事", RED),                    # at a roof edge, one clause
    ("有个老太太一个人往河里走，水都到腰了", RED),                # walking into water
    ("我儿子掉水里了", RED),                                      # drowning, deep water
    ("河边有个小孩在水里扑腾，快来人", RED),
    ("暴雨把涵洞淹了，水到脖子了，还有人在里面", RED),
    ("好几十人围在政府门口", RED),                                # crowds, with counts
    ("几百个村民堵在镇政府门口讨说法", RED),
    ("商户们集体堵在市场门口不让拆", RED),
    ("工人们把厂门堵住了，要老板出来给说法", RED),               # 把 + gate + blocked
    ("十几个人举着标语坐在镇政府大门口不肯走", RED),             # a sit-in at a gate
    ("电梯突然停了，我们三个人困在里面", RED),                    # trapped / buried
    ("工地围墙倒了，下面好像压着两个人", RED),
    ("地下室进水了，老人还在里面出不来", RED),
    ("十分钟之前着火了，现在火还在烧", RED),                      # fire, smoke
    ("不是演练！三楼真的着火了", RED),
    ("楼道里全是烟，看不清，我们下不去", RED),
    ("仓库那边轰的一声巨响，玻璃全震碎了", RED),                  # explosion, fleeing, chemicals
    ("工厂里冒出一股黄色的烟，工人都在往外跑", RED),
    ("我老公又打我，我躲在厕所里", RED),                          # domestic violence
    # ---- not 特急
    ("不是火灾，就是楼道的灯坏了", "一般"),                        # negation
    ("没有人受伤，就是车被刮了", "一般"),
    ("想找个心理咨询师聊聊，最近压力有点大", "一般"),              # counselling is not a crisis
    ("早上闻到糊味还以为着火了，原来是楼下烧烤", "一般"),          # mistaken belief
    ("门口的梧桐树被砍了好几棵，谁批准的", "一般"),                # trees, not people
    ("闻了半天也没有煤气味，就是灶打不着火", "一般"),
    ("去年我们小区有人跳楼，现在想给天台加个门锁", "一般"),          # past events
    ("前年隔壁楼失火，烧坏的外墙到现在都没修", "一般"),
    ("上次电梯困人等了一个小时，这次维保要认真点", "一般"),
    ("消防演练的时候模拟三楼着火，效果不错", "一般"),                # drills, publicity
    ("宣传栏上贴的火灾逃生知识已经褪色了", "一般"),
    ("电视上说有个地方发生爆炸，我们小区的燃气管道安全吗", "一般"),
    ("请问家里燃气泄漏应该先做什么？想学习一下", "一般"),            # questions, advice
    ("建议在河边装个防溺水的护栏，万一有孩子掉下去就麻烦了", "一般"),
    ("担心楼道堆放杂物着火，希望物业清理", "一般"),                  # worry, prevention
    ("电动车千万别在楼道充电，容易起火", "一般"),
    ("要是再不修燃气表，早晚出事", "一般"),                          # hypotheticals
    ("真要打起来谁负责？他们俩天天吵", "一般"),
    ("会不会有人掉进这个没盖的井里？", "一般"),
    ("差点被楼上掉的花盆砸到，想问问怎么处理", "一般"),              # near misses
    ("孩子打游戏打到半夜，我都快被气死了", "一般"),
    ("下周他们准备组织几十个业主去售楼处拉横幅，提前反映一下", "一般"),  # a gathering being planned
    ("这家店跳楼价甩卖，门口人挤人", "一般"),                        # look-alike phrases
    ("我想死你们了，好久没回社区了", "一般"),
    ("小区烧烤摊天天冒烟，烟熏得受不了", "一般"),                    # smoke that is not a fire
    ("工厂烟囱一直冒黑烟，污染严重", "一般"),
    ("楼顶上有人晒被子，把水滴得到处都是", "一般"),
    ("我的车被堵在车库出不来了", "一般"),
    ("狗把孩子腿咬破了，流了点血，打了疫苗", "紧急"),                # minor injury: urgent, not red
    ("楼道电瓶车冒白烟，还没有明火", "紧急"),                        # smoke, no flame yet
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[t for t, _ in CASES])
def test_hand_written_sentences(detector: UrgencyDetector, text: str, expected: str) -> None:
    result = detector.detect(text)
    assert result.level == expected, f"{text!r}: {result.level} {result.reasons}"


def test_table_has_both_kinds() -> None:
    red = sum(1 for _, level in CASES if level == RED)
    assert red >= 15 and len(CASES) - red >= 15


def test_reasons_name_the_rule(detector: UrgencyDetector) -> None:
    assert "燃气泄漏" in detector.detect("煤气味好大，快来人").reasons
    assert detector.detect("今天天气不错").reasons == ()


def test_eval_set_red_recall_and_false_alarms(detector: UrgencyDetector) -> None:
    with open(EVAL_CSV, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    red = [r["text"] for r in rows if r["urgency"] == RED]
    other = [r["text"] for r in rows if r["urgency"] != RED]
    missed = [t for t in red if detector.detect(t).level != RED]
    alarms = [t for t in other if detector.detect(t).level == RED]
    recall = 1 - len(missed) / len(red)
    false_alarm_rate = len(alarms) / len(other)
    print(f"\n特急 recall {len(red) - len(missed)}/{len(red)} = {recall:.1%}; "
          f"false alarms {len(alarms)}/{len(other)} = {false_alarm_rate:.1%}")
    assert red and other
    assert recall == 1.0, missed
    assert false_alarm_rate <= 0.05, alarms


def test_the_pattern_prefilter_changes_no_result(detector: UrgencyDetector) -> None:
    """detect() runs a rule's patterns only when the text holds a string every match of
    them contains; with every pattern rule forced to run, every result is the same."""
    texts = [text for text, _ in CASES]
    for name in ("routing_eval.csv", "routing_holdout.csv"):
        with open(EVAL_CSV.parent / name, encoding="utf-8") as fh:
            texts += [row["text"] for row in csv.DictReader(fh)]
    prefiltered = [detector.detect(text) for text in texts]
    brute = UrgencyDetector.load(CONFIG_DIR / "urgency.toml")
    brute._hints_by_opening, brute._hints_by_char = {}, {}
    brute._patterns_always = {n for n, rule in enumerate(brute.rules) if rule.patterns}
    assert len(brute._patterns_always) >= 20
    assert [brute.detect(text) for text in texts] == prefiltered
    assert sum(result.level == RED for result in prefiltered) >= 60


@pytest.mark.parametrize("name", ["routing_eval.csv", "routing_holdout.csv"])
def test_red_warnings_through_minyi_route(name: str, data_dir, monkeypatch, capsys) -> None:
    """The urgency `minyi route` decides (category default + rules), on both sets: every
    特急 report raises one; at most 2 % of the others do. The held-out set was written
    without sight of these rules (its first run found 20/23; see docs/routing.md)."""
    import io
    import json

    from tests.conftest import run_main

    with open(EVAL_CSV.parent / name, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(r["text"] + "\n" for r in rows)))
    code, out = run_main(capsys, "route")
    assert code == 0
    urgencies = [json.loads(line)["urgency"] for line in out.splitlines()]
    assert len(urgencies) == len(rows)
    missed = [r["text"] for r, u in zip(rows, urgencies) if r["urgency"] == RED and u != RED]
    alarms = [r["text"] for r, u in zip(rows, urgencies) if r["urgency"] != RED and u == RED]
    assert missed == []
    assert len(alarms) <= 0.02 * sum(r["urgency"] != RED for r in rows), alarms


@pytest.mark.parametrize("pattern, text", [
    ("x[ab]{1,2}y", "xaby"),            # a longer repeat splits what stands before and after it
    ("煤气(泄)+漏", "煤气泄泄漏了"),
    ("(ab+c)", "abbbc"),
    ("(|a)b", "b"),                     # an alternative that matches nothing
    ("(?i)abc", "ABC"),                 # flags: the prefilter gives up
    ("(?i:ab)c", "ABc"),
    ("流了.{0,2}血", "流了好多血"),
    ("(楼上|高空).{0,8}(扔|掉)", "高空有东西掉"),
])
def test_prefilter_hints_are_in_every_match(pattern: str, text: str) -> None:
    """A pattern is tried only when one of its hint strings occurs; a hint a real match
    does not contain would silently drop a red warning."""
    import re

    from nlp.urgency import _required_literals

    assert re.search(pattern, text)
    hints = _required_literals(pattern)
    assert hints is None or any(hint in text for hint in hints), hints
