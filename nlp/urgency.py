"""How urgent: danger words and patterns from config/urgency.toml, with negation.

"不是火灾" and "没有人受伤" must not raise a red warning: a danger word is cancelled
when a negation cue stands shortly before it in the same clause; past, drill,
hypothetical and question cues ("去年…", "演练时…", "真要…", "请问…") cancel it from
anywhere earlier in the clause. Phrases on the exclude list (跳楼价, 是不是 ...) are
blanked out before matching. Everything language-specific lives in the TOML file;
this module is only the mechanism.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable


RECENT_TEXTS = 32  # detect() answers kept: a message's text is checked more than once


@dataclass(frozen=True)
class UrgencyRule:
    level: str
    name: str
    words: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    cues: tuple[str, ...] = ()     # extra clause-wide cues that cancel this rule only
    unless: tuple[str, ...] = ()   # phrases anywhere in the message that cancel this rule
    demote: tuple[str, ...] = ()   # phrases anywhere in the message that lower this rule ...
    demote_level: str | None = None  # ... to this level


@dataclass(frozen=True)
class UrgencyResult:
    level: str
    reasons: tuple[str, ...]  # rule names that fired


def _exclusions(raw: Any) -> list[str]:
    phrases: list[str] = []
    for item in raw or []:
        if isinstance(item, str):
            phrases.append(item)
        elif isinstance(item, dict):
            for key in ("phrases", "words"):
                phrases.extend(item.get(key, []))
    return sorted(set(phrases), key=len, reverse=True)


def _within_clause(pattern: str, separators: str) -> str:
    """Rewrite every wildcard `.` (outside character classes and escapes) so that it
    cannot match a clause separator: a pattern's parts must stand in one clause."""
    not_sep = "[^" + "".join(re.escape(c) for c in separators) + "]"
    out, in_class, escaped = [], False, False
    for i, ch in enumerate(pattern):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_class:
            if ch == "]" and pattern[i - 1] != "[" and pattern[i - 2:i] != "[^":
                in_class = False
        elif ch == "[":
            in_class = True
        elif ch == ".":
            out.append(not_sep)
            continue
        out.append(ch)
    return "".join(out)


class UrgencyDetector:
    def __init__(self, order: list[str], rules: list[UrgencyRule], cues: list[str], window: int,
                 separators: str, exclude: list[str], clause_cues: list[str] | None = None,
                 clause_window: int = 16) -> None:
        self.order = order
        self.rules = rules
        self.cues = sorted(cues, key=len, reverse=True)
        self.clause_cues = tuple(sorted(clause_cues or [], key=len, reverse=True))
        self.window = window
        self.clause_window = max(window, clause_window)
        self.separators = set(separators)
        self.exclude = exclude
        self._recent: dict[str, UrgencyResult] = {}
        # Exclude phrases by their first two characters too (the list is long; most texts hit none).
        self._exclude_by_opening: dict[str, list[str]] = {}
        self._exclude_short = [p for p in exclude if len(p) < 2]
        self._exclude_rank = {phrase: rank for rank, phrase in enumerate(exclude)}  # longest first
        for phrase in exclude:
            if len(phrase) >= 2:
                self._exclude_by_opening.setdefault(phrase[:2], []).append(phrase)
        # Danger words by their first two characters: detect() then tests only the
        # words whose opening pair occurs in the text. Shorter words are always tested.
        self._by_opening: dict[str, list[tuple[str, int]]] = {}
        self._short: list[tuple[str, int]] = []
        for number, rule in enumerate(rules):
            for word in rule.words:
                if len(word) >= 2:
                    self._by_opening.setdefault(word[:2], []).append((word, number))
                else:
                    self._short.append((word, number))
        # Pattern rules by strings every match of their patterns contains (see
        # `_required_literals`), indexed like the words: detect() runs a rule's patterns
        # only when the text holds one of those strings (most texts hold none).
        self._hints_by_opening: dict[str, list[tuple[str, int]]] = {}
        self._hints_by_char: dict[str, set[int]] = {}
        self._patterns_always: set[int] = set()
        for number, rule in enumerate(rules):
            for pattern in rule.patterns:
                hints = _required_literals(pattern.pattern)
                if hints is None:
                    self._patterns_always.add(number)
                for hint in hints or ():
                    if len(hint) >= 2:
                        self._hints_by_opening.setdefault(hint[:2], []).append((hint, number))
                    else:
                        self._hints_by_char.setdefault(hint, set()).add(number)

    @classmethod
    def load(cls, path: Path) -> "UrgencyDetector":
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        negation = raw.get("negation", {})
        separators = negation.get("separators", "，。！？；,.!?;\n")
        rules = [
            UrgencyRule(r["level"], r.get("name", r["level"]), tuple(r.get("words", [])),
                        tuple(re.compile(_within_clause(p, separators)) for p in r.get("patterns", [])),
                        tuple(r.get("cues", [])), tuple(r.get("unless", [])),
                        tuple(r.get("demote", {}).get("phrases", [])), r.get("demote", {}).get("level"))
            for r in raw.get("rule", [])
        ]
        return cls(raw["levels"]["order"], rules, negation.get("cues", []), int(negation.get("window", 6)),
                   separators, _exclusions(raw.get("exclude")), negation.get("clause_cues", []),
                   int(negation.get("clause_window", 16)))

    @property
    def lowest(self) -> str:
        return self.order[0]

    def rank(self, level: str) -> int:
        return self.order.index(level) if level in self.order else 0

    def _negated(self, text: str, start: int, extra: tuple[str, ...] = ()) -> bool:
        begin = start
        while begin > 0 and start - begin < self.clause_window and text[begin - 1] not in self.separators:
            begin -= 1
        clause = text[begin:start]
        near = clause[-self.window:] if self.window > 0 else ""
        return (any(cue in near for cue in self.cues) or any(cue in clause for cue in self.clause_cues)
                or any(cue in clause for cue in extra))

    def _words_by_rule(self, text: str) -> dict[int, set[str]]:
        """Rule number → the rule's words that occur in the text."""
        found: dict[int, set[str]] = {}
        for word, number in self._short:
            if word in text:
                found.setdefault(number, set()).add(word)
        for start in range(len(text) - 1):
            for word, number in self._by_opening.get(text[start:start + 2], ()):
                if text.startswith(word, start):
                    found.setdefault(number, set()).add(word)
        return found

    def _hinted_rules(self, text: str) -> set[int]:
        """Pattern rules whose required strings occur in the text."""
        rules: set[int] = set()
        by_char = self._hints_by_char
        for char in set(text).intersection(by_char):
            rules |= by_char[char]
        by_opening = self._hints_by_opening
        for start in range(len(text) - 1):
            for hint, number in by_opening.get(text[start:start + 2], ()):
                if number not in rules and text.startswith(hint, start):
                    rules.add(number)
        return rules

    def _fires(self, text: str, rule: UrgencyRule, words: Iterable[str]) -> bool:
        """Whether one of `words` (the rule's words found in the text) or a pattern
        of the rule occurs in the text without a negation before it. For a pattern
        the look-back is made from its start and from its last group (the WHAT of
        WHO + WHAT), so "四五十个人还没堵路" is cancelled by the 没 before 堵."""
        for word in words:
            start = text.find(word)
            while start != -1:
                if not self._negated(text, start, rule.cues):
                    return True
                start = text.find(word, start + 1)
        for pattern in rule.patterns:
            for match in pattern.finditer(text):
                if self._negated(text, match.start(), rule.cues):
                    continue
                last = max((match.start(g) for g in range(1, pattern.groups + 1)), default=-1)
                if last <= match.start() or not self._negated(text, last, rule.cues):
                    return True
        return False

    def _blank_excluded(self, text: str) -> str:
        """Blank out exclude phrases, longest first (as if every phrase were replaced in turn)."""
        present = [p for p in self._exclude_short if p in text]
        by_opening = self._exclude_by_opening
        for start in range(len(text) - 1):
            for phrase in by_opening.get(text[start:start + 2], ()):
                if text.startswith(phrase, start):
                    present.append(phrase)
        if present:
            for phrase in sorted(set(present), key=self._exclude_rank.__getitem__):
                text = text.replace(phrase, " " * len(phrase))
        return text

    def detect(self, text: str) -> UrgencyResult:
        """The most urgent level whose rule fires, with the rules that fired. A message
        is checked for danger before anything else and again when it is routed: the
        last few answers are kept (results are immutable)."""
        known = self._recent.get(text)
        if known is None:
            known = self._recent[text] = self._detect(text)
            if len(self._recent) > RECENT_TEXTS:
                del self._recent[next(iter(self._recent))]
        return known

    def _detect(self, text: str) -> UrgencyResult:
        text = self._blank_excluded(text)
        level, reasons = self.lowest, []
        words = self._words_by_rule(text)
        candidates = set(words) | self._patterns_always | self._hinted_rules(text)
        for number in sorted(candidates):  # rule order, as reasons are listed
            rule = self.rules[number]
            if not self._fires(text, rule, words.get(number, ())):
                continue
            fired = rule.level
            if rule.unless and any(phrase in text for phrase in rule.unless):
                continue
            if rule.demote_level and any(phrase in text for phrase in rule.demote):
                fired = rule.demote_level
            reasons.append(rule.name)
            if self.rank(fired) > self.rank(level):
                level = fired
        return UrgencyResult(level, tuple(reasons))


def _required_literals(pattern: str) -> frozenset[str] | None:
    """Strings one of which every match of `pattern` contains, or None when that cannot
    be told simply (then the pattern is always tried). From the parsed pattern's
    top-level items that must match (not optional), each turned into the literal strings
    it can match when it is made only of literals, classes of literals, groups and
    alternations of those; runs of such items are joined. A repeat contributes the
    strings of one repetition, which join the run on their left and start a new run
    (a longer repeat separates what stood before it from what follows). The most
    selective set wins: longest shortest string, then fewest strings. Flags (?i) etc.
    make it give up."""
    try:
        from re import _parser  # type: ignore[attr-defined]

        parsed = _parser.parse(pattern)
        if parsed.state.flags & ~(_parser.SRE_FLAG_UNICODE):
            return None
        items = list(parsed)
    except Exception:
        return None
    best: frozenset[str] | None = None
    run: frozenset[str] | None = None
    for item in items:
        found = _item_literals(item, _parser)
        if found is None:
            run = None
            continue
        literals, exact = found
        joined = _joined(run, literals)
        for candidate in (literals, joined):
            if candidate and "" not in candidate and (best is None or _selectivity(candidate) > _selectivity(best)):
                best = candidate
        run = joined if exact else literals
    return best


def _selectivity(strings: frozenset[str]) -> tuple[int, int]:
    return min(len(s) for s in strings), -len(strings)


def _joined(left: frozenset[str] | None, right: frozenset[str], cap: int = 256) -> frozenset[str]:
    if left is None or len(left) * len(right) > cap:
        return right
    return frozenset(a + b for a in left for b in right)


def _sequence_literals(items: list[Any], parser: Any) -> frozenset[str] | None:
    """The exact strings a whole sequence can match, when it is all exact literals."""
    result = frozenset({""})
    for item in items:
        found = _item_literals(item, parser)
        if found is None or not found[1] or len(result) * len(found[0]) > 256:
            return None
        result = frozenset(a + b for a in result for b in found[0])
    return result


def _item_literals(item: Any, parser: Any) -> tuple[frozenset[str], bool] | None:
    """(strings, exact) for one parsed item: `exact` when the item matches exactly one of
    the strings; not exact for a repeat of at least one, whose every match contains one
    repetition's string. None if the item is not made of literals, or is optional."""
    op, value = item
    if op is parser.LITERAL:
        return frozenset(chr(value)), True
    if op is parser.IN:
        chars: set[str] = set()
        for kind, part in value:
            if kind is parser.LITERAL:
                chars.add(chr(part))
            elif kind is parser.RANGE and part[1] - part[0] < 128:
                chars.update(chr(c) for c in range(part[0], part[1] + 1))
            else:
                return None
        return frozenset(chars), True
    if op is parser.SUBPATTERN:
        if value[1] or value[2]:  # scoped flags: (?i:…)
            return None
        inner = _sequence_literals(list(value[-1]), parser)
        return (inner, True) if inner is not None else None
    if op is parser.BRANCH:
        branches = [_sequence_literals(list(branch), parser) for branch in value[1]]
        if any(b is None for b in branches):
            return None
        return frozenset().union(*branches), True  # type: ignore[arg-type]
    if op in (parser.MAX_REPEAT, parser.MIN_REPEAT) and value[0] >= 1:
        inner = _sequence_literals(list(value[2]), parser)
        if not inner or "" in inner:
            return None
        return inner, value[0] == value[1] == 1
    return None
