"""Webhook intake under load: requests/s and latency of POST /webhooks/zendesk (verify the signature,
dedupe, enqueue on Redis), served by gunicorn with the shipped config, load from wrk in its own process.

    python bench/bench_intake.py                                  # wrk -t1, 8/16/32 connections, 20 s each
    python bench/bench_intake.py --connections 16 --duration 60

Every request is a new, correctly signed delivery (its own invocation id, signed in advance: see
bench/wrk_signed.lua), so each one takes the full path: HMAC check, timestamp check, JSON parse, building
the RQ job, and the intake's Redis script (dedupe mark lookup, unique enqueue, mark write: one round
trip, worker/intake.py). After each run the bench checks that the queue holds exactly one job per 202
answer.

Redis: a private redis-server on a spare port (no persistence), flushed between runs; or --redis-url
(then the bench only deletes its own queue and marks, never the database). The database is only
migrated at start (the intake does not touch it). gunicorn: deploy/gunicorn.conf.py as shipped (sync
workers, WEB_CONCURRENCY or cores + 1, access log on unless ESCALATE_ACCESS_LOG says otherwise), its
output to a log file, and PROMETHEUS_MULTIPROC_DIR set to a fresh directory as every deployment sets
it (deploy/), so the metrics cost what they cost in production. wrk, gunicorn and Redis share this
machine's cores, which the figures include.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ROOT,
    WEBHOOK_SECRET,
    CpuMeter,
    database,
    load_average,
    machine,
    pids_matching,
    print_machine,
    redis_server,
    spare_port,
    stop_process,
    trigger_body,
    wait_for,
)
from redis import Redis

from connector.http.signing import sign_zendesk

TARGET_RPS = 1500.0
TARGET_P99_MS = 25.0
# Requests signed in advance per second of run: above what 2 cores can serve, so nothing repeats.
SIGNED_PER_SECOND = 4000


def write_signed(path: Path, count: int, run: str) -> None:
    """``count`` signed deliveries, one per line, for wrk_signed.lua. Ticket ids vary like a desk's."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with path.open("w") as out:
        for n in range(count):
            body = trigger_body(1000 + n % 5000)
            signature = sign_zendesk(WEBHOOK_SECRET, stamp, body)
            out.write(f"{stamp}\t{signature}\t{run}-{n}\t{body.decode()}\n")


def run_wrk(url: str, script: Path, signed: Path, *, threads: int, connections: int, duration: int) -> dict:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s",
            "-s", str(script), url, "--", str(signed), str(threads)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line.removeprefix("WRK_JSON "))
    output = (done.stdout + done.stderr)[-3000:]
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {output}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", default="8,16,32", help="comma-separated wrk -c values")
    parser.add_argument("--duration", type=int, default=20, help="seconds per run (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (default: %(default)s)")
    parser.add_argument("--web-concurrency", type=int, help="gunicorn workers (default: the config's)")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--redis-url", help="an existing Redis (default: a private redis-server)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2

    info = machine()
    print_machine(info)
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    work = Path(tempfile.mkdtemp(prefix="escalate-bench-intake-"))
    port = spare_port()
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    results = []
    gunicorn = None
    with redis_server(args.redis_url) as redis_url, database(args.database) as database_url:
        metrics_dir = work / "metrics"
        metrics_dir.mkdir()
        env = {**os.environ, "ZENDESK_WEBHOOK_SECRET": WEBHOOK_SECRET, "REDIS_URL": redis_url,
               "DATABASE_URL": database_url, "ESCALATE_QUEUE": queue, "PYTHONPATH": str(ROOT),
               "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        if args.web_concurrency:
            env["WEB_CONCURRENCY"] = str(args.web_concurrency)
        log = (work / "gunicorn.log").open("w")
        config = ROOT / "deploy" / "gunicorn.conf.py"
        argv = [sys.executable, "-m", "gunicorn", "-c", str(config), "--bind", f"127.0.0.1:{port}",
                "worker.app:create_app()"]
        try:
            gunicorn = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{port}"
            ready = f"{base}/readyz"
            wait_for(lambda: urllib.request.urlopen(ready, timeout=2).status == 200, "gunicorn", 60)
            shipped = _gunicorn_settings(config, env)
            print(f"gunicorn: {shlex.join(['gunicorn', *argv[3:]])}: {shipped['worker_class']} workers x "
                  f"{shipped['workers']}, access log {'on' if shipped['accesslog'] else 'off'}, "
                  f"PROMETHEUS_MULTIPROC_DIR set")
            print(f"intake: {base}, Redis {'given' if args.redis_url else 'private redis-server'}, wrk "
                  f"-t{args.threads} -c<connections> -d{args.duration}s --latency -s bench/wrk_signed.lua, "
                  f"every request a new signed delivery")
            redis = Redis.from_url(redis_url)
            from rq import Queue

            rq_queue = Queue(queue, connection=redis)
            port_of_redis = redis.connection_pool.connection_kwargs.get("port")
            redis_pids = pids_matching("redis-server", f":{port_of_redis}")
            for connections in [int(c) for c in args.connections.split(",") if c.strip()]:
                run = f"bench{uuid.uuid4().hex[:8]}"
                signed = work / f"{run}.tsv"
                write_signed(signed, SIGNED_PER_SECOND * args.duration, run)
                # A short warm-up so each gunicorn worker has its Redis connection and imports done.
                run_wrk(f"{base}/webhooks/zendesk", ROOT / "bench" / "wrk_signed.lua", signed,
                        threads=1, connections=connections, duration=1)
                time.sleep(1)  # gunicorn finishes the requests wrk left in flight before the reset
                _reset(redis, rq_queue, args.redis_url is None)
                write_signed(signed, SIGNED_PER_SECOND * args.duration, run + "m")
                groups = {"gunicorn": [gunicorn.pid], "redis": redis_pids}
                with CpuMeter(groups) as meter:
                    result = run_wrk(f"{base}/webhooks/zendesk", ROOT / "bench" / "wrk_signed.lua", signed,
                                     threads=args.threads, connections=connections, duration=args.duration)
                result["cpu"] = meter.summary().replace("its children", "wrk")
                served = sum(result["status"].values())
                result["cpu_per_request_us"] = meter.per_item_ms("gunicorn", served) * 1000
                result["connections"] = connections
                result["queued"] = len(rq_queue)
                results.append(result)
                _reset(redis, rq_queue, args.redis_url is None)
                signed.unlink()
                _print_row(result)
        finally:
            stop_process(gunicorn, timeout=30)
            log.close()
    shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"load average at the end: {load_average()} (anything else running on the machine shows here)")
    met = [r for r in results if _rps(r) >= TARGET_RPS and r["latency_us"]["p99"] / 1000 < TARGET_P99_MS
           and _clean(r)]
    for r in results:
        if not _consistent(r):
            print(f"MISMATCH at -c{r['connections']}: {r['status']['202']} accepted but {r['queued']} queued")
    verdict = f"met at -c{', -c'.join(str(r['connections']) for r in met)}" if met else "NOT met"
    print(f"target >= {TARGET_RPS:g} requests/s with p99 < {TARGET_P99_MS:g} ms: {verdict}")
    return 0 if all(_clean(r) and _consistent(r) for r in results) else 1


def _gunicorn_settings(config: Path, env: dict[str, str]) -> dict:
    """What the gunicorn config resolves to in the bench's environment, read in a process of its own."""
    code = ("import json, runpy, sys; ns = runpy.run_path(sys.argv[1]); "
            "print(json.dumps({k: ns[k] for k in ('workers', 'worker_class', 'accesslog')}))")
    done = subprocess.run([sys.executable, "-c", code, str(config)], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def _reset(redis: Redis, rq_queue, private: bool) -> None:
    if private:
        redis.flushdb()  # our own redis-server
        return
    rq_queue.empty()
    for key in redis.scan_iter("escalate:delivery:zendesk-bench*", count=1000):
        redis.delete(key)


def _consistent(r: dict) -> bool:
    """One job per 202; wrk stops with up to one request per connection in flight, which the service
    may still have queued without wrk counting its answer."""
    return 0 <= r["queued"] - r["status"]["202"] <= r["connections"]


def _rps(r: dict) -> float:
    return r["requests"] / (r["duration_us"] / 1e6)


def _clean(r: dict) -> bool:
    errors = sum(r["errors"].values())
    return errors == 0 and r["status"]["other"] == 0 and r["status"]["503"] == 0 and r["wrapped"] == 0


def _print_row(r: dict) -> None:
    lat = r["latency_us"]
    errors = sum(r["errors"].values())
    print(f"  -c{r['connections']:<3} {_rps(r):8.0f} req/s   p50 {lat['p50'] / 1000:6.2f} ms   p90 "
          f"{lat['p90'] / 1000:6.2f} ms   p99 {lat['p99'] / 1000:6.2f} ms   "
          f"p99.9 {lat['p999'] / 1000:6.2f} ms   "
          f"max {lat['max'] / 1000:7.2f} ms   202: {r['status']['202']}, 200: {r['status']['200']}, "
          f"503: {r['status']['503']}, other: {r['status']['other']}, socket errors: {errors}, "
          f"queued jobs: {r['queued']}", flush=True)
    print(f"        CPU (cores): {r['cpu']}; gunicorn {r['cpu_per_request_us']:.0f} us a request", flush=True)


if __name__ == "__main__":
    sys.exit(main())
