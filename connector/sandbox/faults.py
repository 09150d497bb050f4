"""Switches that make a sandbox misbehave the way the real services do: 429 with Retry-After, 5xx for
the next K requests, slow answers. Shared by both sandbox apps; set from a test in-process
(``state.faults.add(...)``) or over HTTP (``POST /_sandbox/faults``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from flask import Flask, Response, jsonify, request


@dataclass
class Fault:
    # Applies to requests whose path starts with this (e.g. "/api/v2/tickets", "/rest/api/3/issue").
    prefix: str = "/"
    # Answer with this status instead of serving the request; None: serve it (latency only).
    status: int | None = None
    retry_after: float | None = None
    latency_ms: int = 0
    # How many more requests it applies to; None: until cleared.
    remaining: int | None = 1
    # Only these methods (upper case); None: all.
    methods: tuple[str, ...] | None = None

    def applies(self, method: str, path: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return path.startswith(self.prefix)


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        *,
        prefix: str = "/",
        status: int | None = None,
        retry_after: float | None = None,
        latency_ms: int = 0,
        count: int | None = 1,
        methods: list[str] | tuple[str, ...] | None = None,
    ) -> Fault:
        fault = Fault(
            prefix=prefix,
            status=status,
            retry_after=retry_after,
            latency_ms=int(latency_ms),
            remaining=count,
            methods=tuple(m.upper() for m in methods) if methods else None,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def rate_limit(self, *, retry_after: float = 30, count: int | None = 1, prefix: str = "/") -> Fault:
        return self.add(prefix=prefix, status=429, retry_after=retry_after, count=count)

    def server_errors(self, *, status: int = 500, count: int | None = 1, prefix: str = "/") -> Fault:
        return self.add(prefix=prefix, status=status, count=count)

    def latency(self, ms: int, *, count: int | None = None, prefix: str = "/") -> Fault:
        return self.add(prefix=prefix, latency_ms=ms, count=count)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def as_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def take(self, method: str, path: str) -> tuple[int, Fault | None]:
        """Total latency to add and the first status fault for this request, consuming their counts."""
        latency = 0
        failing: Fault | None = None
        with self._lock:
            for fault in self._faults:
                if not fault.applies(method, path):
                    continue
                if fault.status is None:
                    latency += fault.latency_ms
                elif failing is None:
                    failing = fault
                    latency += fault.latency_ms
                else:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
            self._faults = [f for f in self._faults if f.remaining is None or f.remaining > 0]
        return latency, failing


def install(app: Flask, faults: Faults, error_body: Callable[[int], dict[str, Any]]) -> None:
    """Apply ``faults`` before every API request of ``app`` (never to ``/_sandbox``)."""

    @app.before_request
    def _inject() -> Response | None:
        if request.path.startswith("/_sandbox"):
            return None
        latency_ms, fault = faults.take(request.method, request.path)
        if latency_ms:
            time.sleep(latency_ms / 1000)
        if fault is None or fault.status is None:
            return None
        response = jsonify(error_body(fault.status))
        response.status_code = fault.status
        if fault.retry_after is not None:
            response.headers["Retry-After"] = f"{fault.retry_after:g}"
        return response


def fault_from_json(faults: Faults, body: dict[str, Any]) -> Fault:
    """``POST /_sandbox/faults`` body: prefix, status, retry_after, latency_ms, count, methods."""
    count = body.get("count", 1)
    return faults.add(
        prefix=str(body.get("prefix") or "/"),
        status=int(body["status"]) if body.get("status") is not None else None,
        retry_after=float(body["retry_after"]) if body.get("retry_after") is not None else None,
        latency_ms=int(body.get("latency_ms") or 0),
        count=int(count) if count is not None else None,
        methods=body.get("methods"),
    )
