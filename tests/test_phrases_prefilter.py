"""PhraseMatcher.find with its prefilter gives exactly the hits of the straightforward algorithm: one
case-insensitive alternation of every phrase run with finditer over the whole text (kept here as the
reference), whatever the phrases (literal or ``re:``), the text and the negations."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rules import phrases as phrases_module
from rules.adapters.zendesk import case_from_bundle
from rules.evaluate import default_ruleset
from rules.phrases import PhraseHit, PhraseMatcher

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


# --- the reference: the algorithm before the prefilter ----------------------------------------------------
def reference_find(phrases: list[str], text: str, negations=()) -> list[PhraseHit]:
    parts = [f"(?P<p{i}>{_reference_pattern(p)})" for i, p in enumerate(phrases)]
    if not parts or not text:
        return []
    regex = re.compile("|".join(parts), re.IGNORECASE)
    negation_words = {n.lower() for n in negations}
    hits: dict[str, PhraseHit] = {}
    for m in regex.finditer(text):
        phrase = phrases[int(m.lastgroup[1:])]
        if phrase in hits or _reference_negated(text, m.start(), negation_words):
            continue
        hits[phrase] = PhraseHit(phrase, m.group(0), m.start())
    return list(hits.values())


def _reference_pattern(phrase: str) -> str:
    if phrase.startswith("re:"):
        return phrase[3:]
    words = [re.escape(w).replace("'", "['’]") for w in phrase.split()]
    body = r"\s+".join(words)
    lead = r"\b" if re.match(r"\w", phrase) else ""
    tail = r"\b" if re.search(r"\w$", phrase) else ""
    return f"{lead}{body}{tail}"


def _reference_negated(text: str, start: int, negations: set[str]) -> bool:
    if not negations:
        return False
    window_start = max(text.rfind(c, 0, start) for c in ".!?\n") + 1
    before = re.findall(r"[\w']+", text[window_start:start])[-3:]
    return any(w.lower() in negations for w in before)


def assert_same(phrases: list[str], text: str, negations=()) -> None:
    matcher = PhraseMatcher(phrases)
    expected = reference_find(phrases, text, negations)
    assert matcher.find(text, negations) == expected
    # Asked again (the folded text and the chosen alternation are remembered), and by an equal matcher.
    assert matcher.find(text, negations) == expected
    assert PhraseMatcher(phrases).find(text, negations) == expected
    assert matcher.matches(text, negations) == bool(expected)


# --- texts built from the shipped phrases ------------------------------------------------------------------
RULES = default_ruleset()
PHRASE_LISTS = {name: list(m.phrases) for name, m in RULES.phrases if isinstance(m, PhraseMatcher)}
NEGATIONS = list(RULES.phrases.negation)
SPACES = [" ", " ", " ", "  ", "\n", "\t", "\u00a0", " \n "]
# Characters re.IGNORECASE equates with ASCII letters though str.lower() does not map them there.
ODD_CASES = {"i": ["İ", "ı", "I"], "s": ["ſ", "S"], "k": ["K", "K"]}
NOISE = [
    "the", "our", "is", "not", "no", "never", "data", "down", "loss", "reproduction", "downtime", "datas",
    "production-down", "users", "all", "for", "can", "see", "another", "customer", "error", "errors", "50",
    "500", "503", "cve", "we", "will", "cancel", "won", "t", "café", "naïve", "Σ", "ς", "_", "1",
]  # fmt: skip
PUNCTUATION = [" ", " ", " ", ". ", "! ", "? ", "\n", ", ", "-", "'", "’", "", "(", ")", ":"]


@st.composite
def rendered(draw, phrase: str) -> str:
    """``phrase`` as a ticket might write it: any case, spacing and apostrophe, odd case-folding letters."""
    if phrase.startswith("re:"):
        return draw(st.from_regex(re.compile(phrase[3:], re.IGNORECASE), fullmatch=True))
    words = []
    for word in phrase.split():
        chars = []
        for c in word:
            options = [c, c.upper(), c.lower(), *ODD_CASES.get(c.lower(), [])]
            if c == "'":
                options = ["'", "’"]
            chars.append(draw(st.sampled_from(options)))
        words.append("".join(chars))
    out = words[0]
    for word in words[1:]:
        out += draw(st.sampled_from(SPACES)) + word
    if draw(st.integers(0, 9)) == 0:
        out = out[: draw(st.integers(0, len(out)))]  # cut short: a near miss
    return out


@st.composite
def ticket_texts(draw, phrases: list[str]) -> str:
    pieces = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.integers(0, 3))
        if kind == 0 and phrases:
            pieces.append(draw(rendered(draw(st.sampled_from(phrases)))))
        elif kind == 1:
            pieces.append(draw(st.sampled_from(NOISE + NEGATIONS)))
        elif kind == 2:
            pieces.append(draw(st.text(alphabet="abcdeiklnorstuwİıſK’' \n.-5", max_size=8)))
        else:
            pieces.append(draw(st.sampled_from(PUNCTUATION)))
        pieces.append(draw(st.sampled_from(PUNCTUATION)))
    return "".join(pieces)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_shipped_phrase_lists_find_the_same_hits(data):
    name = data.draw(st.sampled_from(sorted(PHRASE_LISTS)))
    phrases = PHRASE_LISTS[name]
    # A random part of the list too: which phrases sit next to which changes the alternation.
    if data.draw(st.booleans()):
        phrases = data.draw(st.lists(st.sampled_from(phrases), min_size=1, max_size=8, unique=True))
    text = data.draw(ticket_texts(phrases))
    negations = data.draw(st.sampled_from([(), NEGATIONS, ["no", "not"]]))
    assert_same(phrases, text, negations)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_all_phrases_together_find_the_same_hits(data):
    everything = list(dict.fromkeys(p for ps in PHRASE_LISTS.values() for p in ps))
    text = data.draw(ticket_texts(everything))
    assert_same(everything, text, NEGATIONS)


def test_example_and_sandbox_tickets_find_the_same_hits():
    texts = []
    for path in sorted(EXAMPLES.glob("*.json")):
        bundle = json.loads(path.read_text())
        if "ticket" in bundle:
            case = case_from_bundle(bundle)
            texts += [case.all_text(), case.customer_text()]
    seed = json.loads((ROOT / "connector/sandbox/seed_zendesk.json").read_text())
    texts += [json.dumps(t, ensure_ascii=False) for t in seed["tickets"]]
    texts.append("\n".join(texts))
    assert len(texts) > 10
    for text in texts:
        for phrases in PHRASE_LISTS.values():
            assert_same(phrases, text, NEGATIONS)


# --- random regexes and phrases over a small alphabet ------------------------------------------------------
# Small alphabets make hits, near misses and overlapping matches common. Each regex comes with texts it
# (mostly) matches, so that the texts hold what the phrases look for.
_ATOMS: dict[str, list[str]] = {
    "a": ["a", "A"], "b": ["b", "B"], "A": ["a", "A"], "ab": ["ab", "AB", "aB"], "ba": ["ba", "Ba"],
    " ": [" "], "'": ["'"], "’": ["’"], "-": ["-"], "5": ["5"], "İ": ["İ", "i", "I"], "ſ": ["ſ", "s", "S"],
    " a": [" a", " A"], "a ": ["a "], "  ": ["  "],
    "\\s": [" ", "\n", "\t", "\u00a0"], "\\s+": [" ", "  ", "\n ", "\t"], "\\s*": ["", " ", "  "],
    "\\s{2}": ["  ", " \n"], "\\n": ["\n"], "\\t": ["\t"],
    "\\w": ["a", "b", "5", "_", "İ"], "\\W": [" ", "-", "’"], "\\d": ["5"], ".": ["a", " ", "-"],
    "\\.": ["."],
    "[ab]": ["a", "b", "B"], "[^a]": ["b", " "], "[a-b]": ["a", "b"], "['’]": ["'", "’"],
    "[’']": ["’", "'"], "[a']": ["a", "'"], "[’ ]": ["’", " "], "[\\sa]": [" ", "a", "\t"],
    "\\b": [""], "\\B": [""], "^": [""], "$": [""],
    "(?<=a)": [""], "(?<!b)": [""], "(?<=[ ’])": [""],
    "(?>ab|a)": ["ab", "a"], "(?-i:a)": ["a"], "(?a:\\bab\\b)": ["ab", "AB"],
}  # fmt: skip
_REPEATED = {
    "?": (0, 1),
    "*": (0, 2),
    "+": (1, 2),
    "{2}": (2, 2),
    "{1,2}": (1, 2),
    "+?": (1, 2),
    "??": (0, 1),
}


@st.composite
def _regex(draw, depth: int = 2) -> tuple[str, str]:
    """A regex and a text it matches (mostly: look-arounds and anchors are not honoured)."""
    kind = draw(st.integers(0, 6)) if depth else 0
    if kind == 0:
        atom = draw(st.sampled_from(sorted(_ATOMS)))
        return atom, draw(st.sampled_from(_ATOMS[atom]))
    parts = draw(st.lists(_regex(depth - 1), min_size=1, max_size=4))
    pattern, sample = "".join(r for r, _ in parts), "".join(s for _, s in parts)
    if kind == 1:
        return pattern, sample
    if kind == 2:
        other, other_sample = draw(_regex(depth - 1))
        return f"{pattern}|{other}", draw(st.sampled_from([sample, other_sample]))
    if kind == 3:
        return f"({pattern})", sample
    if kind == 4:
        quantifier = draw(st.sampled_from(sorted(_REPEATED)))
        return f"(?:{pattern}){quantifier}", sample * draw(st.integers(*_REPEATED[quantifier]))
    if kind == 5:
        return f"(?={pattern})", draw(st.sampled_from(["", sample]))
    return f"(?!{pattern})", ""


@st.composite
def _literal_phrase(draw) -> tuple[str, str]:
    words = draw(st.lists(st.text(alphabet="abAB5'-’İ", min_size=1, max_size=4), min_size=1, max_size=3))
    sample = ""
    for i, word in enumerate(words):
        if i:
            sample += draw(st.sampled_from([" ", "  ", "\n", "\t ", "\u00a0"]))
        sample += "".join(draw(st.sampled_from([c, c.swapcase(), "’" if c == "'" else c])) for c in word)
    return " ".join(words), sample


_PHRASE = st.one_of(_literal_phrase(), _regex().map(lambda r: ("re:" + r[0], r[1])))
_NOISE = st.text(alphabet="abAB5 '’-.!\n\tİıſKŞ", max_size=6)


def _compiles(phrases: list[str]) -> bool:
    try:
        PhraseMatcher(phrases)
    except re.error:
        return False
    return True


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    st.data(),
    st.lists(_PHRASE, min_size=1, max_size=6),
    st.sampled_from([(), ["a"], ["ab", "b"]]),
)
def test_random_phrases_find_the_same_hits(data, phrases_and_samples, negations):
    phrases = [p for p, _ in phrases_and_samples]
    assume(_compiles(phrases))
    samples = [s for _, s in phrases_and_samples]
    pieces = data.draw(st.lists(st.one_of(st.sampled_from(samples), _NOISE), max_size=8))
    assert_same(phrases, "".join(pieces), negations)


@pytest.mark.parametrize(
    ("phrases", "text"),
    [
        # Whitespace a phrase needs at either end of the text.
        (["re:\\s+a"], " ab"),
        (["re:a\\s"], "ba\n"),
        # A class of an apostrophe and something else; of whitespace and something else.
        (["re:[a']b"], "xab"),
        (["re:[\\sa]b"], "ab"),
        (["re:b[a\\s]b"], "bab"),
        # Whitespace that may be missing.
        (["re:a\\s*b", "re:a(?:\\s)?b"], "ab"),
        # Two whitespace items in a row: one space in the normal form.
        (["re:a \\s+b"], "a   b"),
        (["re:a\\s\\sb", "b a"], "a \tb   a"),
    ],
)
def test_edge_cases_find_the_same_hits(phrases, text):
    assert_same(phrases, text, ["b"])


@pytest.mark.parametrize(
    "phrases",
    [
        ["re:(a)(b)\\2", "c"],  # a backreference: group numbers count every alternative's groups
        ["re:(?P<x>a)(?P=x)", "b"],
        ["re:(a)?(?(1)b|c)", "b"],
        ["b", "re:(?P<x>a)", "re:(?(x)b|c)"],  # refers to another phrase's group
        ["re:(a)", "re:b\\2"],
    ],
)
def test_group_references_turn_the_prefilter_off_and_keep_the_hits(phrases):
    matcher = PhraseMatcher(phrases)
    assert matcher._needs is None
    for text in ["aa", "ab", "b", "aab c", "ca", "abab"]:
        assert_same(phrases, text)


def test_a_text_holding_none_of_the_phrases_runs_no_regex():
    matcher = PhraseMatcher(PHRASE_LISTS["outage"])
    text = "The export is slow since Monday. Please advise."
    assert matcher._regex_for(text) is None
    assert matcher.find(text) == []
    # Only the phrases whose words occur are tried.
    text = "Our production is   DOWN since 9:00"
    assert matcher._regex_for(text).pattern == f"(?P<p0>{_reference_pattern('production is down')})"
    assert matcher.find(text) == [PhraseHit("production is down", "production is   DOWN", 4)]


# --- what the prefilter relies on, over every code point ----------------------------------------------------
ALL_CHARS = "".join(map(chr, range(sys.maxunicode + 1)))


def test_characters_equal_to_a_literal_under_ignorecase_fold_to_the_literal_folded():
    fold = phrases_module._fold
    literals = [chr(c) for c in range(128)] + ["’"]
    for literal in literals:
        for char in re.findall(re.escape(literal), ALL_CHARS, re.IGNORECASE):
            assert fold(char) == fold(literal), (literal, char)


def test_folding_keeps_one_character_per_character_and_whitespace_as_whitespace():
    fold = phrases_module._fold
    folded = fold(ALL_CHARS)
    assert len(folded) == len(ALL_CHARS)
    for char, char_folded in zip(ALL_CHARS, folded, strict=True):
        assert len(fold(char)) == 1
        assert char.isspace() == char_folded.isspace(), hex(ord(char))


def test_re_whitespace_is_str_whitespace():
    # The normal form collapses str.split()'s whitespace; a phrase's \s+ is re's.
    assert re.findall(r"\s", ALL_CHARS) == [c for c in ALL_CHARS if c.isspace()]
