"""What the service benchmarks share: the machine they ran on, spare ports, a private redis-server, a
throwaway PostgreSQL database, the sandbox in a process of its own, and signed Zendesk deliveries.

Not a benchmark itself; ``bench_intake.py`` and ``bench_pipeline.py`` import it (run them from the
project root, e.g. ``python bench/bench_intake.py``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from connector.http.signing import sign_zendesk  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get("ESCALATE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
# The documented Zendesk test secret (DESIGN.md): a bench needs a secret, not a real one.
WEBHOOK_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
TRIGGER_TYPE = "escalate.ticket_changed"
# The seeded sandbox tickets (connector/sandbox/seed.py TICKETS), the demo's order.
SEEDED_TICKETS = (101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 120, 121, 122, 123)


# -- the machine ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on, printed with them."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    versions = {}
    for package in ("gunicorn", "rq", "redis", "flask", "sqlalchemy", "psycopg", "torch"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": _command_version(["redis-server", "--version"]),
        "wrk": _command_version(["wrk", "--version"]),
        **versions,
    }


def _command_version(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def python_speed() -> float:
    """Microseconds for ``sum(range(1000))``, the best of five (``python -m timeit``'s figure): two hosts
    naming the same CPU model gave 9.5 and 13.8, and the README quotes it with each session's figures."""
    return min(timeit.repeat("sum(range(1000))", number=10_000, repeat=5)) / 10_000 * 1e6


def print_machine(info: dict[str, Any]) -> None:
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM, Linux {info['kernel']}, "
          f"load average at the start {load_average()}, sum(range(1000)) in {python_speed():.1f} us")
    print(
        f"software: Python {info['python']}, gunicorn {info['gunicorn']}, rq {info['rq']}, "
        f"redis-py {info['redis']}, {info['redis_server'] or 'redis-server ?'}, SQLAlchemy "
        f"{info['sqlalchemy']}, psycopg {info['psycopg']}, torch {info['torch']}"
    )


# -- processes and servers -----------------------------------------------------------------------


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, what: str, timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:g} s")
        time.sleep(interval)


def stop_process(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Terminate one process we started (by its own handle), then kill it if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def redis_server(url: str | None = None) -> Iterator[str]:
    """``url`` when given (an existing Redis, used as is), else a private redis-server on a spare port
    without persistence, stopped afterwards: the shared server's data is never touched."""
    if url:
        yield url
        return
    from redis import Redis

    port = spare_port()
    directory = tempfile.mkdtemp(prefix="escalate-bench-redis-")
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = Redis(port=port, socket_connect_timeout=0.2)
        wait_for(client.ping, f"redis-server on port {port}")
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh database URL: ``postgresql`` creates one on the local server and drops it afterwards;
    ``sqlite`` is a file in a temporary directory."""
    if kind == "sqlite":
        directory = tempfile.mkdtemp(prefix="escalate-bench-db-")
        try:
            yield f"sqlite:///{directory}/escalate.sqlite3"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    from sqlalchemy import text

    from worker.store.engine import make_engine

    name = f"escalate_bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# The sandbox in a process of its own, without werkzeug's line per request, so it competes with the
# service for the CPU the way a remote Zendesk and Jira would not, but no more than it must.
_SANDBOX_MAIN = """
import logging, sys, threading
logging.getLogger("werkzeug").setLevel(logging.WARNING)
from connector.sandbox import server
running = server.start(zendesk_port=int(sys.argv[1]), jira_port=int(sys.argv[2]))
print("ready", flush=True)
threading.Event().wait()
"""


class SandboxProcess:
    def __init__(self) -> None:
        self.zendesk_port = spare_port()
        self.jira_port = spare_port()
        self.process: subprocess.Popen | None = None

    @property
    def zendesk_url(self) -> str:
        return f"http://127.0.0.1:{self.zendesk_port}"

    @property
    def jira_url(self) -> str:
        return f"http://127.0.0.1:{self.jira_port}"

    def environment(self) -> dict[str, str]:
        from connector.sandbox.common import JIRA_EMAIL, JIRA_TOKEN, ZENDESK_EMAIL, ZENDESK_TOKEN
        from connector.sandbox.seed import JIRA_ISSUE_FIELD

        return {
            "ZENDESK_URL": self.zendesk_url,
            "ZENDESK_EMAIL": ZENDESK_EMAIL,
            "ZENDESK_API_TOKEN": ZENDESK_TOKEN,
            "ZENDESK_JIRA_FIELD_ID": str(JIRA_ISSUE_FIELD),
            "JIRA_URL": self.jira_url,
            "JIRA_EMAIL": JIRA_EMAIL,
            "JIRA_API_TOKEN": JIRA_TOKEN,
        }

    def start(self) -> SandboxProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SANDBOX_MAIN, str(self.zendesk_port), str(self.jira_port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: self.state("jira") is not None, "the sandbox")
        return self

    def slow_down(self, latency_ms: int) -> None:
        """Every Zendesk and Jira call from now on is answered ``latency_ms`` later (the sandboxes' latency
        fault, until they stop)."""
        body = json.dumps({"latency_ms": latency_ms, "count": None}).encode()
        for url in (self.zendesk_url, self.jira_url):
            request = urllib.request.Request(f"{url}/_sandbox/faults", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                answer.read()

    def state(self, which: str) -> dict[str, Any]:
        url = self.jira_url if which == "jira" else self.zendesk_url
        with urllib.request.urlopen(f"{url}/_sandbox/state", timeout=10) as answer:
            return json.load(answer)

    def stop(self) -> None:
        stop_process(self.process)


# -- deliveries ------------------------------------------------------------------------------------


def trigger_body(ticket_id: int) -> bytes:
    """Our trigger's body template (deploy/zendesk/trigger_body.json), rendered for one ticket."""
    return json.dumps(
        {"type": TRIGGER_TYPE, "version": 1, "ticket_id": str(ticket_id), "status": "Open",
         "priority": "High"},
        separators=(",", ":"),
    ).encode()


def signed_headers(body: bytes, invocation_id: str, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature": sign_zendesk(secret, stamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Invocation-Id": invocation_id,
    }


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- where the CPU went --------------------------------------------------------------------------------


def _busy_jiffies() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return user + nice + system + irq + softirq + steal


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def _tree_jiffies(root: int) -> int:
    """CPU of ``root`` (with its reaped children) and of its live descendants, in clock ticks."""
    total, todo, first = 0, [root], True
    while todo:
        pid = todo.pop()
        fields = _stat(pid)
        if fields is None:
            continue
        # utime, stime (fields 14, 15), and for the root the reaped children's (16, 17).
        total += int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if first else 0)
        first = False
        todo += _children(pid)
    return total


def pids_matching(*needles: str) -> list[int]:
    """Processes whose command line contains every needle (e.g. a redis-server's port, a database's
    backends), to account for their CPU; found by what they serve, never signalled."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            cmdline = raw.replace(b"\0", b" ").decode("utf-8", "replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if all(n in cmdline for n in needles):
            found.append(int(entry))
    return found


class CpuMeter:
    """Cores used during a run: by named groups of processes (each a root with its descendants), by
    this process's waited-for children (the load generator), and by everything else on the machine —
    the kernel's network work, and anything another user ran at the same time."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups

    def __enter__(self) -> CpuMeter:
        self._start = time.monotonic()
        self._busy = _busy_jiffies()
        self._groups = {name: sum(_tree_jiffies(p) for p in pids) for name, pids in self.groups.items()}
        self._own = os.times()
        return self

    def __exit__(self, *exc: object) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        elapsed = time.monotonic() - self._start
        own = os.times()
        self.cores = {
            name: (sum(_tree_jiffies(p) for p in pids) - self._groups[name]) / tick / elapsed
            for name, pids in self.groups.items()
        }
        self.cores["this process"] = (own.user + own.system - self._own.user - self._own.system) / elapsed
        self.cores["its children"] = (
            own.children_user + own.children_system - self._own.children_user - self._own.children_system
        ) / elapsed
        busy = (_busy_jiffies() - self._busy) / tick / elapsed
        self.cores["everything else"] = max(0.0, busy - sum(self.cores.values()))
        self.elapsed = elapsed

    def per_item_ms(self, name: str, items: int) -> float:
        """CPU milliseconds the group spent per item (event, request): on a shared host whose cores run
        at varying speed, steadier from run to run than the rate."""
        return self.cores[name] * self.elapsed * 1000 / max(items, 1)

    def summary(self) -> str:
        return ", ".join(f"{name} {value:.2f}" for name, value in self.cores.items())
