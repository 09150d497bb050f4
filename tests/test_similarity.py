"""Same-symptom matching (rules/similarity.py) against POLICY.md §2 and tests/data/symptom_pairs.yaml.

The accuracy bounds are what bench/tune_similarity.py measured on the held-out (odd-indexed) triplets,
rounded down with a little room for numeric drift across torch builds; they are not aspirations.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import similarity
from rules.similarity import (
    LexicalMatcher,
    SemanticMatcher,
    SemanticUnavailable,
    SymptomMatcher,
    load_matcher,
    prepare,
    symptom_text,
)

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "tests" / "data" / "symptom_pairs.yaml"

# Held-out accuracy measured at the default thresholds (bench, same vs hard negative): semantic 0.819
# at 0.62 with the int8 ONNX encoder (0.793 with torch's), lexical 0.621 at 0.43.
SEMANTIC_HELD_OUT_ACCURACY = 0.80
LEXICAL_HELD_OUT_ACCURACY = 0.60
# Held-out pairs of anchors from different product areas that reach the semantic threshold: one of 1,645
# measured (int8 0.645, torch 0.649): "Charged twice this month" (billing) / "Customer charged after
# cancelling subscription" (subscriptions), two kinds of unwanted subscription charge; the rest score at
# most 0.60. A matcher that crowds unrelated tickets together matches several in a thousand (the model cut
# to five layers, at its own tuned threshold: 0.36%).
SEMANTIC_CROSS_AREA_MATCHED = 0.001


def _text(ticket: dict[str, str]) -> str:
    return symptom_text(ticket["subject"], ticket["description"])


def _held_out() -> list[tuple[str, str, str]]:
    triplets = yaml.safe_load(PAIRS.read_text(encoding="utf-8"))["triplets"]
    return [(_text(t["anchor"]), _text(t["same"]), _text(t["different"])) for t in triplets[1::2]]


def _accuracy(matcher: SymptomMatcher, triplets: list[tuple[str, str, str]]) -> float:
    # One batched call fills the matcher's cache, so the per-pair calls below never reach the model.
    everything = [text for triplet in triplets for text in triplet]
    matcher.scores(everything[0], everything)
    right = 0
    for anchor, same, different in triplets:
        s_same, s_diff = matcher.scores(anchor, [same, different])
        right += int(s_same >= matcher.threshold) + int(s_diff < matcher.threshold)
    return right / (2 * len(triplets))


class CountingMatcher(SemanticMatcher):
    """Records every batch that reaches the model, through the matcher's one model hook."""

    def __init__(self) -> None:
        # A private cache: the shared one may already hold texts another test embedded.
        super().__init__(cache_size=1_000)
        self.batches: list[list[str]] = []
        self._batches_lock = threading.Lock()

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self._batches_lock:
            self.batches.append(list(texts))
        return super()._encode(texts)


@pytest.fixture(scope="module")
def semantic() -> Iterator[SemanticMatcher]:
    if not similarity.semantic_available():
        pytest.skip("the semantic extra is not installed")
    matcher = SemanticMatcher()
    matcher.scores("warm up", ["load the model once for this module"])
    yield matcher


# --- data ----------------------------------------------------------------------------------------------


def test_pair_data_is_large_and_complete() -> None:
    triplets = yaml.safe_load(PAIRS.read_text(encoding="utf-8"))["triplets"]
    assert len(triplets) >= 60
    assert len({t["area"] for t in triplets}) >= 14
    for t in triplets:
        for role in ("anchor", "same", "different"):
            assert t[role]["subject"].strip() and t[role]["description"].strip(), (t["area"], role)


# --- preprocessing -------------------------------------------------------------------------------------


def test_prepare_keeps_subject_first_and_drops_mail_noise() -> None:
    text = symptom_text(
        "Tickets not created from email",
        "Mail to support@ stopped turning into tickets.\n\nSent from my iPhone\n\n"
        "-----Original Message-----\nFrom: Ann\nSent: Friday\n> old quoted text about invoices",
    )
    assert prepare(text) == "Tickets not created from email. Mail to support@ stopped turning into tickets."


@pytest.mark.parametrize(
    "tail",
    [
        "On Mon, 3 Jun 2024 at 10:02, Support <help@acme.io> wrote:\n> quoted",
        "--\nJane Doe | Head of Ops | +1 555 0100",
        "Thanks, Marta\nACME GmbH, Berlin",
        "From: Support <help@acme.io>\nDate: Monday\nSubject: Re: your ticket",
    ],
)
def test_prepare_cuts_history_and_signatures(tail: str) -> None:
    assert prepare(f"Export fails\nThe export breaks.\n{tail}") == "Export fails. The export breaks."


def test_prepare_drops_reply_prefixes_and_keeps_an_opening_thanks() -> None:
    text = "Re: FW: Export fails\nThanks in advance.\nThe export breaks.\nThanks, Marta\nACME GmbH"
    assert prepare(text) == "Export fails. Thanks in advance. The export breaks."


def test_prepare_caps_length_on_a_word_boundary() -> None:
    prepared = prepare("Subject " * 100 + "\n" + "word " * 10_000)
    subject, _, body = prepared.partition(". ")
    assert len(subject) <= similarity.MAX_SUBJECT_CHARS
    assert len(body) <= similarity.MAX_DESCRIPTION_CHARS
    assert body.endswith("word")


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_prepare_never_fails_and_yields_one_trimmed_line(text: str) -> None:
    prepared = prepare(text)
    assert "\n" not in prepared
    assert prepared == prepared.strip()


# --- lexical -------------------------------------------------------------------------------------------


def test_lexical_matches_the_policy_examples() -> None:
    matcher = LexicalMatcher()
    anchor = "Export to CSV fails with timeout"
    assert matcher.matches(anchor, ["CSV export times out after 30s"])
    assert not matcher.matches("CSV export is slow", ["PDF export fails"])


def test_lexical_synonyms_bridge_support_vocabulary() -> None:
    matcher = LexicalMatcher()
    assert matcher.scores("Cannot sign in", ["Login broken"])[0] > matcher.threshold
    assert matcher.scores("Report download errors", ["Report export fails"])[0] > 0.99


def test_lexical_held_out_accuracy() -> None:
    assert _accuracy(LexicalMatcher(), _held_out()) >= LEXICAL_HELD_OUT_ACCURACY


@given(st.text(max_size=300), st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_lexical_scores_are_bounded_symmetric_and_reflexive(a: str, b: str) -> None:
    matcher = LexicalMatcher()
    ab = float(matcher.scores(a, [b])[0])
    assert 0.0 <= ab <= 1.0
    assert ab == pytest.approx(float(matcher.scores(b, [a])[0]), abs=1e-6)
    assert float(matcher.scores(a, [a])[0]) in (pytest.approx(0.0, abs=1e-6), pytest.approx(1.0, abs=1e-6))


def test_lexical_cache_is_bounded() -> None:
    matcher = LexicalMatcher(cache_size=3)
    matcher.scores("one thing", ["two thing", "three thing", "four thing", "five thing"])
    assert len(matcher.cache) == 3


# --- semantic ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_semantic_matches_the_policy_examples(semantic: SemanticMatcher) -> None:
    hits = semantic.matches(
        "Export to CSV fails with timeout",
        ["PDF export fails", "CSV export times out after 30s", "Invoice shows the wrong VAT number"],
    )
    assert [index for index, _ in hits] == [1]
    assert not semantic.matches("CSV export is slow", ["PDF export fails"])


@pytest.mark.slow
def test_semantic_held_out_accuracy(semantic: SemanticMatcher) -> None:
    assert _accuracy(semantic, _held_out()) >= SEMANTIC_HELD_OUT_ACCURACY


@pytest.mark.slow
def test_semantic_almost_never_matches_other_product_areas(semantic: SemanticMatcher) -> None:
    triplets = yaml.safe_load(PAIRS.read_text(encoding="utf-8"))["triplets"][1::2]
    anchors = [(t["area"], _text(t["anchor"])) for t in triplets]
    pairs = matched = 0
    found: list[tuple[str, str, float]] = []
    for i, (area, anchor) in enumerate(anchors):
        others = [text for other, text in anchors[i + 1 :] if other != area]
        pairs += len(others)
        for at, score in semantic.matches(anchor, others):
            matched += 1
            found.append((anchor.splitlines()[0], others[at].splitlines()[0], round(score, 3)))
    assert matched / pairs <= SEMANTIC_CROSS_AREA_MATCHED, found


@pytest.mark.slow
def test_semantic_matches_are_best_first_and_scores_are_cosines(semantic: SemanticMatcher) -> None:
    candidates = ["CSV export times out after 30s", "Export to CSV fails with timeout", "Login page is blank"]
    scores = semantic.scores("Export to CSV fails with timeout", candidates)
    assert scores.shape == (3,)
    assert scores[1] == pytest.approx(1.0, abs=1e-4)
    assert np.all(scores <= 1.0) and np.all(scores >= -1.0)
    hits = semantic.matches("Export to CSV fails with timeout", candidates)
    assert [i for i, _ in hits] == [1, 0]
    assert hits[0][1] >= hits[1][1] >= semantic.threshold


@pytest.mark.slow
def test_cached_candidates_are_not_embedded_again(semantic: SemanticMatcher) -> None:
    matcher = CountingMatcher()
    history = [f"Ticket {n}: the nightly sync to the warehouse failed with error {n}" for n in range(20)]
    matcher.scores("Warehouse sync fails every night", history)
    assert len(matcher.batches) == 1  # the query and all 20 candidates in one call
    assert len(matcher.batches[0]) == 21

    matcher.scores("Warehouse sync fails every night", history)
    assert len(matcher.batches) == 1

    matcher.scores("A new case: the warehouse sync times out", history)
    assert matcher.batches[1] == ["A new case: the warehouse sync times out"]


@pytest.mark.slow
def test_repeated_texts_in_one_call_are_embedded_once(semantic: SemanticMatcher) -> None:
    matcher = CountingMatcher()
    scores = matcher.scores("Same text", ["Same text", "Same text", "Other text", "Other text"])
    assert matcher.batches == [["Same text", "Other text"]]
    assert scores[0] == scores[1] and scores[2] == scores[3]


@pytest.mark.slow
def test_matchers_share_the_process_cache_unless_given_a_size(semantic: SemanticMatcher) -> None:
    text = "Shared cache check: report builder crashes on save"
    SemanticMatcher(threshold=0.5).scores(text, ["anything"])
    assert SemanticMatcher(threshold=0.9).cache.get(prepare(text)) is not None
    assert SemanticMatcher(cache_size=10).cache.get(prepare(text)) is None


@pytest.mark.slow
def test_semantic_cache_is_bounded(semantic: SemanticMatcher) -> None:
    matcher = SemanticMatcher(cache_size=4)
    matcher.scores("query", [f"candidate number {n}" for n in range(10)])
    assert len(matcher.cache) == 4


@pytest.mark.slow
def test_concurrent_scoring_agrees_with_sequential(semantic: SemanticMatcher) -> None:
    matcher = SemanticMatcher()
    queries = [f"Webhook deliveries stopped for endpoint {n}" for n in range(8)]
    candidates = ["No webhook events received since Tuesday", "PDF export fails"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda q: matcher.scores(q, candidates), queries))
    sequential = [semantic.scores(q, candidates) for q in queries]
    for got, want in zip(parallel, sequential, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


# --- both matchers: degenerate input -------------------------------------------------------------------


@pytest.fixture(params=["lexical", pytest.param("semantic", marks=pytest.mark.slow)])
def either_matcher(request: pytest.FixtureRequest) -> SymptomMatcher:
    if request.param == "semantic":
        return request.getfixturevalue("semantic")
    return LexicalMatcher()


def test_empty_texts_score_zero_and_never_match(either_matcher: SymptomMatcher) -> None:
    assert either_matcher.scores("Export fails", []).shape == (0,)
    assert either_matcher.matches("Export fails", []) == []
    scores = either_matcher.scores("", ["", "   \n ", "Export fails"])
    assert np.all(scores == 0.0)
    assert either_matcher.matches("", ["", "Export fails"]) == []
    assert either_matcher.matches("Export fails", ["", "\n\n"]) == []


def test_huge_texts_do_not_crash(either_matcher: SymptomMatcher) -> None:
    log_dump = "Export fails with timeout\n" + "ERROR worker-7 stack frame at 0x7ffd " * 100_000
    scores = either_matcher.scores(log_dump, ["Export to CSV times out", "x" * 2_000_000])
    assert scores.shape == (2,)
    assert np.all(np.isfinite(scores))


# --- choosing a matcher --------------------------------------------------------------------------------


def test_matchers_satisfy_the_protocol() -> None:
    assert isinstance(LexicalMatcher(), SymptomMatcher)
    assert isinstance(SemanticMatcher(), SymptomMatcher)  # constructing does not load the model


def test_load_matcher_lexical_and_thresholds() -> None:
    matcher = load_matcher("lexical", lexical_threshold=0.5)
    assert isinstance(matcher, LexicalMatcher)
    assert (matcher.name, matcher.threshold) == ("lexical", 0.5)
    assert load_matcher("lexical").threshold == similarity.DEFAULT_LEXICAL_THRESHOLD
    with pytest.raises(ValueError, match="unknown matcher kind"):
        load_matcher("fuzzy")


def test_lexical_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from rules.similarity import load_matcher\n"
        "m = load_matcher('lexical')\n"
        "m.matches('Export to CSV fails with timeout', ['CSV export times out after 30s'])\n"
        "heavy = [n for n in ('torch', 'sentence_transformers', 'transformers') if n in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_auto_falls_back_to_lexical_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setattr(similarity, "_fallback_warned", False)
    with caplog.at_level(logging.WARNING, logger="rules.similarity"):
        first = load_matcher("auto", lexical_threshold=0.3)
        second = load_matcher()
    assert isinstance(first, LexicalMatcher) and first.threshold == 0.3
    assert isinstance(second, LexicalMatcher)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    with pytest.raises(SemanticUnavailable, match="semantic"):
        load_matcher("semantic")


@pytest.mark.slow
def test_auto_prefers_semantic(semantic: SemanticMatcher) -> None:
    matcher = load_matcher("auto", semantic_threshold=0.7)
    assert isinstance(matcher, SemanticMatcher)
    assert matcher.name == similarity.semantic_name(similarity.default_encoder())
    assert matcher.name.startswith("semantic:all-MiniLM-L6-v2")
    assert matcher.threshold == 0.7
