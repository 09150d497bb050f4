"""The symptom index: recent tickets with their embeddings, kept by the service so a new ticket is compared
with the lookback window without searching Zendesk's history every time.

The database is the truth (``symptom_index``, shared by every worker); each process keeps an in-memory
half-precision matrix of the rows, synced incrementally by write time, so a query is one matrix-vector
product (then the few candidates near the threshold are scored again exactly).
Every ticket the worker assesses is indexed (and, while the index is not yet filled, the Zendesk history it
fetched too); ``escalate backfill --days N`` fills it from Zendesk's incremental export, resumably.

``fetch_bundle`` is what assessment calls: with the index filled over the lookback window (or
``ESCALATE_SYMPTOM_INDEX=index``), the case's ``history`` is built from the index's matches instead of a
Zendesk search; ``ESCALATE_SYMPTOM_INDEX=zendesk`` keeps the search (the index is still kept).

Only tickets at or above the matcher's threshold become history: the rules use history only through the
same-symptom matcher (``rules.facts``), which scores exactly these candidates again with the same
vectors (handed to the matcher's cache), so the decision is the one the full history would give.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
from cachetools import LRUCache

from rules.adapters.zendesk import ticket_from_zendesk
from rules.case import Case, Ticket
from rules.encoder_onnx import one_torch_thread
from rules.similarity import SymptomMatcher
from worker.store import Store, TicketRef
from worker.store.followup import SymptomEntry, SymptomRecord

log = logging.getLogger(__name__)

SOURCE = "zendesk"
MODE_ENV = "ESCALATE_SYMPTOM_INDEX"  # auto (default) | index | zendesk
FILLED = "filled"  # {"since": iso}: the index holds every ticket created since then
BACKFILL = "backfill"  # the incremental export's cursor and progress
MAX_SUBJECT_CHARS = 1_000
# The matcher reads at most the subject and 400 cleaned characters of the description; the rest is kept
# only so a row can stand in for the ticket in a case's history.
MAX_DESCRIPTION_CHARS = 4_000
HISTORY_LIMIT = 200
# A sync reads the rows stamped from this much before the previous sync began: a row stamped (by its
# writer's clock) before that sync but committed after it is not missed. The index's writes are batches
# of 500 rows, committed in well under a second; the margin also covers small clock differences.
SYNC_OVERLAP = timedelta(seconds=15)
# That wide read comes at most this often. Between two, a sync reads from NARROW_OVERLAP before the
# previous sync began: each job's sync then reads the last second's stamps rather than the last fifteen
# seconds' (at 35 jobs a second, some 40 instead of 500, and fewer still as more workers write). A row
# stamped or committed later than the narrow margin is still seen, at the next wide read.
WIDE_SYNC_EVERY = timedelta(seconds=5)
NARROW_OVERLAP = timedelta(seconds=1)
FULL_RELOAD_EVERY = timedelta(hours=6)
# Half-precision scores are within 3e-4 of float32's: candidates this close below the threshold are
# scored again exactly.
COARSE_SLACK = 0.002
SYNC_PAGE = 5_000
DELETED = "deleted"
# Full rows (texts, tags, fields) kept per process for the tickets queries return, checked against the
# copy's write stamps before use: a recurring symptom's tickets come back job after job.
ROW_CACHE_SIZE = 2_000
# How long a process trusts that the index is filled (``is_filled``) before reading the state again.
FILLED_RECHECK = timedelta(seconds=60)


class Hit(NamedTuple):
    """One candidate of a search (a tuple: a grouped symptom's search makes hundreds a job)."""

    row_id: int
    ticket: TicketRef
    organization_id: str | None
    created_at: datetime | None
    score: float


def _created_since(hit: Hit, moment: float) -> bool:
    """As ``SymptomIndex.query`` filters by ``since``: created at ``moment`` or later, or of unknown age."""
    return hit.created_at is None or hit.created_at.timestamp() >= moment


def mode() -> str:
    value = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    return value if value in ("auto", "index", "zendesk") else "auto"


# Below this many rows the half-precision product runs on one torch thread, whatever the process's
# setting; from it on, on the process's threads. Measured on 2026-11-27 (AMD EPYC Zen 4, 2 cores): below
# it, waking torch's pool costs more than the arithmetic (1,000 rows: 0.05 ms on one thread, 1-8 ms on
# two), while numpy, which must first widen the matrix to float32 and does not vectorise that for half
# precision, takes 1.3 ms (it is the fallback without torch only). From it on the pool pays
# (bench/bench_symptom_index.py, queries back to back: 10,000 rows p50 0.4 ms on two threads against 0.7 on
# one; 100,000 rows 3.0 ms against 6.2).
ONE_THREAD_BELOW_ROWS = 8192
# The product runs over the matrix's rows rounded up to a multiple of this (its spare capacity is zeros;
# the extra scores are dropped): torch prepares a kernel for each new matrix shape (oneDNN), which costs
# 0.3-0.5 ms a query back to back and 0.7-1.9 ms inside a job, while every new ticket adds a row. Measured
# on 2026-11-27 (Intel Xeon, AVX-512): 40 rows 0.05 ms for a shape seen before against 0.49 for a new one;
# 10,000 rows 1.4 against 1.7. At most 255 extra rows cost about 0.03 ms.
SHAPE_STEP = 256


def _text_id(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _neutral(raw: Mapping[str, Any]) -> Ticket | None:
    """A Zendesk-shaped ticket as the neutral model; None when it has no id."""
    if _text_id(raw.get("id")) is None:
        return None
    return ticket_from_zendesk(dict(raw))


def entry_text(raw: Mapping[str, Any]) -> tuple[str, str, str]:
    """(subject, description, text) as the index keeps them; ``text`` is what ``Ticket.text`` gives for
    the stored (clipped) fields, so the row's embedding is the embedding of its own text."""
    subject = str(raw.get("subject") or raw.get("raw_subject") or "")[:MAX_SUBJECT_CHARS]
    description = str(raw.get("description") or "")[:MAX_DESCRIPTION_CHARS]
    return subject, description, f"{subject}\n{description}".strip()


def _row_text(row: SymptomRecord) -> str:
    """The text an indexed row was embedded from."""
    return entry_text({"subject": row.subject, "description": row.description})[2]


def raw_from_row(row: SymptomRecord) -> dict[str, Any]:
    """An indexed ticket in the Zendesk shape the case adapter reads for history."""
    return {
        "id": int(row.ticket_id) if row.ticket_id.isdigit() else row.ticket_id,
        "subject": row.subject,
        "description": row.description,
        "status": row.status,
        "tags": list(row.tags),
        "requester_id": row.requester_id,
        "organization_id": row.organization_id,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "custom_fields": [{"id": k, "value": v} for k, v in row.custom_fields.items()],
    }


# A grouped symptom's tickets come back as history for every new report of it: their times are written
# out again and again.
@functools.lru_cache(maxsize=8_192)
def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _epoch(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else float("nan")


def _fields_of(ticket: Ticket) -> int:
    """The fields besides the text that the index keeps of a ticket, but for ``updated_at``: an update
    that changes none of them (a comment, a priority) leaves the row as it is, its ``updated_at`` that of
    the last change that mattered (the rules read no ticket's ``updated_at`` from the history)."""
    return hash(
        repr(
            (
                ticket.organization_id,
                ticket.requester_id,
                ticket.status,
                sorted(ticket.tags),
                sorted(ticket.custom_fields.items(), key=lambda item: str(item[0])),
                ticket.created_at,
            )
        )
    )


def _h64(digest: str) -> int:
    """The first 64 bits of a hex digest: enough to tell a changed text from an unchanged one."""
    return int(digest[:16], 16)


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - the semantic matcher needs torch, so it is there
        return None
    return torch


class SymptomIndex:
    """One process's copy of the index for one matcher; thread-safe.

    The vectors are kept as float16 (half the memory and half the bytes a query reads) and scored with
    torch's half-precision matrix-vector product, which accumulates in float32: scores are within 3e-4 of
    float32's (measured on the model's embeddings). A query keeps what scores within ``COARSE_SLACK`` of
    the threshold and ``matches`` scores those again exactly, from the float32 vectors in the store.
    """

    def __init__(self, matcher: SymptomMatcher) -> None:
        self.matcher = matcher
        self.name = matcher.name
        self.semantic = callable(getattr(matcher, "embed", None))
        self.dims = int(getattr(matcher, "dimensions", 0)) if self.semantic else 0
        self._torch = _torch() if self.semantic else None
        self._lock = threading.RLock()
        self._generation = 0  # moves with every change to the copy
        self._clear()

    def _clear(self) -> None:
        # First: cut short here (a job's timeout), the next sync still finds the copy unloaded.
        self._loaded_at: datetime | None = None
        self._wide_at: datetime | None = None  # when the last wide read (or the load) began; None: not loaded
        self._generation += 1  # a kept search is of an older copy
        self._kept: tuple[Any, int, list[tuple[Hit, SymptomRecord]], bool] | None = None
        self._n = 0
        self._matrix = np.zeros((0, self.dims), dtype=np.float16)
        self._row_ids = np.zeros(0, dtype=np.int64)
        self._created = np.zeros(0, dtype=np.float64)
        self._updated = np.zeros(0, dtype=np.float64)
        self._written = np.zeros(0, dtype=np.float64)  # the row's indexed_at: an unchanged re-read is skipped
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._alive = np.zeros(0, dtype=bool)
        # What this process last wrote of a row's other fields (``_fields_of``), by position, until a sync
        # brings another write of the row: a ticket whose update changed none of them is not written again.
        self._fields: dict[int, int] = {}
        self._keys: list[TicketRef] = []
        self._orgs: list[str | None] = []
        self._texts: list[str] = []  # lexical matcher only: it scores texts, not vectors
        self._pos: dict[int, int] = {}
        self._by_key: dict[TicketRef, int] = {}
        self._last_started = datetime.min.replace(tzinfo=UTC)  # when the last sync began
        self._rows: LRUCache[int, SymptomRecord] = LRUCache(ROW_CACHE_SIZE)
        self._tickets: LRUCache[int, tuple[SymptomRecord, Ticket]] = LRUCache(ROW_CACHE_SIZE)
        # (when read, the claim): the index's "filled" state as last read; forgotten with the copy.
        self.filled_since: tuple[datetime, datetime] | None = None
        self._loaded_by = os.getpid()

    def __len__(self) -> int:
        with self._lock:
            return int(self._alive[: self._n].sum())

    @property
    def nbytes(self) -> int:
        """Memory of the arrays (the matrix dominates: 768 bytes a ticket for all-MiniLM-L6-v2)."""
        with self._lock:
            arrays = (self._matrix, self._row_ids, self._created, self._updated, self._written, self._hashes)
            return int(sum(a.nbytes for a in arrays) + self._alive.nbytes)

    # -- writing ---------------------------------------------------------------------------------

    def add(
        self,
        store: Store,
        tickets: Iterable[Mapping[str, Any] | Ticket],
        *,
        source: str = SOURCE,
        synced: bool = False,
    ) -> int:
        """Index tickets, Zendesk-shaped or already neutral (a JSM request's ``Case.ticket``), new or
        changed ones only; returns how many rows were written. ``synced``: the caller has just synced."""
        if not synced:
            self.sync(store)
        entries: list[tuple[Ticket, str, str, str, str, int]] = []
        seen: set[str] = set()
        with self._lock:
            for item in tickets:
                ticket = item if isinstance(item, Ticket) else _neutral(item)
                if ticket is None or ticket.id in seen:
                    continue
                seen.add(ticket.id)
                subject, description, text = entry_text(
                    {"subject": ticket.subject, "description": ticket.description}
                )
                digest = hashlib.sha256(f"{self.name}\n{text}".encode()).hexdigest()
                pos = self._by_key.get(TicketRef(source, ticket.id))
                updated = _epoch(ticket.updated_at)
                fields = _fields_of(ticket)
                if (
                    pos is not None
                    and int(self._hashes[pos]) == _h64(digest)
                    and (not updated > self._updated[pos] or self._fields.get(pos) == fields)
                ):
                    continue  # unchanged since it was indexed, or changed in nothing the index keeps
                entries.append((ticket, subject, description, text, digest, fields))
        if not entries:
            return 0
        tickets_ = [e[0] for e in entries]
        live = [i for i, t in enumerate(tickets_) if t.status != DELETED]
        vectors = self._embed([entries[i][3] for i in live])
        embeddings: dict[int, bytes] = {}
        if vectors is not None:
            embeddings = {i: vectors[k].astype(np.float32).tobytes() for k, i in enumerate(live)}
        rows = [
            SymptomEntry(
                source=source,
                ticket_id=ticket.id,
                subject=subject,
                description=description,
                text_hash=digest,
                matcher=self.name,
                embedding=embeddings.get(i),
                organization_id=ticket.organization_id,
                requester_id=ticket.requester_id,
                status=ticket.status,
                tags=tuple(sorted(ticket.tags)),
                custom_fields=dict(ticket.custom_fields),
                created_at=ticket.created_at,
                updated_at=ticket.updated_at,
            )
            for i, (ticket, subject, description, _text, digest, _fields) in enumerate(entries)
        ]
        written = store.upsert_symptoms(rows)
        fields = {e[0].id: e[5] for e in entries}
        with self._lock:  # the rows as stored, without reading them back in a second sync
            self._take(store, written)
            for row in written:
                if (pos := self._pos.get(row.id)) is not None and row.ticket_id in fields:
                    self._fields[pos] = fields[row.ticket_id]
                self._rows[row.id] = row  # whole: the next report of this symptom finds it without a read
        return len(rows)

    def _embed(self, texts: list[str]) -> np.ndarray | None:
        if not self.semantic or not texts:
            return None
        return np.asarray(self.matcher.embed(texts), dtype=np.float32)  # type: ignore[attr-defined]

    # -- syncing ---------------------------------------------------------------------------------

    def sync(self, store: Store, *, now: datetime | None = None) -> int:
        """Bring this process's copy up to the database, reading in pages; returns the rows read.

        A full reload now and then drops what was pruned; one happens at once when the table was emptied
        or restored (its highest id is below one this copy has seen)."""
        now = now or datetime.now(UTC)
        with self._lock:
            started = datetime.now(UTC)
            # A forked job process keeps its parent's copy and reads only what changed: a full reload
            # there would cost every job the whole load.
            own = self._loaded_by == os.getpid()
            stale = self._loaded_at is None or (own and now - self._loaded_at > FULL_RELOAD_EVERY)
            stamps = None
            wide = True
            if not stale and self._wide_at is not None:
                # A wide read starts a little before the last one began: a row stamped earlier whose
                # transaction committed after that read is not missed.
                since = self._wide_at - SYNC_OVERLAP
                wide = started - self._wide_at >= WIDE_SYNC_EVERY
                if not wide:
                    since = max(since, self._last_started - NARROW_OVERLAP)
                highest, stamps = store.symptom_changes(since)
                stale = bool(self._n) and highest < int(self._row_ids[: self._n].max())
            if stale:
                self._clear()
                expected = store.count_symptoms()
                self._grow(expected + expected // 8)  # room for a few days of new tickets
                # Last: until here, a sync cut short leaves the copy to be cleared and loaded again.
                self._loaded_at, self._loaded_by = now, os.getpid()
            if self._wide_at is None:
                total = self._load(store)
            else:
                assert stamps is not None  # a copy that has synced is either stale (cleared) or read them
                total = self._catch_up(stamps, store)
            if stale or wide:
                self._wide_at = started
            self._last_started = started
            return total

    def _load(self, store: Store) -> int:
        """Every row, page by page in write order."""
        at, after_id = None, None
        total = 0
        while True:
            rows = store.symptom_rows_since(at, after_id=after_id, limit=SYNC_PAGE)
            if not rows:
                break
            self._take(store, rows)
            total += len(rows)
            at, after_id = rows[-1].indexed_at, rows[-1].id
            if len(rows) < SYNC_PAGE:
                break
        return total

    def _catch_up(self, stamps: Sequence[tuple[int, datetime]], store: Store) -> int:
        """The rows among ``stamps`` (id, when written: those written since the last sync) that this copy
        does not hold as written. The overlap makes each sync see the last seconds' rows again, most of
        them already here (this process wrote them, or read them last time): only the rest are read."""
        wanted = [
            row_id
            for row_id, written in stamps
            if (pos := self._pos.get(row_id)) is None or self._written[pos] != written.timestamp()
        ]
        total = 0
        for start in range(0, len(wanted), SYNC_PAGE):
            rows = store.symptom_sync_rows(wanted[start : start + SYNC_PAGE])
            self._take(store, rows)
            total += len(rows)
        return total

    def _take(self, store: Store, rows: Sequence[SymptomRecord]) -> None:
        try:
            self._put(rows)
            if not self.semantic:
                self._load_texts(store, [r.id for r in rows])
        except BaseException:
            # A job's timeout is raised inside its thread wherever it is: cut short, the arrays, the
            # lists and the maps are out of step (or rows are left without their text, and a later sync
            # skips them as read). Matching against that would name the wrong tickets or miss some; the
            # next sync loads the copy again instead.
            self._clear()
            raise

    def _put(self, rows: Sequence[SymptomRecord]) -> None:
        self._generation += 1
        fresh = []
        for r in rows:
            pos = self._pos.get(r.id)
            if pos is None:
                fresh.append(r)
            elif self._written[pos] != r.indexed_at.timestamp():
                self._set(pos, r)
        if not fresh:
            return
        start, end = self._n, self._n + len(fresh)
        self._grow(end)
        for offset, r in enumerate(fresh):
            pos = start + offset
            ref = TicketRef(sys.intern(r.source), r.ticket_id)
            old = self._by_key.get(ref)
            if old is not None:  # the same ticket under a new row id (deleted and indexed again)
                self._alive[old] = False
            self._pos[r.id] = pos
            self._by_key[ref] = pos
            self._keys.append(ref)
            self._orgs.append(sys.intern(r.organization_id) if r.organization_id else None)
            self._texts.append("")
        self._n = end
        self._row_ids[start:end] = [r.id for r in fresh]
        self._created[start:end] = [_epoch(r.created_at) for r in fresh]
        self._updated[start:end] = [_epoch(r.updated_at) for r in fresh]
        self._written[start:end] = [r.indexed_at.timestamp() for r in fresh]
        self._hashes[start:end] = np.array([_h64(r.text_hash) for r in fresh], dtype=np.uint64)
        usable = [i for i, r in enumerate(fresh) if self._usable(r)]
        self._alive[start:end] = False
        if usable:
            at = np.asarray(usable, dtype=np.int64) + start
            self._alive[at] = True
            if self.semantic:
                blob = b"".join(fresh[i].embedding or b"" for i in usable)
                self._matrix[at] = np.frombuffer(blob, dtype=np.float32).reshape(len(usable), self.dims)

    def _set(self, pos: int, r: SymptomRecord) -> None:
        self._fields.pop(pos, None)  # written since by another process: what it holds is unknown here
        ref = TicketRef(r.source, r.ticket_id)
        if self._keys[pos] != ref:  # cannot happen unless ids were reused; keep the copy consistent
            self._by_key.pop(self._keys[pos], None)
            self._keys[pos] = ref
            self._by_key[ref] = pos
        self._orgs[pos] = r.organization_id
        self._hashes[pos] = np.uint64(_h64(r.text_hash))
        self._updated[pos] = _epoch(r.updated_at)
        self._written[pos] = r.indexed_at.timestamp()
        self._created[pos] = _epoch(r.created_at)
        usable = self._usable(r)
        if usable and self.semantic:
            self._matrix[pos] = np.frombuffer(r.embedding or b"", dtype=np.float32)
        self._alive[pos] = usable

    def _usable(self, r: SymptomRecord) -> bool:
        if r.matcher != self.name:
            return False  # embedded by another model: not comparable (a backfill embeds it again)
        if self.semantic:
            return r.embedding is not None and len(r.embedding) == self.dims * 4
        return True

    def _grow(self, needed: int) -> None:
        capacity = len(self._row_ids)
        if needed <= capacity:
            return
        new = max(needed, capacity + capacity // 2, 1024)
        matrix = np.zeros((new, self.dims), dtype=np.float16)
        matrix[: self._n] = self._matrix[: self._n]
        self._matrix = matrix
        for name in ("_row_ids", "_created", "_updated", "_written", "_hashes", "_alive"):
            old = getattr(self, name)
            grown = np.zeros(new, dtype=old.dtype)
            grown[: self._n] = old[: self._n]
            setattr(self, name, grown)

    def _load_texts(self, store: Store, ids: list[int]) -> None:
        for row in store.symptom_rows(ids):
            pos = self._pos.get(row.id)
            if pos is not None:
                self._texts[pos] = _row_text(row)

    # -- querying --------------------------------------------------------------------------------

    def vector(self, text: str) -> np.ndarray | None:
        vectors = self._embed([text])
        return vectors[0] if vectors is not None else None

    def _scores(self, text: str, vector: np.ndarray | None, n: int) -> np.ndarray:
        if not self.semantic:
            return np.asarray(self.matcher.scores(text, self._texts[:n]), dtype=np.float32)
        assert vector is not None
        query = np.ascontiguousarray(vector, dtype=np.float16)
        if self._torch is not None:
            torch = self._torch
            rows = min(len(self._matrix), -(-n // SHAPE_STEP) * SHAPE_STEP)
            scope = one_torch_thread(torch) if rows < ONE_THREAD_BELOW_ROWS else contextlib.nullcontext()
            with scope:
                product = torch.mv(torch.from_numpy(self._matrix[:rows]), torch.from_numpy(query))
            return product[:n].float().numpy()
        return self._matrix[:n].astype(np.float32) @ query.astype(np.float32)

    def query(
        self,
        text: str,
        *,
        vector: np.ndarray | None = None,
        since: datetime | None = None,
        exclude: TicketRef | None = None,
        threshold: float | None = None,
        limit: int = HISTORY_LIMIT,
    ) -> list[Hit]:
        """Candidates with the same symptom as ``text``, best first: created since ``since`` (or of unknown
        age), scoring (in half precision) within ``COARSE_SLACK`` of the threshold (the matcher's by
        default) or above. ``matches`` turns them into exact matches."""
        cutoff = (self.matcher.threshold if threshold is None else threshold) - COARSE_SLACK
        if self.semantic and vector is None:
            vector = self.vector(text)
        with self._lock:
            n = self._n
            if n == 0:
                return []
            scores = self._scores(text, vector, n)
            hits = np.flatnonzero(scores >= cutoff)  # a few dozen of 100,000: the rest is cheap
            keep = self._alive[hits]
            if since is not None:
                created = self._created[hits]
                keep &= (created >= since.timestamp()) | np.isnan(created)
            if exclude is not None and exclude in self._by_key:
                keep &= hits != self._by_key[exclude]
            hits = hits[keep]
            ordered = hits[np.argsort(-scores[hits], kind="stable")][:limit]
            # Python values in bulk: a grouped symptom's search returns hundreds, and numpy's scalars
            # cost a conversion each.
            keys, orgs = self._keys, self._orgs
            columns = zip(
                ordered.tolist(),
                self._row_ids[ordered].tolist(),
                self._created[ordered].tolist(),
                scores[ordered].tolist(),
                strict=True,
            )
            return [
                Hit(row_id, keys[i], orgs[i], None if math.isnan(created) else _moment(created), score)
                for i, row_id, created, score in columns
            ]

    def matches(
        self,
        store: Store,
        text: str,
        *,
        vector: np.ndarray | None = None,
        since: datetime | None = None,
        exclude: TicketRef | None = None,
        threshold: float | None = None,
        limit: int = HISTORY_LIMIT,
    ) -> list[tuple[Hit, SymptomRecord]]:
        """Indexed tickets at or above the threshold, best first, with their rows: the candidates of
        ``query`` scored again in float32 from the store's vectors (the rules' own arithmetic).

        A job asks twice for one text: its history (``since``) and its group (all time). Both come from
        one all-time search, kept until the copy changes, whenever that search was not cut short by
        ``limit``: the window's matches are then exactly those of it created since ``since``."""
        wanted = self.matcher.threshold if threshold is None else threshold
        if vector is None:  # a caller's own vector is not what the kept search was made with
            found, whole = self._all_time(store, text, exclude, wanted, limit)
            if since is None:
                return found[:limit]
            if whole:
                moment = since.timestamp()
                return [m for m in found if _created_since(m[0], moment)][:limit]
        found, _whole = self._search(store, text, vector, since, exclude, wanted, limit)
        return found[:limit]

    def _all_time(
        self, store: Store, text: str, exclude: TicketRef | None, wanted: float, limit: int
    ) -> tuple[list[tuple[Hit, SymptomRecord]], bool]:
        key = (text, exclude, wanted, limit)
        with self._lock:
            kept = self._kept
            if kept is not None and kept[0] == key and kept[1] == self._generation:
                return kept[2], kept[3]
            generation = self._generation
        found, whole = self._search(store, text, None, None, exclude, wanted, limit)
        with self._lock:
            self._kept = (key, generation, found, whole)
        return found, whole

    def _search(
        self,
        store: Store,
        text: str,
        vector: np.ndarray | None,
        since: datetime | None,
        exclude: TicketRef | None,
        wanted: float,
        limit: int,
    ) -> tuple[list[tuple[Hit, SymptomRecord]], bool]:
        """Every match among ``query``'s first ``2 * limit`` candidates, best first, and whether those were
        all the candidates (then the list holds every match, even past ``limit``)."""
        if self.semantic and vector is None:
            vector = self.vector(text)
        cap = limit * 2
        hits = self.query(text, vector=vector, since=since, exclude=exclude, threshold=wanted, limit=cap)
        rows = self._full_rows(store, [h.row_id for h in hits])
        pairs = [(hit, rows[hit.row_id]) for hit in hits if hit.row_id in rows]
        exact = self._exact_scores([row for _hit, row in pairs], vector)
        found: list[tuple[Hit, SymptomRecord]] = []
        for (hit, row), score in zip(pairs, exact, strict=True):
            score = hit.score if score is None else score
            if score >= wanted - 1e-6:  # the rules score the same vectors; summation order may differ
                found.append((hit._replace(score=score), row))
        found.sort(key=lambda pair: -pair[0].score)
        return found, len(hits) < cap

    def _exact_scores(self, rows: Sequence[SymptomRecord], vector: np.ndarray | None) -> list[float | None]:
        """Each row's float32 cosine to ``vector`` from its stored embedding, in one product (None where a
        row has none, or with no vector)."""
        scores: list[float | None] = [None] * len(rows)
        if vector is None:
            return scores
        stored = [i for i, row in enumerate(rows) if row.embedding and len(row.embedding) == 4 * self.dims]
        if stored:
            matrix = np.frombuffer(b"".join(rows[i].embedding or b"" for i in stored), dtype=np.float32)
            exact = (matrix.reshape(len(stored), self.dims) @ vector.astype(np.float32)).tolist()
            for i, score in zip(stored, exact, strict=True):
                scores[i] = score
        return scores

    def _full_rows(self, store: Store, ids: Sequence[int]) -> dict[int, SymptomRecord]:
        """Full rows by id: from this process's cache while the copy says the row was not written
        since, from the store otherwise."""
        found: dict[int, SymptomRecord] = {}
        with self._lock:
            for row_id in ids:
                cached = self._rows.get(row_id)
                pos = self._pos.get(row_id)
                fresh = pos is not None and cached is not None
                if fresh and self._written[pos] == cached.indexed_at.timestamp():
                    found[row_id] = cached
        missing = [i for i in ids if i not in found]
        if missing:
            fetched = store.symptom_rows(missing)
            with self._lock:
                for row in fetched:
                    self._rows[row.id] = found[row.id] = row
        return found

    def rows_for(self, store: Store, refs: Iterable[TicketRef]) -> dict[TicketRef, SymptomRecord]:
        """Full rows of the given tickets that are indexed: cached ones as they are, the rest in one read."""
        wanted = list(dict.fromkeys(refs))
        with self._lock:
            at = {ref: self._by_key.get(ref) for ref in wanted}
            known = [ref for ref, pos in at.items() if pos is not None]
            row_ids = self._row_ids[[at[ref] for ref in known]].tolist() if known else []
        ids = dict(zip(known, row_ids, strict=True))  # numpy's scalars one by one cost more than the rest
        rows = self._full_rows(store, list(ids.values()))
        found = {ref: rows[row_id] for ref, row_id in ids.items() if row_id in rows}
        rest = [ref for ref in wanted if ref not in found]
        if rest:
            found.update(store.symptom_rows_for(rest))
        return found

    def history(self, rows: Sequence[SymptomRecord]) -> list[Ticket]:
        """The rows as tickets of a case's history, as the case adapter reads ``raw_from_row``'s form of
        them; each row version is converted once."""
        found: list[Ticket] = []
        with self._lock:
            for row in rows:
                kept = self._tickets.get(row.id)
                if kept is None or kept[0] is not row:  # a re-read row is a new object
                    kept = self._tickets[row.id] = (row, ticket_from_zendesk(raw_from_row(row)))
                found.append(kept[1])
        return found

    def remember(self, rows: Sequence[SymptomRecord]) -> None:
        """Hand the rows' stored vectors to the matcher's cache: the rules then score them without running
        the model again (in a forked job process the cache starts empty)."""
        remember = getattr(self.matcher, "remember", None)
        usable = [r for r in rows if self._usable(r) and r.embedding]
        if remember is None or not usable or not self.semantic:
            return
        texts = [_row_text(r) for r in usable]
        vectors = np.frombuffer(b"".join(r.embedding or b"" for r in usable), dtype=np.float32)
        remember(texts, vectors.reshape(len(usable), self.dims))


# -- one copy per process and matcher --------------------------------------------------------------

_indexes: dict[tuple[str, str], SymptomIndex] = {}
_registry_lock = threading.Lock()


def index_for(store: Store, matcher: SymptomMatcher) -> SymptomIndex:
    """This process's index for the store's database and the matcher (built empty; syncs on use).

    Keyed by the database URL, not the Store object: a forked job process builds its own Store but keeps
    the copy its parent loaded before the fork (``preload``), and syncs only what changed since."""
    key = (store.engine.url.render_as_string(hide_password=True), matcher.name)
    with _registry_lock:
        index = _indexes.get(key)
        if index is None:
            index = _indexes[key] = SymptomIndex(matcher)
        index.matcher = matcher  # the same model; the threshold may differ after a rules reload
        return index


def reset_indexes() -> None:
    """Forget every in-memory copy (they rebuild from the database on next use)."""
    with _registry_lock:
        _indexes.clear()


def preload(database_url: str, matcher: SymptomMatcher) -> int:
    """Load the index in a forking worker's main process, before the fork (``worker.jobs.preload``): every
    job process then starts from this copy and reads only what changed since. The connection is closed
    again before this returns, so nothing database-side crosses the fork."""
    store = Store.from_url(database_url)
    try:
        index = index_for(store, matcher)
        index.sync(store)
        return len(index)
    finally:
        store.dispose()


def is_filled(store: Store, now: datetime, days: float, *, index: SymptomIndex | None = None) -> bool:
    """Whether the index holds every ticket of the last ``days``. With ``index`` (synced just before), a
    claim read less than ``FILLED_RECHECK`` ago is used instead of reading it for every ticket: a claim
    only ever moves earlier, and an emptied table clears the copy and the claim with it."""
    cached = index.filled_since if index is not None else None
    if cached is not None and timedelta(0) <= now - cached[0] < FILLED_RECHECK:
        since: datetime | None = cached[1]
    else:
        state = store.index_state(FILLED) or {}
        try:
            since = datetime.fromisoformat(state["since"]) if state.get("since") else None
        except (TypeError, ValueError):
            since = None
        if index is not None and since is not None:
            index.filled_since = (now, since)
    return since is not None and since <= now - timedelta(days=days)


def mark_filled(store: Store, since: datetime) -> None:
    """Record that the index holds every ticket created since ``since`` (keeps the earliest claim)."""
    state = store.index_state(FILLED) or {}
    current = state.get("since")
    if current is None or datetime.fromisoformat(current) > since:
        store.set_index_state(FILLED, {"since": since.astimezone(UTC).isoformat()})


# -- what assessment calls ---------------------------------------------------------------------------


def fetch_bundle(
    ctx: Any, ticket_id: int, *, now: datetime | None = None, ticket: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The case bundle for ``ticket_id``, its history from the index when the index covers the lookback
    window (or is forced on), from Zendesk's search otherwise; either way the ticket (and, on the Zendesk
    path, its history) is indexed."""
    bundle, rows = _fetch(ctx, ticket_id, now=now, ticket=ticket)
    if rows is not None:
        bundle["history"] = [raw_from_row(r) for r in rows]
    return bundle


def _fetch(
    ctx: Any, ticket_id: int, *, now: datetime | None = None, ticket: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[SymptomRecord] | None]:
    """``fetch_bundle``'s work: the bundle, and the index's rows that are its history when they came from
    the index (the bundle then has no ``history`` yet); None when Zendesk's search gave the history."""
    from worker.runtime import runtime_for

    rt = runtime_for(ctx.settings)
    now = now or datetime.now(UTC)
    days = rt.rules.thresholds.lookback_days
    index = index_for(ctx.store, rt.matcher)
    index.sync(ctx.store)  # first: an emptied table must not look filled
    chosen = mode()
    use_index = chosen == "index" or (chosen == "auto" and is_filled(ctx.store, now, days, index=index))
    if not use_index:
        bundle = rt.zendesk.fetch_bundle(ticket_id, history_days=int(days), ticket=ticket)
        history = list(bundle.get("history") or [])
        index.add(ctx.store, [bundle["ticket"], *history], synced=True)
        if "history" in bundle and len(history) < _history_limit():
            # The search returned the whole window: from now on the index has every ticket of it.
            mark_filled(ctx.store, now - timedelta(days=int(days)))
        return bundle, None
    bundle = rt.zendesk.fetch_bundle(ticket_id, history_days=0, ticket=ticket)
    neutral = _neutral(bundle["ticket"])  # converted once: indexed, then searched for
    if neutral is not None:
        index.add(ctx.store, [neutral], synced=True)
    ref = TicketRef.of(SOURCE, ticket_id)
    text = neutral.text if neutral is not None else ""
    found = index.matches(ctx.store, text, since=now - timedelta(days=days), exclude=ref) if text else []
    rows = [row for _hit, row in found]
    index.remember(rows)
    known = {str(o.get("id")) for o in bundle.get("organizations") or []}
    wanted = {r.organization_id for r in rows if r.organization_id and r.organization_id not in known}
    if wanted:
        bundle.setdefault("organizations", []).extend(rt.zendesk.organizations(sorted(wanted)))
    return bundle, rows


def case_of(ctx: Any, ref: TicketRef, *, ticket: dict[str, Any] | None = None) -> Case:
    """The case of a ticket from either desk: ``case_bundle`` read by its desk's adapter. History found in
    the index goes into the case as the index keeps it (``SymptomIndex.history``), not written out in
    Zendesk's shape and read back: in an outage every new report of the symptom brings its hundreds of
    tickets, and converting them cost more than judging them (2.4 ms a job for 200, against 0.1 ms)."""
    from worker.runtime import runtime_for

    rt = runtime_for(ctx.settings)
    desk = rt.desk(ref.source)
    if ref.source != SOURCE:
        return desk.case(case_bundle(ctx, ref))
    bundle, rows = _fetch(ctx, int(ref.id), ticket=ticket)
    case = desk.case(bundle)
    if rows is None:
        return case
    history = index_for(ctx.store, rt.matcher).history(rows)
    return replace(case, history=tuple(t for t in history if t.id != case.ticket.id))


def case_bundle(ctx: Any, ref: TicketRef, *, ticket: dict[str, Any] | None = None) -> dict[str, Any]:
    """The case bundle of a ticket from either desk. Zendesk: ``fetch_bundle`` (history from the index
    once filled; ``ticket`` when just read). Other desks (JSM) bring their own history (JQL); their
    ticket joins the index all the same, so later reports of its symptom find it."""
    if ref.source == SOURCE:
        return fetch_bundle(ctx, int(ref.id), ticket=ticket)
    from worker.runtime import runtime_for

    rt = runtime_for(ctx.settings)
    desk = rt.desk(ref.source)
    bundle = desk.fetch_bundle(ref.id, history_days=int(rt.rules.thresholds.lookback_days))
    index_for(ctx.store, rt.matcher).add(ctx.store, [desk.case(bundle).ticket], source=ref.source)
    return bundle


def _history_limit() -> int:
    from connector.zendesk_bundle import DEFAULT_HISTORY_LIMIT

    return DEFAULT_HISTORY_LIMIT
