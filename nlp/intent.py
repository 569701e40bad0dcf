"""The intent step: what a resident's text wants, decided before it becomes report text.

Greetings, thanks, 转人工, progress questions, 催办, 取消, 补充 and gibberish are told
apart from reports by phrases, cues and patterns in config/intents.toml; the taxonomy's
keywords (the router's tagger) are evidence that a text names a problem. Nothing here
knows an intent by name: config says which intent is the fallback (report text), which
one takes text without substance, and which one a bare ticket number asks for.

Cheap by design: substring cues through a first-character index, a few regexes, and
the tagger's phrase scan; jieba runs only when a whole-word cue or a single-character
taxonomy keyword could match (callers that cut the text already pass their tokens).
"""

from __future__ import annotations

import math
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from nlp.tagger import KeywordTagger, new_tokenizer
from nlp.taxonomy import Taxonomy


@dataclass(frozen=True)
class IntentResult:
    intent: str  # an intent code of config/intents.toml
    confidence: float  # 0..1
    ticket_number: str | None = None  # "YYYYMMDD-NNNN", normalised, when the text names one
    alternatives: tuple[str, ...] = ()  # a close runner-up: ask the resident which one
    substantive: bool = False  # enough content to be report text
    cues: tuple[str, ...] = ()  # what matched for the chosen intent (explanation)
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Intent:
    code: str
    label: str
    frame: bool
    exact: tuple[str, ...]
    prefix: dict[str, float]
    contains: dict[str, float]
    words: dict[str, float]
    regex: tuple[tuple[re.Pattern[str], float], ...]
    negative: tuple[str, ...]
    max_chars: int | None
    ticket_weight: float
    problem_damping: float


@dataclass(frozen=True)
class Settings:
    fallback: str
    insubstantial: str
    ticket_only: str
    unclear_question: str
    question_pattern: re.Pattern[str]
    threshold: float
    close_margin: float
    exact_weight: float
    frame_weight: float
    problem_weight: float
    length_weight: float
    taxonomy_scale: float
    default_confidence: float
    ticket_pattern: re.Pattern[str]
    dashes: str
    particles: str
    fillers: tuple[str, ...]


@dataclass(frozen=True)
class Substance:
    min_chars: int
    min_distinct: int
    long_chars: int
    problem_min: float
    topic_chars: int
    topic_weight: float
    topics: tuple[str, ...]
    chatter: tuple[str, ...]
    problem: dict[str, float]
    resolved: tuple[str, ...]
    not_problems: tuple[str, ...]


@dataclass
class _Message:
    """One text in the forms the rules read."""
    original: str
    text: str  # normalised, ticket number removed
    compact: str  # the same without spaces
    plain: str  # compact without punctuation (symbols such as emoji kept)
    core_text: str  # normalised, ticket removed, courtesies and fillers stripped, punctuation kept
    core: str  # core_text in plain form
    frames: list[str]  # courtesy intents stripped off, in order
    ticket: str | None
    tokens: Callable[[], Sequence[str]]


# ---------------------------------------------------------------- text forms

_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _cjk_count(text: str) -> int:
    return len(_CJK.findall(text))


class _Drop(dict[int, None]):
    """A str.translate table that deletes the characters whose Unicode category starts
    with one of `drop`, worked out once per character (translate runs in C otherwise)."""

    def __init__(self, drop: str) -> None:
        super().__init__()
        self.drop = drop

    def __missing__(self, code: int) -> int | None:
        value = None if unicodedata.category(chr(code))[0] in self.drop else code
        self[code] = value  # type: ignore[assignment]
        return value


_PLAIN = _Drop("PZCM")
_LETTERS = _Drop("PZCSM")


def plain(text: str) -> str:
    """Letters, digits and symbols only: punctuation, spaces and control characters dropped."""
    return text.translate(_PLAIN)


def _letters(text: str) -> str:
    """Letters and digits only."""
    return text.translate(_LETTERS)


def noisy_or(weights: Iterable[float]) -> float:
    rest = 1.0
    for weight in weights:
        rest *= 1.0 - weight
    return 1.0 - rest


class _CueIndex:
    """Substring cues of many intents, found in one pass over the text: cues by their
    first character, so each position tests only the few cues that could start there."""

    def __init__(self, cues: Iterable[tuple[str, str, float]]) -> None:  # (phrase, owner, weight)
        self._by_first: dict[str, list[tuple[str, str, float]]] = {}
        for phrase, owner, weight in cues:
            if phrase:
                self._by_first.setdefault(phrase[0], []).append((phrase, owner, weight))

    def find(self, text: str) -> dict[str, list[tuple[str, float]]]:
        """owner → [(phrase, weight)], a phrase inside a longer match of the same owner left out."""
        spans: dict[str, list[tuple[int, int, str, float]]] = {}
        for start, ch in enumerate(text):
            for phrase, owner, weight in self._by_first.get(ch, ()):
                if text.startswith(phrase, start):
                    spans.setdefault(owner, []).append((start, start + len(phrase), phrase, weight))
        found: dict[str, list[tuple[str, float]]] = {}
        for owner, matches in spans.items():
            found[owner] = [(p, w) for s, e, p, w in matches
                            if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _, _ in matches)]
        return found


# ---------------------------------------------------------------- config

def _weights(table: Any, where: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (table or {}).items():
        weight = float(value)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"{where}: weight of {key!r} must be within 0..1")
        out[str(key)] = weight
    return out


def _plain_weights(table: Any, where: str) -> dict[str, float]:
    """Cue phrases in the form they are compared in (normalised plain text)."""
    return {plain(_normalise(k)): w for k, w in _weights(table, where).items() if plain(_normalise(k))}


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _load_intent(raw: dict[str, Any]) -> Intent:
    code = str(raw["code"])
    where = f"intent {code}"
    regex: list[tuple[re.Pattern[str], float]] = []
    for pattern, weight in _weights(raw.get("regex"), where).items():
        try:
            regex.append((re.compile(pattern), weight))
        except re.error as exc:
            raise ValueError(f"{where}: bad regex {pattern!r}: {exc}") from exc
    return Intent(
        code=code,
        label=str(raw.get("label", code)),
        frame=bool(raw.get("frame", False)),
        exact=tuple(_normalise(p) for p in raw.get("exact", [])),
        prefix=_plain_weights(raw.get("prefix"), where),
        contains=_plain_weights(raw.get("contains"), where),
        words=_weights(raw.get("words"), where),
        regex=tuple(regex),
        negative=tuple(plain(_normalise(p)) for p in raw.get("negative", [])),
        max_chars=int(raw["max_chars"]) if "max_chars" in raw else None,
        ticket_weight=float(raw.get("ticket_weight", 0.0)),
        problem_damping=float(raw.get("problem_damping", 0.0)),
    )


def _load_settings(raw: dict[str, Any], codes: set[str]) -> Settings:
    for key in ("fallback", "insubstantial", "ticket_only", "unclear_question"):
        if raw.get(key) not in codes:
            raise ValueError(f"[classifier] {key} = {raw.get(key)!r} is not an intent code")
    return Settings(
        fallback=raw["fallback"], insubstantial=raw["insubstantial"], ticket_only=raw["ticket_only"],
        unclear_question=raw["unclear_question"], question_pattern=re.compile(raw["question_pattern"]),
        threshold=float(raw["threshold"]), close_margin=float(raw["close_margin"]),
        exact_weight=float(raw["exact_weight"]), frame_weight=float(raw["frame_weight"]),
        problem_weight=float(raw["problem_weight"]), length_weight=float(raw["length_weight"]),
        taxonomy_scale=float(raw["taxonomy_scale"]), default_confidence=float(raw["default_confidence"]),
        ticket_pattern=re.compile(raw["ticket_pattern"]), dashes=str(raw.get("dashes", "")),
        particles=str(raw.get("particles", "")),
        fillers=tuple(_normalise(p) for p in raw.get("fillers", [])),
    )


def _load_substance(raw: dict[str, Any]) -> Substance:
    return Substance(
        min_chars=int(raw["min_chars"]), min_distinct=int(raw["min_distinct"]), long_chars=int(raw["long_chars"]),
        problem_min=float(raw["problem_min"]), topic_chars=int(raw["topic_chars"]), topic_weight=float(raw["topic_weight"]),
        topics=tuple(plain(_normalise(t)) for t in raw.get("topics", [])),
        chatter=tuple(sorted((plain(_normalise(c)) for c in raw.get("chatter", [])), key=len, reverse=True)),
        problem=_plain_weights(raw.get("problem"), "[substance.problem]"),
        resolved=tuple(plain(_normalise(p)) for p in raw.get("resolved", [])),
        not_problems=tuple(_normalise(p) for p in raw.get("not_problems", [])),
    )


# ---------------------------------------------------------------- the classifier

class IntentClassifier:
    def __init__(self, intents: Sequence[Intent], settings: Settings, substance: Substance,
                 tagger: KeywordTagger) -> None:
        self.intents = {intent.code: intent for intent in intents}
        self.settings = settings
        self.substance = substance
        self.tagger = tagger
        self._dash_table = str.maketrans({ch: "-" for ch in settings.dashes})
        self._exact: dict[str, list[str]] = {}
        for intent in intents:
            for phrase in intent.exact:
                keys = {phrase.replace(" ", "")}
                if _letters(phrase) == phrase.replace(" ", ""):  # no punctuation or symbols: looser forms too
                    keys.add(self._exact_key(phrase))
                for key in keys - {""}:
                    self._exact.setdefault(key, []).append(intent.code)
        self._cues = _CueIndex((p, i.code, w) for i in intents for p, w in i.contains.items())
        self._problems = _CueIndex((p, "", w) for p, w in substance.problem.items())
        # Courtesies come off both ends of a text, fillers (intent "") off its start; by the
        # character they start (end) with, longest first.
        courtesies = [(p, i.code) for i in intents if i.frame for p in i.exact if len(plain(p)) >= 2]
        fillers = [(p, "") for p in settings.fillers]
        self._heads = _by_edge(courtesies + fillers, 0)
        self._tails = _by_edge(courtesies, -1)
        self._single = {w for c in tagger.taxonomy.categories.values() for w in c.keywords if len(w) == 1}

    @classmethod
    def from_config(cls, config_dir: Path, tagger: KeywordTagger | None = None) -> "IntentClassifier":
        """Built from config/intents.toml; pass the router's tagger to share its taxonomy
        and jieba dictionary (otherwise the same cached dictionary is built here)."""
        with open(config_dir / "intents.toml", "rb") as fh:
            raw = tomllib.load(fh)
        intents = [_load_intent(item) for item in raw.get("intent", [])]
        codes = [intent.code for intent in intents]
        if len(set(codes)) != len(codes):
            raise ValueError("config/intents.toml: duplicate intent codes")
        if tagger is None:
            taxonomy = Taxonomy.load(config_dir / "taxonomy.toml")
            tagger = KeywordTagger(taxonomy, new_tokenizer(config_dir / "jieba_userdict.txt"))
        return cls(intents, _load_settings(raw["classifier"], set(codes)), _load_substance(raw["substance"]), tagger)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self.intents)

    def label(self, code: str) -> str:
        """The Chinese label of an intent (for the numbered question on alternatives)."""
        return self.intents[code].label

    # ---------------------------------------------------------------- public

    def ticket_number(self, text: str) -> str | None:
        """The first ticket number the text names, normalised (full-width digits and dashes)."""
        found = self._find_ticket(_normalise(text))
        return found[0] if found else None

    def classify(self, text: str, tokens: Sequence[str] | None = None) -> IntentResult:
        """`tokens`: the text's jieba tokens (the router's `tagger.tokens(text)`) when the
        caller has cut it already; otherwise jieba runs only if a rule needs whole words."""
        msg = self._prepare(text, tokens)
        exact = self._exact_match(msg)
        if exact is not None:
            return exact
        scores, cues = self._cue_scores(msg)
        self._core_exact(msg, scores, cues)
        substantive = self._weigh_problem(msg, scores, cues)
        self._courtesies(msg, scores, cues, substantive)
        return self._decide(msg, scores, cues, substantive)

    def _weigh_problem(self, msg: _Message, scores: dict[str, float], cues: dict[str, list[str]]) -> bool:
        """Problem evidence and length make the fallback's score and damp the intents that
        a named problem argues against; returns whether the text is substantive."""
        problem, problem_cues = self._problem(msg)
        for code in scores:
            scores[code] *= 1.0 - self.intents[code].problem_damping * problem
        fallback = self.settings.fallback
        rest = self._uncued(msg.core, cues, fallback)
        topics = [word for word in self.substance.topics if word in rest]
        topic = self.substance.topic_weight if topics else 0.0
        scores[fallback] = noisy_or((scores.get(fallback, 0.0), problem * self.settings.problem_weight, topic,
                                     self._length(msg.core)))
        cues.setdefault(fallback, []).extend(problem_cues + topics)
        return self._substantive(rest, problem, bool(topics))

    def _courtesies(self, msg: _Message, scores: dict[str, float], cues: dict[str, list[str]],
                    substantive: bool) -> None:
        """Courtesies stripped off a text with nothing else in it (「你好，谢谢」) score frame_weight."""
        if not msg.frames or substantive or self._other_cue(scores):
            return
        for code in dict.fromkeys(msg.frames):
            if not self._negated(self.intents[code], msg):
                scores[code] = noisy_or((scores.get(code, 0.0), self.settings.frame_weight))
                cues.setdefault(code, []).append("(礼貌用语)")

    def _core_exact(self, msg: _Message, scores: dict[str, float], cues: dict[str, list[str]]) -> None:
        """What is left after courtesies being an exact phrase (「不用了，谢谢」, 「你好，转人工」)
        is a cue of that phrase's weight."""
        if not msg.frames:
            return
        for code in self._exact.get(self._exact_key(msg.core), ()):
            scores[code] = noisy_or((scores.get(code, 0.0), self.settings.exact_weight))
            cues.setdefault(code, []).append(msg.core)

    def _uncued(self, core: str, cues: dict[str, list[str]], fallback: str) -> str:
        """The core without the phrases that cued another intent: 「帮我查一下」 has no
        substance once 「查一下」 is read as a progress question."""
        covered = [False] * len(core)
        for code, phrases in cues.items():
            intent = self.intents[code]
            literal = [p for p in phrases if p in intent.contains or p in intent.prefix or p in intent.words
                       or p == core]  # a pattern's match may span content (「但是路灯还是没」)
            for phrase in literal if code != fallback else ():
                start = core.find(phrase)
                while phrase and start >= 0:
                    covered[start:start + len(phrase)] = [True] * len(phrase)
                    start = core.find(phrase, start + 1)
        return "".join(ch for ch, hidden in zip(core, covered) if not hidden)

    def _other_cue(self, scores: dict[str, float]) -> bool:
        """Whether an intent other than a courtesy reached the threshold (「客服在吗」)."""
        return any(s >= self.settings.threshold for c, s in scores.items() if not self.intents[c].frame)

    # ---------------------------------------------------------------- steps

    def _prepare(self, text: str, tokens: Sequence[str] | None) -> _Message:
        norm = _normalise(text)
        found = self._find_ticket(norm)
        ticket = None
        if found:
            ticket, start, end = found
            norm = (norm[:start] + " " + norm[end:]).strip()
        core_text, frames = self._strip_courtesies(norm)
        cut: list[Sequence[str]] = [tokens] if tokens is not None else []

        def lazy_tokens() -> Sequence[str]:
            if not cut:
                cut.append(self.tagger.tokens(text))
            return cut[0]

        return _Message(text, norm, norm.replace(" ", ""), plain(norm), core_text, plain(core_text), frames, ticket,
                        lazy_tokens)

    def _find_ticket(self, norm: str) -> tuple[str, int, int] | None:
        match = self.settings.ticket_pattern.search(norm.translate(self._dash_table))
        if match is None:
            return None
        return f"{match.group(1)}-{match.group(2)}", match.start(), match.end()

    def _exact_key(self, text: str) -> str:
        key = _letters(text)
        while len(key) > 1 and key[-1] in self.settings.particles:
            key = key[:-1]
        return key

    def _exact_match(self, msg: _Message) -> IntentResult | None:
        settings = self.settings
        if not msg.plain and msg.ticket:
            return self._result(settings.ticket_only, settings.exact_weight, msg, (), False, ("(工单编号)",), {})
        for key in dict.fromkeys((msg.compact, _unit(msg.compact), self._exact_key(msg.plain),
                                  _unit(self._exact_key(msg.plain)))):
            codes = self._exact.get(key)
            if codes:
                code = codes[0]
                alternatives = tuple(c for c in dict.fromkeys(codes[1:]) if c != code)[:1]
                return self._result(code, settings.exact_weight, msg, alternatives, False, (key,),
                                    {c: settings.exact_weight for c in codes})
        return None

    def _strip_courtesies(self, norm: str) -> tuple[str, list[str]]:
        """Greetings, thanks and goodbyes (and openers such as 请问) off both ends of the
        text; returns the rest, punctuation kept, and the courtesy intents in text order."""
        text, head, tail = norm, [], []
        while True:
            text = _trim(text)
            stripped = self._strip_head(text)
            if stripped is not None:
                text = stripped[0]
                head.append(stripped[1])
                continue
            stripped = self._strip_tail(text)
            if stripped is None:
                return text, [code for code in head + tail if code]
            text = stripped[0]
            tail.insert(0, stripped[1])

    def _strip_head(self, text: str) -> tuple[str, str] | None:
        for phrase, code in self._heads.get(text[:1], ()):
            if text.startswith(phrase) and not _runs_on(phrase[-1], text[len(phrase):len(phrase) + 1]):
                return text[len(phrase):], code
        return None

    def _strip_tail(self, text: str) -> tuple[str, str] | None:
        for phrase, code in self._tails.get(text[-1:], ()):
            if text.endswith(phrase) and not _runs_on(phrase[0], text[-len(phrase) - 1:-len(phrase)]):
                return text[:-len(phrase)], code
        return None

    def _cue_scores(self, msg: _Message) -> tuple[dict[str, float], dict[str, list[str]]]:
        found = self._cues.find(msg.plain)
        scores: dict[str, float] = {}
        cues: dict[str, list[str]] = {}
        size = len(msg.plain)
        for intent in self.intents.values():
            if intent.max_chars and intent.max_chars < self.settings.threshold * size:
                continue  # too long for this intent to reach the threshold whatever matches
            matched = list(found.get(intent.code, ()))
            matched += [(p, w) for p, w in intent.prefix.items() if msg.core.startswith(p)]
            matched += [(w_, w) for w_, w in intent.words.items() if w_ in msg.plain and w_ in msg.tokens()]
            matched += self._regex_hits(intent, msg)
            if msg.ticket and intent.ticket_weight:
                matched.append(("(工单编号)", intent.ticket_weight))
            if not matched or self._negated(intent, msg):
                continue
            score = noisy_or(w for _, w in matched)
            if intent.max_chars and size > intent.max_chars:
                score *= intent.max_chars / size
            scores[intent.code] = score
            cues[intent.code] = [p for p, _ in matched]
        return scores, cues

    def _regex_hits(self, intent: Intent, msg: _Message) -> list[tuple[str, float]]:
        """(matched text, weight) of the intent's patterns, searched after courtesies and
        fillers, or in the whole text (a courtesy may be part of the pattern)."""
        hits = []
        for pattern, weight in intent.regex:
            match = pattern.search(msg.core_text) or (pattern.search(msg.text) if msg.frames else None)
            if match:
                hits.append((plain(match.group(0)) or match.group(0), weight))
        return hits

    def _negated(self, intent: Intent, msg: _Message) -> bool:
        return any(word in msg.plain for word in intent.negative)

    def _problem(self, msg: _Message) -> tuple[float, list[str]]:
        """0..1: how clearly the text names a problem (taxonomy keywords, general complaint
        cues), and those words; nothing when it says the problem is over (修好了)."""
        if not msg.core or any(word in msg.plain for word in self.substance.resolved):
            return 0.0, []
        tokens = msg.tokens() if any(ch in msg.core for ch in self._single) else []
        text = msg.core_text
        for word in self.substance.not_problems:
            if word in text:
                text = text.replace(word, "，")
        tagging = self.tagger.tag(text, list(tokens))
        best = max(tagging.scores.values(), default=0.0)
        strength = 1.0 - math.exp(-best / self.settings.taxonomy_scale) if best > 0 else 0.0
        general = self._problems.find(msg.core).get("", [])
        words = list(tagging.keywords if best > 0 else ()) + [p for p, _ in general]
        return noisy_or([strength, *(w for _, w in general)]), words

    def _length(self, core: str) -> float:
        cjk = _cjk_count(core)
        return self.settings.length_weight * min(1.0, cjk / self.substance.long_chars)

    def _substantive(self, core: str, problem: float, topic: bool) -> bool:
        """Enough content for report text: CJK characters beyond chatter (哈哈, 嗯), not one
        character repeated; a text naming a problem (「漏水」) or a topic (「小区里有蛇」) needs fewer."""
        rest = core
        for fragment in self.substance.chatter:
            if fragment in rest:
                rest = rest.replace(fragment, "")
        cjk = _CJK.findall(rest)
        substance = self.substance
        needed = 2 if problem >= substance.problem_min else substance.topic_chars if topic else substance.min_chars
        return len(cjk) >= needed and len(set(cjk)) >= min(substance.min_distinct, needed)

    def _decide(self, msg: _Message, scores: dict[str, float], cues: dict[str, list[str]],
                substantive: bool) -> IntentResult:
        settings = self.settings
        ranked = sorted(((s, c) for c, s in scores.items() if s > 0), key=lambda item: -item[0])
        best_score, best = ranked[0] if ranked else (0.0, "")
        rounded = {c: round(s, 3) for c, s in scores.items() if s > 0}
        if best_score < settings.threshold - 1e-9:
            code = settings.fallback if substantive else self._unclear(msg)
            confidence = min(settings.default_confidence, 1.0 - best_score)
            return self._result(code, confidence, msg, (), substantive, tuple(cues.get(code, ())), rounded)
        alternatives = tuple(  # a courtesy is never worth a question
            c for s, c in ranked[1:]
            if s >= settings.threshold - 1e-9 and best_score - s <= settings.close_margin + 1e-9 and not self.intents[c].frame)[:1]
        return self._result(best, best_score, msg, alternatives, substantive, tuple(cues.get(best, ())), rounded)

    def _unclear(self, msg: _Message) -> str:
        """The intent of an insubstantial text no cue explains: a question gets help."""
        asks = _letters(msg.core) and self.settings.question_pattern.search(msg.core_text)
        return self.settings.unclear_question if asks else self.settings.insubstantial

    def _result(self, code: str, confidence: float, msg: _Message, alternatives: tuple[str, ...],
                substantive: bool, cues: tuple[str, ...], scores: dict[str, float]) -> IntentResult:
        return IntentResult(intent=code, confidence=round(min(max(confidence, 0.0), 1.0), 3),
                            ticket_number=msg.ticket, alternatives=alternatives, substantive=substantive,
                            cues=cues, scores=scores)


def _trim(text: str) -> str:
    """Spaces and punctuation off both ends (symbols such as emoji stay)."""
    start, end = 0, len(text)
    while start < end and unicodedata.category(text[start])[0] in "PZC":
        start += 1
    while end > start and unicodedata.category(text[end - 1])[0] in "PZC":
        end -= 1
    return text[start:end]


def _unit(text: str) -> str:
    """The repeated unit of a text that is one phrase said several times (「谢谢谢谢」→「谢谢」)."""
    size = len(text)
    for period in range(1, size // 2 + 1):
        if size % period == 0 and text[:period] * (size // period) == text:
            return text[:period]
    return text


def _runs_on(edge: str, neighbour: str) -> bool:
    """An ASCII word ("hi") stripped off a text must not be part of a longer word ("high"):
    `edge` is the phrase's letter next to `neighbour`, the text's next character."""
    return edge.isascii() and edge.isalpha() and neighbour.isascii() and neighbour.isalpha()


def _by_edge(phrases: list[tuple[str, str]], edge: int) -> dict[str, list[tuple[str, str]]]:
    index: dict[str, list[tuple[str, str]]] = {}
    for phrase, code in sorted(phrases, key=lambda item: len(item[0]), reverse=True):
        index.setdefault(phrase[edge], []).append((phrase, code))
    return index
