"""Read a ``PROMETHEUS_MULTIPROC_DIR`` that many processes write, folding finished processes into an archive.

prometheus_client's own ``MultiProcessCollector`` reads every file in the directory on every scrape and
never forgets one. An RQ worker forks a work horse per job, so that is a file or two more per job,
forever: the scrape gets slower every day. Here, under an exclusive lock on the directory, each scrape
first folds the files of processes that have ended (their lock is free: see ``connector/metrics.py``) into
one archive per metric type, then reads the archive plus the files of the living.

Folding is crash-safe: the new archive is written under a new generation number, and ``archive.json``
(replaced atomically) names the current generation and the processes it already contains. Until that
rename nothing changed; after it, any leftover file of a folded process or an older generation is
deleted, never counted again.

Only counters, histograms and summaries are folded (their samples add up across processes). Escalate
keeps no gauges in processes: its gauges (queue depth and age) are computed from Redis at scrape time.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from connector.metrics import IDENT_RE, LOCK_SUFFIX

MANIFEST = "archive.json"
DIR_LOCK = ".folding.lock"
FOLDED_MARK = ".folded"
FOLDED_TYPES = ("counter", "histogram", "summary")
# How often a job process folds its finished predecessors, whether or not anything scrapes: without it
# a worker nobody scrapes would leave a file per job behind, in a directory that is usually tmpfs.
FOLD_EVERY_SECONDS = 30.0


class DirectoryCollector:
    """A prometheus_client collector over a multi-process directory."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        with self._locked():
            manifest = self._fold()
            files = self._archive_files(manifest["generation"])
            folded = set(manifest["folded"])
            for name in self._db_files():
                ident = _ident_of(name)
                if ident is None or ident not in folded:
                    files.append(os.path.join(self.path, name))
            return list(MultiProcessCollector.merge(files, accumulate=True))

    # -- folding ----------------------------------------------------------------------------------

    def fold(self) -> dict[str, Any]:
        """Fold finished processes now; returns the manifest (tests and ``escalate doctor`` use it)."""
        with self._locked():
            return self._fold()

    def _fold(self) -> dict[str, Any]:
        manifest = self._read_manifest()
        self._remove_leftovers(manifest)
        dead: list[str] = []
        locks: list[Any] = []
        try:
            for ident in sorted(self._idents()):
                lock = self._claim_if_dead(ident)
                if lock is not None:
                    dead.append(ident)
                    locks.append(lock)
            if not dead:
                return manifest
            generation = manifest["generation"] + 1
            for typ in FOLDED_TYPES:
                sources = self._archive_files(manifest["generation"], typ) + [
                    os.path.join(self.path, f"{typ}_{ident}.db") for ident in dead
                ]
                sources = [s for s in sources if os.path.exists(s)]
                if sources:
                    _write_archive(os.path.join(self.path, f"{typ}_archive.{generation}.db"), sources)
            still_there = [i for i in manifest["folded"] if self._has_files(i)]
            new = {"generation": generation, "folded": sorted(set(dead) | set(still_there))}
            self._write_manifest(new)  # the commit point
            self._remove_leftovers(new)
            return new
        finally:
            for lock in locks:
                lock.close()

    def _claim_if_dead(self, ident: str) -> Any:
        """The process's lock file, locked by us, if its owner has ended; None while it lives."""
        path = os.path.join(self.path, ident + LOCK_SUFFIX)
        try:
            handle = open(path, "a")  # noqa: SIM115  (closed by _fold)
        except FileNotFoundError:
            return _Nothing()  # no lock file: the process is gone (or never was one of ours)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle

    def _remove_leftovers(self, manifest: dict[str, Any]) -> None:
        """Files the manifest says are folded, and archives of other generations: never read again."""
        folded = set(manifest["folded"])
        current = f".{manifest['generation']}.db"
        for name in os.listdir(self.path):
            ident = _ident_of(name) or (name[: -len(LOCK_SUFFIX)] if name.endswith(LOCK_SUFFIX) else None)
            stale_archive = "_archive." in name and not name.endswith(current)
            if (ident is not None and ident in folded) or stale_archive:
                _remove(os.path.join(self.path, name))

    # -- the directory ------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(os.path.join(self.path, DIR_LOCK), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _db_files(self) -> list[str]:
        return sorted(
            os.path.basename(p)
            for p in glob.glob(os.path.join(self.path, "*.db"))
            if "_archive." not in os.path.basename(p)
        )

    def _idents(self) -> set[str]:
        found = {_ident_of(name) for name in self._db_files()}
        found |= {
            name[: -len(LOCK_SUFFIX)]
            for name in os.listdir(self.path)
            if name.endswith(LOCK_SUFFIX) and IDENT_RE.fullmatch(name[: -len(LOCK_SUFFIX)])
        }
        found.discard(None)
        return found  # type: ignore[return-value]

    def _has_files(self, ident: str) -> bool:
        return any(_ident_of(name) == ident for name in self._db_files())

    def _archive_files(self, generation: int, typ: str | None = None) -> list[str]:
        types = (typ,) if typ else FOLDED_TYPES
        names = (os.path.join(self.path, f"{t}_archive.{generation}.db") for t in types)
        return [n for n in names if os.path.exists(n)]

    def _read_manifest(self) -> dict[str, Any]:
        try:
            with open(os.path.join(self.path, MANIFEST), encoding="utf-8") as handle:
                data = json.load(handle)
            return {"generation": int(data["generation"]), "folded": list(data["folded"])}
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return {"generation": 0, "folded": []}

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        final = os.path.join(self.path, MANIFEST)
        temporary = final + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)


def fold_if_due(path: str, every: float = FOLD_EVERY_SECONDS) -> bool:
    """Fold finished processes if nobody did in the last ``every`` seconds; never waits for the lock.

    Called after each job (worker/metrics.py): cheap (one ``stat``) when not due, and a job never
    blocks on a scrape that holds the directory.
    """
    mark = os.path.join(path, FOLDED_MARK)
    try:
        if time.time() - os.stat(mark).st_mtime < every:
            return False
    except FileNotFoundError:
        pass
    with open(os.path.join(path, DIR_LOCK), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a scrape or another job is folding right now
        DirectoryCollector(path)._fold()
    with open(mark, "a"):
        os.utime(mark)
    return True


class _Nothing:
    """Stands in for a lock file that does not exist."""

    def close(self) -> None:
        pass


def _ident_of(name: str) -> str | None:
    """``counter_esc.host.12.ab12cd34.db`` → ``esc.host.12.ab12cd34``; None for files not named by us."""
    if not name.endswith(".db") or "_" not in name:
        return None
    ident = name[:-3].split("_", 1)[1]
    if ident.startswith(("live", "all", "min", "max", "sum", "mostrecent")) and "_" in ident:
        ident = ident.split("_", 1)[1]  # gauge_<mode>_<ident>.db
    return ident if IDENT_RE.fullmatch(ident) else None


def _write_archive(target: str, sources: list[str]) -> None:
    """The sum of ``sources`` (files of one type), written in prometheus_client's own file format."""
    temporary = target + ".tmp"
    _remove(temporary)
    merged = MultiProcessCollector.merge(sources, accumulate=False)  # raw buckets, as the files hold them
    archive = MmapedDict(temporary)
    try:
        for metric in merged:
            for sample in metric.samples:
                labels = dict(sample.labels)
                key = mmap_key(
                    metric.name, sample.name, tuple(labels), tuple(labels.values()), metric.documentation
                )
                archive.write_value(key, sample.value, 0.0)
    finally:
        archive.close()
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def _remove(path: str) -> None:
    with suppress(FileNotFoundError):
        os.remove(path)
