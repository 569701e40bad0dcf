"""`minyi intent …`: evaluate the intent step on labelled CSVs, classify stdin lines."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.settings import Settings

LABEL_COLUMNS = ("intent", "label")


@dataclass
class Tally:
    """Gold intent → counts, and (gold, predicted) confusion, for one or more files."""
    total: Counter[str] = field(default_factory=Counter)
    correct: Counter[str] = field(default_factory=Counter)
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, gold: str, predicted: str) -> None:
        self.total[gold] += 1
        if gold == predicted:
            self.correct[gold] += 1
        else:
            self.confusion[(gold, predicted)] += 1

    def goals(self, fallback: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """((non-report rows not classified report, non-report rows),
        (report rows classified report, report rows))."""
        others = sum(n for gold, n in self.total.items() if gold != fallback)
        leaked = sum(n for (gold, predicted), n in self.confusion.items() if gold != fallback and predicted == fallback)
        return (others - leaked, others), (self.correct[fallback], self.total[fallback])


def read_intent_rows(path: Path, fallback: str) -> tuple[list[tuple[str, str]], str | None]:
    """(text, gold intent) rows and the label column used; a CSV without an intent column
    (the routing sets: every row a real report) counts every row as `fallback`."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "text" not in columns:
            raise ValueError(f"{path}: 需要 text 列（现有列：{', '.join(columns) or '无'}）")
        column = next((c for c in LABEL_COLUMNS if c in columns), None)
        rows = []
        for row in reader:
            row = {(k or "").strip(): (v or "") for k, v in row.items()}
            text = row.get("text", "").strip()
            gold = row.get(column, "").strip() if column else fallback
            if text and gold:
                rows.append((text, gold))
    return rows, column


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%（{part}/{whole}）" if whole else "—（无样本）"


def _name(classifier: Any, code: str) -> str:
    return f"{code} {classifier.label(code)}" if code in classifier.intents else f"{code}（未知意图）"


def cmd_intent_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli import _pad
    from nlp.intent import IntentClassifier

    classifier = IntentClassifier.from_config(settings.config_dir)
    fallback = classifier.settings.fallback
    overall, per_file = Tally(), []
    for name in args.data:
        try:
            rows, column = read_intent_rows(Path(name), fallback)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            print(f"无法读取评估数据：{exc}", file=sys.stderr)
            return 1
        if not rows:
            print(f"{name} 中没有可用的样本（需要 text 列，以及 intent 列）", file=sys.stderr)
            return 1
        how = f"按 {column} 列" if column else f"没有 intent 列，全部按「{classifier.label(fallback)}」计"
        print(f"评估 {name}：{len(rows)} 条样本，{how}", flush=True)
        tally = Tally()
        for text, gold in rows:
            predicted = classifier.classify(text).intent
            tally.add(gold, predicted)
            overall.add(gold, predicted)
        per_file.append((name, tally))
    _print_accuracy(classifier, overall, _pad)
    _print_confusion(classifier, overall, args.top)
    _print_goals(classifier, per_file, overall)
    return 0


def _print_accuracy(classifier: Any, tally: Tally, pad: Any) -> None:
    print()
    print(f"{pad('意图', 24)}{pad('样本数', 8, right=True)}{pad('正确', 8, right=True)}{pad('准确率', 10, right=True)}")
    order = [c for c in classifier.codes if c in tally.total] + sorted(set(tally.total) - set(classifier.codes))
    for code in order:
        n, ok = tally.total[code], tally.correct[code]
        print(f"{pad(_name(classifier, code), 24)}{n:>8}{ok:>8}{ok / n:>10.3f}")
    n, ok = sum(tally.total.values()), sum(tally.correct.values())
    print(f"{pad('合计', 24)}{n:>8}{ok:>8}{ok / n:>10.3f}")


def _print_confusion(classifier: Any, tally: Tally, top: int) -> None:
    errors = sorted(tally.confusion.items(), key=lambda item: (-item[1], item[0]))[:top]
    print(f"\n最主要的错误（标注 → 识别为，条数；前 {top} 项）：" if errors else "\n没有识别错误")
    for (gold, predicted), n in errors:
        print(f"  {_name(classifier, gold)} → {_name(classifier, predicted)}：{n}")


def _print_goals(classifier: Any, per_file: list[tuple[str, Tally]], overall: Tally) -> None:
    fallback = classifier.settings.fallback
    label = classifier.label(fallback)
    print("\n目标指标：")
    for name, tally in [*per_file, *([("全部", overall)] if len(per_file) > 1 else [])]:
        (kept_out, others), (kept, reports) = tally.goals(fallback)
        print(f"  {name}")
        if others:
            print(f"    非「{label}」消息没有成为工单：{_percent(kept_out, others)}")
        if reports:
            print(f"    「{label}」消息仍识别为「{label}」：{_percent(kept, reports)}")


def cmd_intent_classify(args: argparse.Namespace, settings: Settings) -> int:
    """One message per stdin line → one JSON object per line."""
    from nlp.intent import IntentClassifier

    classifier = IntentClassifier.from_config(settings.config_dir)
    for line in sys.stdin:
        text = line.strip()
        if not text:
            continue
        r = classifier.classify(text)
        print(json.dumps({
            "text": text, "intent": r.intent, "label": classifier.label(r.intent), "confidence": r.confidence,
            "ticket_number": r.ticket_number, "alternatives": list(r.alternatives), "substantive": r.substantive,
            "cues": list(r.cues),
        }, ensure_ascii=False), flush=True)
    return 0


def add_intent_commands(sub: Any) -> None:
    """`minyi intent evaluate|classify`."""
    intent = sub.add_parser("intent", help="意图识别：问候、致谢、帮助、人工、查询、催办、撤销、补充、无效内容、反映问题")
    intent_sub = intent.add_subparsers(dest="intent_command", required=True, metavar="子命令")
    evaluate = intent_sub.add_parser(
        "evaluate", help="评估意图识别：各意图准确率、主要错误、目标指标",
        description="读取 CSV（text,intent 两列；没有 intent 列的文件，如 routing_eval.csv，每行都按反映问题计），"
                    "输出每个意图的样本数、正确数、准确率，最主要的错误，以及两个目标指标：非反映问题的消息"
                    "没有成为工单的比例、反映问题的消息仍识别为反映问题的比例（每个文件分别给出）。")
    evaluate.add_argument("--data", required=True, action="append", metavar="CSV", help="评估数据 CSV，可重复")
    evaluate.add_argument("--top", type=int, default=10, help="列出最主要的 N 种错误（默认 10）")
    evaluate.set_defaults(func=cmd_intent_evaluate)
    classify = intent_sub.add_parser(
        "classify", help="从标准输入逐行读取消息，输出意图（JSON Lines）",
        description="每行一条消息，输出一行 JSON：intent、label、confidence、ticket_number（提到的工单编号）、"
                    "alternatives（接近的第二意图）、substantive（内容是否足以作为诉求）、cues（命中的线索）。")
    classify.set_defaults(func=cmd_intent_classify)
