"""The learned router: training and evaluating from CSV, versions in the data dir,
`minyi route` with a trained model, its combination with the keyword rules, and
nightly retraining from closed tickets."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import select

from bot.casework.actors import Actor
from bot.casework.desk import act
from bot.retrain import collect_examples, retrain
from bot.routes import INBOX
from bot.scheduler import RETRAIN_JOB, start_scheduler
from bot.settings import CONFIG_DIR
from nlp import learned
from nlp.gazetteer import Gazetteer
from nlp.geo import GridLocator
from nlp.learned import LearnedModel, Prediction, current_path, load_current, versions
from nlp.router import Router
from nlp.scorer import FastScorer
from nlp.taxonomy import Taxonomy
from nlp.tokens import word_tokens
from storage.models import Ticket
from tests import wechat
from tests.conftest import run_main, services_of

ROOT = Path(__file__).resolve().parents[1]

TAXONOMY = Taxonomy.load(CONFIG_DIR / "taxonomy.toml")
SOME_CATEGORIES = sorted(TAXONOMY.categories)[::3]
ROW = re.compile(r"^(关键词规则|学习模型|规则\+模型)\s+([\d.]+)\s+([\d.]+)\s*$", re.M)
DATA = Path(__file__).parent / "data"


def taxonomy_examples(label_of=lambda c: c.code) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(text, label_of(c)) for c in TAXONOMY.categories.values() for text in c.examples]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def route_lines(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *lines: str) -> list[dict]:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    code, out = run_main(capsys, "route")
    assert code == 0
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_train_then_evaluate_prints_keyword_and_learned_rows(data_dir, tmp_path, capsys):
    rows = [(text, label) for text, label in taxonomy_examples() if label in SOME_CATEGORIES]  # keeps it fast
    data = write_csv(tmp_path / "examples.csv", rows)
    code, out = run_main(capsys, "router", "train", "--data", str(data), "--folds", "0")
    assert code == 0, out
    assert f"{len(rows)} 条样本，{len(SOME_CATEGORIES)} 个标签" in out
    path = Path(re.search(r"模型已保存：(\S+)", out).group(1))
    assert path.parent == data_dir / "models" and path.is_file()
    assert current_path(data_dir / "models") == path

    code, out = run_main(capsys, "router", "evaluate", "--data", str(data), "--folds", "5")
    assert code == 0, out
    rows = {name: (float(acc), float(f1)) for name, acc, f1 in ROW.findall(out)}
    assert rows.keys() == {"关键词规则", "学习模型", "规则+模型"}, out
    for accuracy, f1 in rows.values():
        assert 0 <= accuracy <= 1 and 0 <= f1 <= 1
    assert rows["关键词规则"][0] > 0.9  # the examples are the keywords' own
    assert out.count("F1 最低的 5 类") == 2
    worst = out.split("学习模型 F1 最低的 5 类：")[1].split("\n\n")[0].strip().splitlines()
    assert len(worst) == 5 and all(line.split()[0] in TAXONOMY.categories for line in worst)


def test_evaluate_on_the_held_out_set(data_dir, capsys):
    """Trained on the evaluation set (+ taxonomy seed), scored on routing_holdout.csv: 324
    reports written without sight of the keyword lists and never used to tune them. A
    guard against rules or a model that only fit the set they were written against."""
    code, out = run_main(capsys, "router", "evaluate", "--data", str(DATA / "routing_eval.csv"),
                         "--test", str(DATA / "routing_holdout.csv"))
    assert code == 0, out
    assert "在 " in out and "324 条样本上测试" in out
    rows = {name: (float(acc), float(f1)) for name, acc, f1 in ROW.findall(out)}
    assert rows.keys() == {"关键词规则", "学习模型", "规则+模型"}, out
    assert rows["关键词规则"][1] >= 0.70  # measured 0.801
    assert rows["学习模型"][1] >= 0.90  # measured 0.928
    assert rows["规则+模型"][1] >= rows["关键词规则"][1] + 0.1


def test_train_refuses_a_csv_without_labels(data_dir, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,comment\n电梯坏了,x\n", encoding="utf-8")
    from bot.cli import main

    code = main(["router", "train", "--data", str(bad)])
    assert code == 1
    assert "label" in capsys.readouterr().err
    assert not (data_dir / "models").exists()


def test_route_uses_the_trained_model_label(data_dir, tmp_path, capsys, monkeypatch):
    # Any label set: the level-1 group of each example's category.
    groups = taxonomy_examples(lambda c: c.group)
    data = write_csv(tmp_path / "groups.csv", groups)
    fumes = TAXONOMY.categories["cooking_fumes"]
    text = fumes.examples[0]
    [before] = route_lines(capsys, monkeypatch, text)
    assert before["label"] == before["category"] and before["model_confidence"] is None
    assert run_main(capsys, "router", "train", "--data", str(data), "--folds", "0")[0] == 0
    [after] = route_lines(capsys, monkeypatch, text)
    assert after["label"] == fumes.group  # the model's label
    assert after["category"] == "cooking_fumes"  # not a category code: keywords keep routing
    assert after["department"] == fumes.department and 0 < after["model_confidence"] <= 1


def test_versions_keep_the_last_five_and_current_names_the_newest(tmp_path):
    models = tmp_path / "models"
    rows = [(t, label) for t, label in taxonomy_examples() if label in ("elevator", "cooking_fumes", "noise")]
    texts, labels = [t for t, _ in rows], [label for _, label in rows]
    saved = []
    for _ in range(7):
        model = LearnedModel.train(texts, labels)
        saved.append(model.save(models))
    kept = versions(models)
    assert kept == saved[-5:] and len(kept) == 5
    assert all(p.name.startswith("router-") and p.name.endswith(".joblib") for p in kept)
    assert current_path(models) == saved[-1]
    current = load_current(models)
    assert current is not None and current.path == saved[-1]
    meta = current.meta
    assert meta["labels"] == sorted(set(labels)) and meta["n_examples"] == len(texts)
    assert meta["version"] == saved[-1].name and meta["trained_at"]
    assert current.predict(TAXONOMY.categories["elevator"].examples[0]).label == "elevator"


def test_cross_validated_macro_f1_is_stored_in_the_model(tmp_path):
    rows = taxonomy_examples()
    model = LearnedModel.train([t for t, _ in rows], [label for _, label in rows], cv_folds=3)
    assert model.meta["cv_folds"] == 3 and 0 <= model.meta["cv_macro_f1"] <= 1


def test_a_broken_current_model_leaves_keywords_routing(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "router-20250101T000000.000000Z.joblib").write_bytes(b"not a model")
    (models / "current").write_text("router-20250101T000000.000000Z.joblib")
    router = Router.from_config(CONFIG_DIR, GridLocator([]), Gazetteer([]), model_dir=models)
    assert router.model is None
    assert router.route("楼下烧烤店油烟太大了熏得窗户都不敢开").category == "cooking_fumes"


# ---------------------------------------------------------------- combining with keywords

class StubModel:
    def __init__(self, label: str, confidence: float) -> None:
        self.prediction = Prediction(label, confidence, [(label, confidence)])

    def bind(self, tokenizer) -> None:  # type: ignore[no-untyped-def]
        pass

    def predict(self, text: str, tokens: list[str] | None = None) -> Prediction:
        return self.prediction


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.from_config(CONFIG_DIR, GridLocator([]), Gazetteer([]))


def routed(router: Router, model: StubModel | None, text: str):  # type: ignore[no-untyped-def]
    router.set_model(model)  # type: ignore[arg-type]
    try:
        return router.route(text)
    finally:
        router.set_model(None)


def test_a_model_category_routes_and_the_department_follows(router):
    text = "幸福里小区3号楼的电梯又坏了，老人上下楼很困难，请尽快派人修"
    plain = router.route(text)
    assert plain.category == "elevator" and plain.label is None and plain.decided_by == "keywords"
    r = routed(router, StubModel("property_service", 0.9), text)
    assert r.category == "property_service" and r.label == "property_service" and r.decided_by == "model"
    assert r.department == TAXONOMY.categories["property_service"].department == r.lead_department
    assert r.confidence == 0.9 and r.model_confidence == 0.9
    agreed = routed(router, StubModel("elevator", 0.3), text)
    assert agreed.decided_by == "keywords+model" and agreed.confidence == max(0.3, plain.confidence)


def test_an_unsure_model_does_not_overturn_a_sure_keyword_match(router):
    r = routed(router, StubModel("noise", 0.2), "楼下烧烤店油烟太大了熏得窗户都不敢开")
    assert r.category == "cooking_fumes" and r.label == "noise" and r.decided_by == "keywords"


def test_keyword_rules_win_on_explicit_danger(router):
    text = "有个人站在楼顶边上好像要跳楼"
    keyword = router.route(text)
    assert keyword.category == "mental_crisis" and keyword.confidence >= 0.8 and keyword.urgency == "特急"
    r = routed(router, StubModel("noise", 0.99), text)
    assert r.category == "mental_crisis" and r.urgency == "特急" and r.label == "noise"
    # Without a danger word the model's choice stands, even against confident keywords.
    fumes = routed(router, StubModel("noise", 0.99), "楼下烧烤店油烟太大了熏得窗户都不敢开")
    assert router.route("楼下烧烤店油烟太大了熏得窗户都不敢开").confidence >= 0.8
    assert fumes.category == "noise" and fumes.decided_by == "model"
    # A danger word raises the urgency whatever category is chosen.
    fire = routed(router, StubModel("noise", 0.99), "着火了")
    assert fire.urgency == "特急"


def test_a_label_outside_the_taxonomy_leaves_the_keyword_category(router):
    r = routed(router, StubModel("urban", 0.95), "楼下烧烤店油烟太大了熏得窗户都不敢开")
    assert r.category == "cooking_fumes" and r.label == "urban"


# ---------------------------------------------------------------- retraining from tickets

REPORTS = {
    "elevator": ["幸福里小区3号楼的电梯又坏了，老人上下楼很困难，请尽快派人修",
                 "枫林小区5号楼电梯坏了一个星期了没人修，老人上不去楼"],
    "cooking_fumes": ["楼下烧烤店油烟太大了熏得窗户都不敢开，天天如此",
                      "小区门口的饭店油烟直排，熏得我们家里全是油烟味"],
}


async def test_retrain_learns_from_closed_and_recategorised_tickets(client, sender, new_openid):
    services = services_of(client)
    openid = new_openid()
    await sender.reply(wechat.event(openid, "subscribe"))
    await sender.reply(wechat.text(openid, "同意"))
    await sender.reply(wechat.location(openid, 30.59, 114.31))  # binds 枫林第一网格: reports need not say where
    for texts in REPORTS.values():
        for text in texts:
            assert re.search(r"\d{8}-\d{4}", await sender.reply(wechat.text(openid, text)))
    await sender.reply(wechat.text(openid, "我家门口的路灯坏了好几天了晚上黑漆漆的"))  # stays open
    async with services.db.transaction() as s:
        tickets = list((await s.exec(select(Ticket).where(Ticket.openid == openid).order_by(Ticket.id))).all())
        closed = [t for t in tickets if t.category in REPORTS]
        assert len(closed) == 4 and len(tickets) == 5
    # The dispatcher moves the second fumes report to another category (a ticket change)…
    dispatcher = services.case.org.find("D01")
    assert dispatcher is not None
    moved = await act(services.case, closed[3].number, services.workflow.reroute_action, Actor.of_staff(dispatcher),
                      category="odor")
    assert moved.recategorized
    async with services.db.transaction() as s:  # …and all four are handled
        await s.exec(update(Ticket).where(Ticket.id.in_([t.id for t in closed])).values(status="resolved"))  # type: ignore[union-attr]

    texts, labels = await collect_examples(services.db, services.workflow)
    assert sorted(labels) == ["cooking_fumes", "elevator", "elevator", "odor"]
    assert REPORTS["cooking_fumes"][1] in texts[labels.index("odor")]

    not_enough = await retrain(services, min_examples=5)
    assert not not_enough.trained and not_enough.n_examples == 4 and services.router.model is None
    result = await retrain(services, min_examples=4, cv_folds=0)
    assert result.trained and result.n_examples == 4
    models = services.settings.models_dir
    assert result.path is not None and current_path(models) == result.path
    # The ticket labels plus the taxonomy seed: a model from a few tickets still knows every category.
    assert services.router.model is not None and services.router.model.labels == sorted(TAXONOMY.categories)
    assert services.router.model.meta["counts"] == {"cooking_fumes": 1, "elevator": 2, "odor": 1}
    assert services.router.route(REPORTS["elevator"][0]).label is not None
    again = await retrain(services, min_examples=4, cv_folds=0)  # nothing new: no new version
    assert not again.trained and versions(models) == [result.path]


async def test_the_nightly_retrain_job_is_scheduled(client):
    services = services_of(client)
    scheduler = start_scheduler(services, client.server.app[INBOX])
    try:
        job = scheduler.get_job(RETRAIN_JOB)
        assert job is not None
        assert str(services.settings.routing.retrain_cron_hour) in str(job.trigger)
    finally:
        scheduler.shutdown(wait=False)
    await asyncio.sleep(0)


def test_routing_settings_section():
    from bot.settings import load_settings

    routing = load_settings({"MINYI_ROUTING_RETRAIN_MIN_EXAMPLES": "50"}).routing
    assert routing.retrain_min_examples == 50 and routing.retrain_cron_hour == 3
    assert routing.confidence_threshold == 0.35
    assert learned.KEEP_VERSIONS == 5


@pytest.mark.parametrize("argv", [["router"], ["router", "train"], ["router", "evaluate"]], ids=" ".join)
def test_router_subcommands_have_chinese_help(data_dir, capsys, argv):
    code, out = run_main(capsys, *argv, "--help")
    assert code == 0 and out.startswith(f"usage: minyi {' '.join(argv)}")
    assert re.search(r"[\u4e00-\u9fff]", out.split("\n", 2)[-1])


# ---------------------------------------------------------------- the fast single-text path

def variants(texts: list[str]) -> list[str]:
    out = []
    for i, text in enumerate(texts):
        out.append(text)
        if i % 3 == 0:
            out.append(f"您好，{text}！！请尽快处理 ABC Road 12号")
        if i % 5 == 0:
            out.append("  ".join(text[j:j + 4] for j in range(0, len(text), 4)) + "\tOK\n")
    return out + ["", "！！！", "   ", "电梯", "a", "WiFi 信号 差", "楼下 烧烤店 油烟 太大"]


@pytest.fixture(scope="module")
def category_model() -> LearnedModel:
    rows = taxonomy_examples()
    return LearnedModel.train([t for t, _ in rows], [label for _, label in rows])


def assert_fast_matches_pipeline(model: LearnedModel, texts: list[str]) -> None:
    batch = model.predict_many(texts)
    scores = model.pipeline.decision_function(texts)
    fast = FastScorer.compile(model.pipeline)
    assert fast is not None and fast.shares_tokens
    tokenizer = fast.words.tokenizer_or_default()
    for text, slow, row in zip(texts, batch, scores):
        quick = model.predict(text)
        shared = model.predict(text, word_tokens(tokenizer, text))  # the router's one jieba pass
        assert shared == quick, text
        assert quick.label == slow.label, text
        assert abs(quick.confidence - slow.confidence) <= 1e-9, text
        assert [c for c, _ in quick.ranked] == [c for c, _ in slow.ranked], text
        got = fast.scores(text)
        assert max(abs(float(a) - float(b)) for a, b in zip(list(got.reshape(-1)), list(row.reshape(-1)))) <= 1e-9, text


def test_the_fast_path_predicts_as_the_pipeline(category_model):
    texts = variants([t for t, _ in taxonomy_examples()])
    assert len(texts) >= 100
    assert_fast_matches_pipeline(category_model, texts)
    assert isinstance(category_model._fast, FastScorer)


def test_the_fast_path_of_a_two_label_model():
    rows = [(t, label) for t, label in taxonomy_examples() if label in ("elevator", "cooking_fumes")]
    model = LearnedModel.train([t for t, _ in rows], [label for _, label in rows])
    assert_fast_matches_pipeline(model, variants([t for t, _ in taxonomy_examples()])[:120])


def test_route_uses_the_fast_path(category_model, tmp_path, monkeypatch):
    category_model.save(tmp_path / "models")
    router = Router.from_config(CONFIG_DIR, GridLocator([]), Gazetteer([]), model_dir=tmp_path / "models")
    assert router.model is not None
    text = TAXONOMY.categories["elevator"].examples[0]
    expected = router.model.predict_many([text])[0]

    def no_sklearn(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("route() went through scikit-learn")

    monkeypatch.setattr(router.model.pipeline, "decision_function", no_sklearn)
    r = router.route(text)
    assert r.label == expected.label and r.model_confidence == expected.confidence
    assert isinstance(router.model._fast, FastScorer)


def test_a_saved_model_routes_without_importing_scikit_learn(category_model, tmp_path):
    """Start-up: a service loads the saved scorer with numpy alone (importing scikit-learn
    costs ~0.65 s); the same labels come out as from the pipeline."""
    category_model.save(tmp_path / "models")
    texts = [t for t, _ in taxonomy_examples()][:40]
    expected = [(p.label, p.confidence) for p in category_model.predict_many(texts)]
    script = f"""
import json, sys
from pathlib import Path
from bot.settings import CONFIG_DIR
from nlp.gazetteer import Gazetteer
from nlp.geo import GridLocator
from nlp.router import Router
router = Router.from_config(CONFIG_DIR, GridLocator([]), Gazetteer([]), model_dir=Path({str(tmp_path / "models")!r}))
routes = [router.route(text) for text in json.loads(sys.stdin.read())]
print(json.dumps({{"sklearn": sorted(m for m in sys.modules if m.split(".")[0] == "sklearn"),
                  "got": [[r.label, r.model_confidence] for r in routes]}}))
"""
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(texts), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sklearn"] == []
    assert [tuple(pair) for pair in result["got"]] == expected


def test_a_model_saved_in_the_first_format_still_loads(category_model, tmp_path):
    """Models saved before the scorer was stored (format 1: the pipeline itself) keep
    working after an upgrade; their word features keep jieba's default cut."""
    import joblib

    path = tmp_path / "router-20260101T000000.000000Z.joblib"
    pipeline = pickle.loads(pickle.dumps(category_model.pipeline))
    for name, transformer in pipeline.named_steps["features"].transformer_list:
        if name == "words":
            transformer.analyzer.__setstate__({})  # what a format-1 pickle restores: hmm=True
    joblib.dump({"format": 1, "meta": dict(category_model.meta), "pipeline": pipeline}, path)
    loaded = LearnedModel.load(path)
    texts = [t for t, _ in taxonomy_examples()][:40]
    assert [loaded.predict(t) for t in texts] == loaded.predict_many(texts)
    scorer = loaded.scorer()
    assert scorer is not None and not scorer.shares_tokens
