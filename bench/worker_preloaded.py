"""`escalate worker` with the pipeline preloaded before RQ forks its job processes (worker.jobs.preload).

What the production command does once ``worker/cli_jobs.py``'s ``cmd_worker`` calls ``jobs.preload()``
before ``worker.work(...)``; used by ``bench_pipeline.py --worker fork-preloaded`` to measure that.

    python bench/worker_preloaded.py [--burst] [--queue NAME]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker import jobs
from worker.cli import main

if __name__ == "__main__":
    jobs.preload()
    sys.exit(main(["worker", *sys.argv[1:]]))
