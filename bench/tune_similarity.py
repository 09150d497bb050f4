"""Tune and measure the same-symptom matchers on tests/data/symptom_pairs.yaml.

    python bench/tune_similarity.py [--matcher lexical|semantic|all] [--history 2000]
        [--encoder onnx-int8|torch] [--layers 6,5,4] [--new-from 71] [--no-speed]

For each matcher: score distributions of same, different (hard negatives: same product area) and unrelated
(different product areas) pairs; the threshold that maximises accuracy on the tuning half (even-indexed
triplets); accuracy, precision and recall on the held-out half (odd-indexed) at that threshold and at the
module's default, AUC, and where the unrelated pairs lie against the threshold; and throughput.
``--layers`` measures the semantic model cut to its first N layers (one run per count; the module's
default threshold is tuned for its own count only); for the int8 encoder it also prints how far its
vectors are from torch's for the same cut. ``--new-from I`` also reports the triplets from index I on at
the threshold tuned on the even triplets before I: data written after that threshold was chosen.
Prints numbers, asserts nothing (DESIGN.md: benchmarks print).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rules import similarity  # noqa: E402

DATA = ROOT / "tests" / "data" / "symptom_pairs.yaml"


@dataclass(frozen=True)
class Triplet:
    area: str
    anchor: str
    same: str
    different: str


def load_triplets(path: Path = DATA) -> list[Triplet]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))["triplets"]

    def text(ticket: dict[str, str]) -> str:
        return similarity.symptom_text(ticket["subject"], ticket["description"])

    return [Triplet(t["area"], text(t["anchor"]), text(t["same"]), text(t["different"])) for t in raw]


@dataclass(frozen=True)
class PairScores:
    same: np.ndarray
    different: np.ndarray
    unrelated: np.ndarray


def pair_scores(matcher: similarity.SymptomMatcher, triplets: Sequence[Triplet]) -> PairScores:
    same = np.array([matcher.scores(t.anchor, [t.same])[0] for t in triplets])
    different = np.array([matcher.scores(t.anchor, [t.different])[0] for t in triplets])
    # Every anchor against the anchors of other product areas: what most of a real history looks like.
    unrelated: list[float] = []
    for i, t in enumerate(triplets):
        others = [o.anchor for o in triplets[i + 1 :] if o.area != t.area]
        unrelated.extend(matcher.scores(t.anchor, others).tolist() if others else [])
    return PairScores(same, different, np.array(unrelated))


def accuracy(scores: PairScores, threshold: float) -> float:
    right = np.sum(scores.same >= threshold) + np.sum(scores.different < threshold)
    return float(right / (len(scores.same) + len(scores.different)))


def best_runs(scores: PairScores) -> tuple[float, list[tuple[float, float]]]:
    """The best accuracy (same vs hard different) and every run of thresholds that reaches it.

    Between two neighbouring observed scores every threshold classifies alike; adjacent best intervals
    join into one run.
    """
    values = np.unique(np.concatenate([scores.same, scores.different])).astype(np.float64)
    edges = np.concatenate([[values[0] - 0.05], values, [values[-1] + 0.05]])
    accs = [accuracy(scores, (lo + hi) / 2) for lo, hi in itertools.pairwise(edges)]
    best = max(accs)
    runs: list[tuple[float, float]] = []
    for i, acc in enumerate(accs):
        if acc != best:
            continue
        if runs and runs[-1][1] == edges[i]:
            runs[-1] = (runs[-1][0], float(edges[i + 1]))
        else:
            runs.append((float(edges[i]), float(edges[i + 1])))
    return best, runs


def smoothed_threshold(scores: PairScores, window: float = 0.02) -> tuple[float, float]:
    """The threshold whose neighbourhood (± window) has the best mean accuracy, and that mean.

    With a few dozen pairs the single best cut is noise: it can sit a thousandth away from a cliff. The
    mean over a window prefers a threshold that stays good when unseen scores shift a little.
    """
    grid = np.round(np.arange(-0.2, 1.0005, 0.001), 3)
    accs = np.array([accuracy(scores, t) for t in grid])
    k = round(window / 0.001)
    means = np.array([accs[max(0, i - k) : i + k + 1].mean() for i in range(len(grid))])
    best = int(means.argmax())
    return float(grid[best]), float(means[best])


def precision_recall(scores: PairScores, threshold: float) -> tuple[float, float]:
    tp = int(np.sum(scores.same >= threshold))
    fp = int(np.sum(scores.different >= threshold))
    precision = tp / (tp + fp) if tp + fp else 1.0
    return precision, tp / len(scores.same)


def auc(scores: PairScores) -> float:
    """The chance that a random same pair outscores a random different pair (ties count half)."""
    same, different = scores.same[:, None], scores.different[None, :]
    return float(np.mean((same > different) + 0.5 * (same == different)))


def describe(values: np.ndarray) -> str:
    lo, mid, hi = values.min(), np.median(values), values.max()
    return f"min {lo:.3f}  median {mid:.3f}  max {hi:.3f}  (n={len(values)})"


def describe_unrelated(values: np.ndarray, threshold: float) -> str:
    p99, hi = np.percentile(values, 99), values.max()
    share = float(np.mean(values >= threshold))
    return (
        f"p99 {p99:.3f} ({p99 - threshold:+.3f})  max {hi:.3f} ({hi - threshold:+.3f}) against "
        f"{threshold:.3f}; matched {share:.4f}"
    )


def report_at(label: str, scores: PairScores, threshold: float) -> None:
    precision, recall = precision_recall(scores, threshold)
    print(
        f"    {label} {threshold:.3f}: accuracy {accuracy(scores, threshold):.3f}  precision {precision:.3f}"
        f"  recall {recall:.3f}"
    )


def report_set(title: str, scores: PairScores, threshold: float, default: float | None) -> None:
    print(f"  {title}")
    print(f"    same       {describe(scores.same)}")
    print(f"    different  {describe(scores.different)}")
    print(f"    unrelated  {describe(scores.unrelated)}")
    report_at("at the tuned threshold", scores, threshold)
    if default is not None:
        report_at("at the default", scores, default)
    ranked = float(np.mean(scores.same > scores.different))
    print(f"    AUC same vs different {auc(scores):.3f}; paraphrase outscores its hard negative {ranked:.3f}")
    print(f"    unrelated pairs: {describe_unrelated(scores.unrelated, threshold)}")


def report_quality(
    matcher: similarity.SymptomMatcher,
    triplets: Sequence[Triplet],
    *,
    default: float | None,
    new_from: int | None = None,
) -> None:
    """``default`` None: the module's default threshold was not tuned for this matcher; not reported."""
    tune = pair_scores(matcher, triplets[0::2])
    held = pair_scores(matcher, triplets[1::2])
    print(f"  tuning set ({len(triplets[0::2])} triplets, even indices)")
    print(f"    same       {describe(tune.same)}")
    print(f"    different  {describe(tune.different)}")
    print(f"    unrelated  {describe(tune.unrelated)}")
    best, runs = best_runs(tune)
    spans = ", ".join(f"{lo:.3f}-{hi:.3f}" for lo, hi in runs)
    print(f"    best accuracy {best:.3f}, for thresholds in {spans}")
    threshold, mean = smoothed_threshold(tune)
    print(f"    tuned threshold {threshold:.3f} (best mean accuracy {mean:.3f} within +-0.02)")
    if default is not None:
        print(f"    at the default {default:.2f}: accuracy {accuracy(tune, default):.3f}")
    report_set(f"held-out set ({len(triplets[1::2])} triplets, odd indices)", held, threshold, default)
    if new_from is not None and 0 < new_from < len(triplets):
        # Tuned without the new triplets, reported on all of them: none took part in choosing it.
        old_threshold, _ = smoothed_threshold(pair_scores(matcher, triplets[:new_from:2]))
        new = pair_scores(matcher, triplets[new_from:])
        title = (
            f"new triplets ({len(triplets) - new_from}, indices {new_from}-{len(triplets) - 1}) at the "
            f"threshold tuned on the even triplets before {new_from}: {old_threshold:.3f}"
        )
        report_set(title, new, old_threshold, default)


def report_agreement(matcher: similarity.SemanticMatcher, triplets: Sequence[Triplet]) -> None:
    """How far the int8 encoder's vectors are from torch's for the same cut of the model."""
    texts = [t for trip in triplets for t in (trip.anchor, trip.same, trip.different)]
    reference = similarity.SemanticMatcher(
        cache_size=similarity.DEFAULT_CACHE_SIZE, encoder=similarity.TORCH_ENCODER, layers=matcher.layers
    )
    cosines = np.sum(matcher.embed(texts) * reference.embed(texts), axis=1)
    print(
        f"  agreement with torch ({matcher.layers} layers), cosine over {len(texts)} texts: "
        f"min {cosines.min():.4f}  1st percentile {np.percentile(cosines, 1):.4f}  "
        f"median {np.median(cosines):.4f}"
    )


def fresh(
    kind: str, encoder: str | None = None, layers: int = similarity.SEMANTIC_LAYERS
) -> similarity.SymptomMatcher:
    """A matcher with an empty cache of its own (load_matcher's semantic one shares the process cache)."""
    if kind == "semantic":
        return similarity.SemanticMatcher(
            cache_size=similarity.DEFAULT_CACHE_SIZE, encoder=encoder, layers=layers
        )
    return similarity.LexicalMatcher()


def report_speed(
    kind: str, triplets: Sequence[Triplet], history_size: int, encoder: str | None, layers: int
) -> None:
    texts = [t for trip in triplets for t in (trip.anchor, trip.same, trip.different)]
    # Distinct strings of realistic length, so the cache cannot help.
    rounds = (300 + history_size) // len(texts) + 1
    pool = [f"{text} (ref {n})" for n in range(rounds) for text in texts]
    warm = fresh(kind, encoder, layers)
    warm.scores("warm up", texts[:8])  # the model load is not part of throughput

    # One new text per call, the candidate cached after the first: the cost of a new case. Best of three
    # rounds, since the machine may be shared and a busy neighbour only ever makes a round slower.
    single = fresh(kind, encoder, layers)
    single.scores(texts[0], [texts[1]])
    rates = []
    for round_ in range(3):
        sample = pool[round_ * 100 : (round_ + 1) * 100]
        start = time.perf_counter()
        for text in sample:
            single.scores(text, [texts[1]])
        rates.append(len(sample) / (time.perf_counter() - start))
    print(
        f"  single text, uncached: {max(rates):,.0f} texts/s, {1000 / max(rates):.2f} ms per text "
        f"(best of 3 rounds of 100; rounds {', '.join(f'{1000 / r:.2f}' for r in rates)} ms)"
    )

    batched = fresh(kind, encoder, layers)
    history = pool[300 : 300 + history_size]  # none of them seen by the single-text rounds
    start = time.perf_counter()
    batched.scores("Export to CSV fails with timeout", history)
    elapsed = time.perf_counter() - start
    print(f"  batched, uncached ({len(history)} candidates): {len(history) / elapsed:,.0f} texts/s")
    start = time.perf_counter()
    batched.scores("CSV export times out after 30s\nThe export dies after 30 seconds.", history)
    elapsed = time.perf_counter() - start
    print(f"  a new case against the same {len(history)} cached candidates: {elapsed * 1000:,.0f} ms")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        load = "unknown"
    return (
        f"{cpu}; nproc {cores}; load average {load} at start; "
        f"Python {platform.python_version()}; numpy {np.__version__}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matcher", choices=("lexical", "semantic", "all"), default="all")
    parser.add_argument("--history", type=int, default=2000, help="candidates in the batched timing")
    parser.add_argument(
        "--encoder",
        choices=similarity.ENCODERS,
        help="the semantic matcher's encoder (default: the module's choice, onnx-int8 where installed)",
    )
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument(
        "--layers",
        default=str(similarity.SEMANTIC_LAYERS),
        help=f"the semantic model's first N layers, or several: 6,5,4 (default {similarity.SEMANTIC_LAYERS})",
    )
    parser.add_argument(
        "--new-from", type=int, help="also report triplets from this index on, tuned on the ones before it"
    )
    parser.add_argument("--no-speed", action="store_true", help="quality only, no throughput")
    args = parser.parse_args(argv)
    layer_counts = [int(n) for n in args.layers.split(",")]

    triplets = load_triplets()
    print(f"machine: {machine()}")
    print(f"data: {len(triplets)} triplets from {DATA.relative_to(ROOT)}")
    kinds = ["lexical", "semantic"] if args.matcher == "all" else [args.matcher]
    runs = [(kind, n) for kind in kinds for n in (layer_counts if kind == "semantic" else [0])]
    for kind, layers in runs:
        if kind == "semantic" and not similarity.semantic_available():
            print("\nsemantic: not installed, skipped")
            break
        matcher = fresh(kind, args.encoder, layers or similarity.SEMANTIC_LAYERS)
        # The module's defaults are tuned for its own matchers; another cut of the model gets only its own.
        tuned_here = kind == "lexical" or layers == similarity.SEMANTIC_LAYERS
        default = matcher.threshold if tuned_here else None
        note = "" if tuned_here else ", not tuned for it"
        print(f"\n{matcher.name} (default threshold {matcher.threshold}{note})")
        if kind == "semantic":
            import torch

            if args.threads:
                torch.set_num_threads(args.threads)
            if getattr(matcher, "encoder", None) == similarity.ONNX_ENCODER:
                import onnxruntime

                print(f"  onnxruntime {onnxruntime.__version__}, one intra-op thread")
            else:
                print(f"  torch {torch.__version__}, intra-op threads {torch.get_num_threads()}")
        report_quality(matcher, triplets, default=default, new_from=args.new_from)
        if isinstance(matcher, similarity.SemanticMatcher) and matcher.encoder == similarity.ONNX_ENCODER:
            report_agreement(matcher, triplets)
        if not args.no_speed:
            report_speed(kind, triplets, args.history, args.encoder, layers or similarity.SEMANTIC_LAYERS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
