"""Phrase lists compiled once into one regex each, with the evidence of what matched where."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
        parts = [f"(?P<p{i}>{_pattern(p)})" for i, p in enumerate(self.phrases)]
        self._regex = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    def __repr__(self) -> str:
        return f"PhraseMatcher({list(self.phrases)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PhraseMatcher) and other.phrases == self.phrases

    def __hash__(self) -> int:
        return hash(self.phrases)

    def find(self, text: str, negations: Iterable[str] = ()) -> list[PhraseHit]:
        """Every non-negated hit in ``text``, in order; one hit per distinct phrase."""
        if not self._regex or not text:
            return []
        negation_words = {n.lower() for n in negations}
        hits: dict[str, PhraseHit] = {}
        for m in self._regex.finditer(text):
            phrase = self.phrases[int(m.lastgroup[1:])]
            if phrase in hits or _negated(text, m.start(), negation_words):
                continue
            hits[phrase] = PhraseHit(phrase, m.group(0), m.start())
        return list(hits.values())

    def matches(self, text: str, negations: Iterable[str] = ()) -> bool:
        return bool(self.find(text, negations))


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
