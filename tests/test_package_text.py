"""Package text, done cheaply and the same: the sentence searches (the customer's expectation, the
competitive context) start at the sentence of the first key word, yet find exactly what a search over the
whole text finds; a Redactor redacts each text once however often the package quotes it."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.package import (
    _COMPETITOR,
    _COMPETITOR_WORD,
    _EXPECTATION,
    _EXPECTATION_WORD,
    Redactor,
    sentence_search,
)
from rules.redact import redact

KEY_WORDS = [
    "asap", "ASAP", "as soon as possible", "immediately", "urgently", "today", "tomorrow", "by Monday",
    "by the end of", "by end of", "by eod", "by noon", "by 5", "before Friday", "before the", "before our",
    "before 3", "deadline", "go-live", "go live", "launch", "competitor", "alternative", "other vendor",
    "other vendors", "switch to", "switching to", "Today", "todays", "launched", "bye", "by", "before",
]  # fmt: skip
WORDS = ["we", "need", "this", "fixed", "the", "export", "is", "down", "x", "1", "Ünïcode", "’", "_"]
ENDS = [".", "!", "?", "\n", ". ", "! ", " ", " ", " ", ", ", "-", "", "..."]


@st.composite
def texts(draw) -> str:
    pieces = draw(st.lists(st.sampled_from(KEY_WORDS + WORDS + ENDS) | st.text(max_size=4), max_size=30))
    return "".join(p + draw(st.sampled_from([" ", "", ".", "\n"])) for p in pieces)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return (a.span(), a.group(0), a.groups()) == (b.span(), b.group(0), b.groups())


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts())
def test_sentence_search_finds_what_a_search_over_the_whole_text_finds(text):
    for sentence, word in ((_EXPECTATION, _EXPECTATION_WORD), (_COMPETITOR, _COMPETITOR_WORD)):
        assert _same(sentence_search(sentence, word, text), sentence.search(text))


def test_sentence_search_examples():
    text = "Hello. The export fails. We go live on Monday! Please fix it before the demo."
    m = sentence_search(_EXPECTATION, _EXPECTATION_WORD, text)
    assert m is not None and m.group(0) == " We go live on Monday!"
    assert _same(m, _EXPECTATION.search(text))
    assert sentence_search(_EXPECTATION, _EXPECTATION_WORD, "No dates here. None at all") is None
    text = "x" * 5000 + "\nWe are evaluating an alternative vendor"
    assert _same(sentence_search(_COMPETITOR, _COMPETITOR_WORD, text), _COMPETITOR.search(text))


def test_a_redactor_gives_what_redact_gives_however_often_asked():
    texts = ["password: Tr0ub4dor&3", "nothing secret", "card 4111111111111111", "password: Tr0ub4dor&3"]
    clean = Redactor()
    for _ in range(2):
        assert [clean(t) for t in texts] == [redact(t)[0] for t in texts]
    assert clean.kinds == {"password", "card_number"}
    assert Redactor()("nothing secret") == "nothing secret" and not Redactor().kinds
