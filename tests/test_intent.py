"""The intent step (nlp/intent.py, config/intents.toml): what a resident's text wants
before it becomes report text; `minyi intent evaluate|classify`."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest

from bot.settings import CONFIG_DIR
from nlp.intent import IntentClassifier
from tests.conftest import run_main

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def classifier() -> IntentClassifier:
    return IntentClassifier.from_config(CONFIG_DIR)


PHRASINGS = {
    "greeting": ["你好", "您好，在吗？", "哈喽", "早上好", "工作人员您好", "hello"],
    "thanks": ["谢谢", "非常感谢！", "辛苦你们了", "好的，谢谢", "给你们点赞👍", "谢谢，问题已经处理好了，很满意"],
    "goodbye": ["再见", "拜拜", "好的再见", "先这样吧，再见", "没有别的事了", "88"],
    "help": ["怎么用", "这个公众号怎么用？", "怎么投诉", "可以反映什么问题", "怎么上传照片", "我不会用，能教一下吗"],
    "human": ["转人工", "人工客服", "你们电话多少", "你们几点上班", "有没有真人", "给我转人工"],
    "status": ["查询", "帮我查一下20261202-0001", "查询 20261202-0001", "我的投诉处理得怎么样了", "上次反映的问题有结果了吗",
               "20261202-0001"],
    "urge": ["催一下，怎么还没人来处理", "催办", "麻烦催一下", "都一个星期了还没人管", "我前天报的到现在都没人来",
             "20261202-0001 加急处理一下"],
    "cancel": ["取消", "不用了", "取消投诉", "我要撤回刚才的投诉", "刚才发错了", "不用了，谢谢"],
    "supplement": ["补充一下，是3号楼2单元", "还有，晚上也很吵", "忘了说，地址是幸福路18号", "再补充一点情况",
                   "另外，门口还有一堆建筑垃圾", "补充说明：每天晚上十点以后"],
    "nonsense": ["asdfghjkl", "😡😡😡", "。。。", "哈哈哈哈", "啊", "I want to complain about the weather"],
    "report": ["路灯坏了", "楼上太吵", "小区停水了", "垃圾桶满了没人清理", "下水道堵了，污水都冒出来了",
               "幸福里小区3号楼的电梯坏了三天了，老人下不了楼"],
}


@pytest.mark.parametrize("intent,text", [(i, t) for i, texts in PHRASINGS.items() for t in texts])
def test_phrasings_by_intent(classifier, intent, text):
    result = classifier.classify(text)
    assert result.intent == intent, (text, result)
    assert 0.0 <= result.confidence <= 1.0


@pytest.mark.parametrize("text,expected", [
    # a real complaint that opens with a courtesy is a report
    ("你好，我家楼上每天半夜装修，电钻吵得人睡不着", {"report"}),
    ("您好，幸福里小区3号楼的电梯坏了三天了", {"report"}),
    ("谢谢！我们楼道的灯坏了很久了，麻烦派人看看", {"report"}),
    ("在吗？我家楼下有人烧垃圾，烟特别大", {"report"}),
    ("再见了这个破小区，物业天天不作为", {"report"}),
    # thanks, but: a follow-up, not thanks
    ("谢谢，但是路灯还是没修", {"urge", "report"}),
    # an intention to report, alone, is a report (the dialog asks for the details)
    ("我要投诉", {"report"}),
    ("我要反映个问题", {"report"}),
    # cue words inside ordinary reports
    ("人工湖里有人游泳", {"report"}),
    ("公交线路被取消了", {"report"}),
    ("取消了我们小区门口的公交站，老人出行很不方便", {"report"}),
    ("物业电话一直打不通，水管漏水也没人修", {"report"}),
    ("还有人在小区里遛狗不牵绳", {"report"}),
    ("催收公司天天打电话骚扰我", {"report"}),
    ("补充医疗保险报销一直报不下来", {"report"}),
    ("快点来人啊", {"report"}),
])
def test_hard_negatives(classifier, text, expected):
    result = classifier.classify(text)
    assert result.intent in expected, (text, result)


def test_substance(classifier):
    for text in ("asdfghjkl", "😡😡😡", "啊", "哈哈哈哈", "？？？", "How do I use this?", "你好", "谢谢"):
        assert not classifier.classify(text).substantive, text
    intent = classifier.classify("我要投诉")
    assert intent.intent == "report" and not intent.substantive  # the dialog asks what happened
    for text in ("路灯坏了", "人工湖里有人游泳", "你好，我家楼上每天半夜装修，电钻吵得人睡不着"):
        assert classifier.classify(text).substantive, text


def test_a_close_runner_up_is_offered(classifier):
    result = classifier.classify("另外，门口还有一堆建筑垃圾")
    assert result.intent == "supplement" and result.alternatives == ("report",)
    assert classifier.label(result.alternatives[0]) == "反映问题"
    assert classifier.classify("你好").alternatives == ()


@pytest.mark.parametrize("text,number", [
    ("20261202-0001", "20261202-0001"),
    ("帮我查一下20261202-0001", "20261202-0001"),
    ("工单２０２６１２０２－０００１怎么样了", "20261202-0001"),  # full-width digits and dash
    ("麻烦看下20261130—0012的进展", "20261130-0012"),  # em dash
    ("20261130–0012", "20261130-0012"),  # en dash
    ("编号 20261130 - 0012 催一下", "20261130-0012"),
    ("我的电话是13912345678", None),
    ("订单号120261130-00125", None),  # part of a longer number
    ("路灯坏了", None),
])
def test_ticket_numbers(classifier, text, number):
    assert classifier.ticket_number(text) == number
    assert classifier.classify(text).ticket_number == number


def test_precomputed_tokens_give_the_same_result(classifier):
    for text in ("人工湖里有人游泳", "给我转人工", "小区里有狗咬人", "你好，我要投诉"):
        tokens = classifier.tagger.tokens(text)
        assert classifier.classify(text, tokens) == classifier.classify(text)


def test_intent_codes_come_from_config(tmp_path, classifier):
    """Renaming an intent in config is all it takes: the code knows none by name."""
    text = (CONFIG_DIR / "intents.toml").read_text(encoding="utf-8")
    renamed = text.replace('"report"', '"complaint"').replace('"nonsense"', '"junk"')
    (tmp_path / "intents.toml").write_text(renamed, encoding="utf-8")
    other = IntentClassifier.from_config(tmp_path, tagger=classifier.tagger)
    assert other.classify("路灯坏了").intent == "complaint"
    assert other.classify("asdfghjkl").intent == "junk"
    assert other.classify("你好").intent == "greeting"


def test_a_config_naming_an_unknown_fallback_is_refused(tmp_path, classifier):
    text = (CONFIG_DIR / "intents.toml").read_text(encoding="utf-8")
    (tmp_path / "intents.toml").write_text(text.replace('fallback = "report"', 'fallback = "missing"'),
                                           encoding="utf-8")
    with pytest.raises(ValueError, match="fallback"):
        IntentClassifier.from_config(tmp_path, tagger=classifier.tagger)


def test_builds_its_own_tagger_from_a_config_dir(tmp_path):
    for name in ("intents.toml", "taxonomy.toml", "jieba_userdict.txt"):
        shutil.copy(CONFIG_DIR / name, tmp_path / name)
    assert IntentClassifier.from_config(tmp_path).classify("楼上太吵").intent == "report"


# ---------------------------------------------------------------- CLI

def goal(out: str, name: str, which: str) -> float:
    """A goal figure (percent) of one file from `minyi intent evaluate` output."""
    section = out.split(f"  {name}\n", 1)[1]
    label = "没有成为工单" if which == "kept_out" else "仍识别为"
    return float(re.search(rf"{label}[^：]*：([\d.]+)%", section).group(1))


def test_evaluate_on_the_independent_set(data_dir, capsys):
    """The figures of the independent set (427 messages written without sight of the phrase
    lists) and of both routing sets, each a little below what the run reached."""
    files = [str(DATA / name) for name in ("intent_eval.csv", "routing_eval.csv", "routing_holdout.csv")]
    code, out = run_main(capsys, "intent", "evaluate", *[a for f in files for a in ("--data", f)])
    assert code == 0
    for heading in ("意图", "样本数", "正确", "准确率", "最主要的错误", "目标指标", "合计"):
        assert heading in out
    assert re.search(r"^greeting 打招呼\s+34\s+\d+\s+[01]\.\d{3}$", out, re.M)
    assert goal(out, files[0], "kept_out") >= 95.5  # 96.3 % (290/301) in the run
    assert goal(out, files[0], "kept") >= 98.0  # 99.2 % (125/126)
    assert goal(out, files[1], "kept") >= 98.0  # 98.7 % (457/463)
    assert goal(out, files[2], "kept") >= 98.0  # 98.5 % (319/324)


def test_evaluate_on_the_development_set(data_dir, capsys):
    code, out = run_main(capsys, "intent", "evaluate", "--data", str(DATA / "intent_dev.csv"))
    assert code == 0
    assert goal(out, str(DATA / "intent_dev.csv"), "kept_out") >= 99.0
    assert goal(out, str(DATA / "intent_dev.csv"), "kept") >= 98.5


def test_evaluate_refuses_a_csv_without_text(data_dir, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("message,intent\n你好,greeting\n", encoding="utf-8")
    from bot.cli import main

    assert main(["intent", "evaluate", "--data", str(bad)]) == 1  # run_main would swallow stderr
    assert "需要 text 列" in capsys.readouterr().err


def test_classify_reads_lines_and_writes_json_lines(data_dir, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("你好\n\n帮我查一下２０２６１２０２－０００１\n人工湖里有人游泳\n"))
    code, out = run_main(capsys, "intent", "classify")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["intent"] for r in rows] == ["greeting", "status", "report"]
    assert rows[0]["label"] == "打招呼"
    assert rows[1]["ticket_number"] == "20261202-0001"
    assert rows[2]["substantive"] is True
    assert set(rows[0]) >= {"text", "intent", "label", "confidence", "ticket_number", "alternatives", "substantive"}
