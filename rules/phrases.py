"""Phrase lists compiled once into one regex each, with the evidence of what matched where.

One case-insensitive alternation of every phrase, run over the whole text, tries each alternative at
every position. Most phrases cannot occur in a given text at all, so ``find`` first drops the phrases
whose required literal strings (worked out from the regex itself, ``re:`` entries included) are absent
from the text (case-folded, whitespace collapsed), and runs the alternation of the rest: an
alternative that cannot match anywhere never changes which alternative wins where, so the hits are
exactly those of the full regex.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from re import _constants as _sre  # type: ignore[attr-defined]
from re import _parser as _sre_parse  # type: ignore[attr-defined]
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

REGEX_PREFIX = "re:"
_NEGATION_WINDOW = 3  # words before a phrase that can negate it ("no data loss", "not down")
_WORD = re.compile(r"[\w']+")


@dataclass(frozen=True)
class PhraseHit:
    phrase: str  # the rules-file entry that matched
    text: str  # the words as the ticket wrote them
    start: int


class PhraseMatcher:
    def __init__(self, phrases: Sequence[str]):
        self.phrases = tuple(phrases)
        self._hash = hash(self.phrases)
        self._parts = [f"(?P<p{i}>{_pattern(p)})" for i, p in enumerate(self.phrases)]
        self._regex = re.compile("|".join(self._parts), re.IGNORECASE) if self._parts else None
        # Per phrase, the clauses every match meets (see "the prefilter" below), longest strings first;
        # None where nothing is known. None for the whole list when
        # a regex refers to a group by number or name: alternatives are then not independent, and every
        # find runs the full regex.
        self._needs = _requirements([_pattern(p) for p in self.phrases])
        self._subsets: dict[tuple[int, ...], re.Pattern[str]] = {}

    def __repr__(self) -> str:
        return f"PhraseMatcher({list(self.phrases)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PhraseMatcher) and other.phrases == self.phrases

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[PhraseMatcher], tuple[tuple[str, ...]]]:
        # Rebuilt from the phrases: string hashes differ between processes, and the caches stay behind.
        return PhraseMatcher, (self.phrases,)

    def find(self, text: str, negations: Iterable[str] = ()) -> list[PhraseHit]:
        """Every non-negated hit in ``text``, in order; one hit per distinct phrase."""
        if not self._regex or not text:
            return []
        regex = self._regex_for(text)
        if regex is None:
            return []
        negation_words = {n.lower() for n in negations}
        hits: dict[str, PhraseHit] = {}
        for m in regex.finditer(text):
            phrase = self.phrases[int(m.lastgroup[1:])]
            if phrase in hits or _negated(text, m.start(), negation_words):
                continue
            hits[phrase] = PhraseHit(phrase, m.group(0), m.start())
        return list(hits.values())

    def matches(self, text: str, negations: Iterable[str] = ()) -> bool:
        return bool(self.find(text, negations))

    def _regex_for(self, text: str) -> re.Pattern[str] | None:
        """The alternation of the phrases that can occur in ``text`` (the group names keep each
        phrase's index), or None when none can."""
        if self._needs is None:
            return self._regex
        known = _known(text)
        try:
            return known.regexes[self]
        except KeyError:
            pass
        holds = known.holds
        active = []
        for i, needs in enumerate(self._needs):
            if needs is not None:
                for clause in needs:
                    held = holds.get(clause)
                    if held is None:
                        held = known.check(clause)
                    if not held:
                        break
                else:
                    active.append(i)
            else:
                active.append(i)
        regex = known.regexes[self] = self._alternation(tuple(active))
        return regex

    def _alternation(self, active: tuple[int, ...]) -> re.Pattern[str] | None:
        if not active:
            return None
        if len(active) == len(self.phrases):
            return self._regex
        regex = self._subsets.get(active)
        if regex is None:
            if len(self._subsets) >= _MAX_SUBSETS:
                self._subsets.clear()
            regex = self._subsets[active] = re.compile(
                "|".join(self._parts[i] for i in active), re.IGNORECASE
            )
        return regex


# --- the prefilter ------------------------------------------------------------------------------------
#
# What a phrase's regex needs is read off its parsed form (re's own parser): a run of consecutive
# literals (ASCII, or a closing quote), apostrophe classes (['’]) and whitespace (a space, \s+) is text
# every match contains. It is looked for in the text normalised: case-folded, "’" as "'", and each run
# of whitespace one space, so "production is down" needs exactly that, whatever the spacing and case.
#
# A clause is a string every match contains, or a frozenset of strings one of which it contains; a
# phrase's needs are clauses all of which every match meets.
_Clause = str | frozenset[str]
_MAX_SUBSETS = 128  # compiled sub-alternations kept per phrase list
_MAX_CLAUSES = 4  # kept per phrase: the longest strings, the likeliest to be missing
# Folding that keeps every character re.IGNORECASE equates with a character of a literal equal to that
# character folded (tests check this over every code point): str.lower() alone turns "İ" into two
# characters and keeps "ı" and "ſ", which re matches as "i", "i" and "s".
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u2019": "'"})
_APOSTROPHES = frozenset({ord("'"), ord("\u2019")})
_SPACES = re.compile(" {2,}")


def _fold(text: str) -> str:
    return text.translate(_FOLD).lower()


def _normalise(text: str) -> str:
    # Padded: a run may need the whitespace at either end of the text.
    return f" {' '.join(_fold(text).split())} "


class _Known:
    """What the prefilter knows of one text: its normal form, which clauses hold in it, and the
    alternation each phrase list needs for it."""

    __slots__ = ("holds", "regexes", "text")

    def __init__(self, text: str):
        self.text = _normalise(text)
        self.holds: dict[_Clause, bool] = {}
        self.regexes: dict[PhraseMatcher, re.Pattern[str] | None] = {}

    def check(self, clause: _Clause) -> bool:
        text = self.text
        held = self.holds[clause] = clause in text if type(clause) is str else any(s in text for s in clause)
        return held


@lru_cache(maxsize=16)
def _known(text: str) -> _Known:
    # One evaluation asks about the same two or three texts some twenty times.
    return _Known(text)


def _requirements(patterns: Sequence[str]) -> list[tuple[_Clause, ...] | None] | None:
    needs: list[tuple[_Clause, ...] | None] = []
    for pattern in patterns:
        try:
            parsed = _sre_parse.parse(pattern, re.IGNORECASE)
        except re.error:
            # Valid only within the alternation: it refers to another phrase's group.
            return None
        if _refers_to_groups(parsed):
            return None
        clauses = sorted(set(_clauses(parsed)), key=_longest_first)[:_MAX_CLAUSES]
        needs.append(tuple(next(iter(c)) if len(c) == 1 else c for c in clauses) or None)
    return needs


def _longest_first(clause: frozenset[str]) -> tuple[int, list[str]]:
    return -min(map(len, clause)), sorted(clause)


def _refers_to_groups(node: Any) -> bool:
    if isinstance(node, _sre_parse.SubPattern):
        return any(op in _GROUP_REFS or _refers_to_groups(av) for op, av in node)
    if isinstance(node, tuple | list):
        return any(_refers_to_groups(n) for n in node)
    return False


_GROUP_REFS = (_sre.GROUPREF, _sre.GROUPREF_EXISTS)
_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT)


def _clauses(items: Any) -> list[frozenset[str]]:
    """Clauses every match of the parsed pattern ``items`` meets, in normal form."""
    clauses: list[frozenset[str]] = []
    run: list[str] = []  # normal-form characters, " " for whitespace

    def end_run() -> None:
        # Whitespace next to whitespace is one space in the normal form.
        text = _SPACES.sub(" ", "".join(run))
        if text.strip():
            clauses.append(frozenset({text}))
        run.clear()

    for op, av in items:
        char = _run_char(op, av)
        if char is not None:
            run.append(char)
            continue
        end_run()
        if op is _sre.SUBPATTERN:
            clauses.extend(_clauses(av[-1]))
        elif op is _sre.ATOMIC_GROUP:
            clauses.extend(_clauses(av))
        elif op in _REPEATS:
            low, _high, item = av
            if low >= 1:
                clauses.extend(_clauses(item))
        elif op is _sre.BRANCH:
            # A match takes one branch, so it meets one clause of each branch: their union is a clause.
            per_branch = [_clauses(branch) for branch in av[1]]
            if all(per_branch):
                clauses.append(frozenset().union(*(min(b, key=_longest_first) for b in per_branch)))
        # Anything else (other sets and classes, anchors, look-arounds) needs no particular text.
    end_run()
    return clauses


def _run_char(op: Any, av: Any) -> str | None:
    """What the item adds to a run in normal form: a character (" " for one or more whitespace
    characters), or None where the run ends."""
    if op is _sre.LITERAL and (av < 128 or av in _APOSTROPHES):
        char = chr(av)
        return " " if char.isspace() else _fold(char)
    if op is _sre.IN:
        if av and all(o is _sre.LITERAL and a in _APOSTROPHES for o, a in av):
            return "'"
        if len(av) == 1 and av[0][0] is _sre.CATEGORY and av[0][1] is _sre.CATEGORY_SPACE:
            return " "
        return None
    if op in _REPEATS:
        low, _high, item = av
        # One or more whitespace characters, only those: one space in the normal form.
        if low >= 1 and len(item) == 1 and _run_char(*item[0]) == " ":
            return " "
    return None


def _pattern(phrase: str) -> str:
    if phrase.startswith(REGEX_PREFIX):
        return phrase[len(REGEX_PREFIX) :]
    words = [re.escape(w).replace("'", "['’]") for w in phrase.split()]
    body = r"\s+".join(words)
    # Word boundaries only where the phrase starts or ends with a word character: "CVE-" must still
    # match "CVE-2024-1234".
    lead = r"\b" if re.match(r"\w", phrase) else ""
    tail = r"\b" if re.search(r"\w$", phrase) else ""
    return f"{lead}{body}{tail}"


def _negated(text: str, start: int, negations: set[str]) -> bool:
    if not negations:
        return False
    # Only look back within the same sentence.
    window_start = max(text.rfind(c, 0, start) for c in ".!?\n") + 1
    before = _WORD.findall(text[window_start:start])[-_NEGATION_WINDOW:]
    return any(w.lower() in negations for w in before)


def _build(value: Any) -> PhraseMatcher:
    if isinstance(value, PhraseMatcher):
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("must be a list of non-empty phrases")
    for i, v in enumerate(value):
        if v.startswith(REGEX_PREFIX):
            try:
                re.compile(v[len(REGEX_PREFIX) :])
            except re.error as exc:
                # "entry N" lets the loader point at the entry's own line.
                raise ValueError(f"entry {i}: bad regex {v!r}: {exc}") from exc
    return PhraseMatcher(value)


PhraseSet = Annotated[
    PhraseMatcher,
    PlainValidator(_build),
    PlainSerializer(lambda m: list(m.phrases), return_type=list),
]
