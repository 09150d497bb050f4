"""Logs as one JSON object per line, carrying the ticket, delivery and job they are about, never a secret.

- **Context**: ``bound(ticket_id=…, delivery_id=…, job_id=…)`` sets context variables for a block (a job,
  a webhook request); every record created inside it carries them, whatever logger made it.
- **Secrets**: the configured secret values (API tokens, webhook secrets, passwords inside REDIS_URL and
  DATABASE_URL, the Basic-auth headers built from them, and the operator secrets read from the
  environment) are replaced by ``[REDACTED]``. This happens when a record is *created* (a log-record
  factory), so it holds for every handler: ours, gunicorn's, RQ's, one a library adds later. The JSON
  formatter scrubs its finished line once more, for values passed through ``extra=``.
- **Format**: ``ESCALATE_LOG_FORMAT=json`` (default) or ``text``; level from ``LOG_LEVEL`` (default INFO).

``configure(settings)`` is idempotent; the app factory and the job wrapper call it (worker/metrics.py).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

CONTEXT_FIELDS = ("ticket_id", "issue_key", "delivery_id", "job_id")
REDACTED = "[REDACTED]"
# Shorter values are not scrubbed: replacing every "abc" would make logs unreadable. `escalate doctor`
# refuses secrets this short.
MIN_SECRET_LENGTH = 6
# Secrets read from the environment besides the Settings' own (sidebar session, operator endpoints).
SECRET_ENV_NAMES = (
    "ZENDESK_API_TOKEN",
    "ZENDESK_WEBHOOK_SECRET",
    "JIRA_API_TOKEN",
    "JIRA_WEBHOOK_SECRET",
    "ESCALATE_SIDEBAR_SECRET",
    "ESCALATE_METRICS_TOKEN",
    "ESCALATE_DASHBOARD_PASSWORD",
)
URL_ENV_NAMES = ("REDIS_URL", "DATABASE_URL")

_NO_CONTEXT: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("escalate_log_context", default=_NO_CONTEXT)

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime", "taskName"}
)


# -- context ------------------------------------------------------------------------------------


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Records created inside the block carry these fields (None values are left out)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Like ``bound`` for code that cannot hold a block open (a request's before/teardown hooks)."""
    return _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind(token: Token[Mapping[str, Any]]) -> None:
    try:
        _context.reset(token)
    except ValueError:  # made in another context (a different thread finished the request): drop it
        _context.set(_NO_CONTEXT)


def current_context() -> Mapping[str, Any]:
    return _context.get()


# -- secrets ------------------------------------------------------------------------------------


class Scrubber:
    """Replaces known secret values in text. Thread-safe; values only ever get added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, *values: str | None) -> None:
        fresh = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH}
        # The same value as it appears inside a JSON string (quotes, backslashes, non-ASCII escaped).
        fresh |= {json.dumps(v)[1:-1] for v in fresh}
        fresh |= {json.dumps(v, ensure_ascii=False)[1:-1] for v in fresh}
        with self._lock:
            merged = set(self._values) | fresh
            # Longest first, so a secret containing another is replaced whole.
            self._values = tuple(sorted(merged, key=len, reverse=True))

    @property
    def values(self) -> tuple[str, ...]:
        return self._values

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def add_settings(self, settings: Any, environ: Mapping[str, str] | None = None) -> None:
        """Every secret a Settings object and the environment hold, and the forms they travel in."""
        env = os.environ if environ is None else environ
        found = [
            getattr(settings, name, None)
            for name in (
                "zendesk_api_token",
                "zendesk_webhook_secret",
                "jira_api_token",
                "jira_webhook_secret",
            )
        ]
        found += [env.get(name) for name in SECRET_ENV_NAMES]
        urls = [getattr(settings, "redis_url", None), getattr(settings, "database_url", None)]
        urls += [env.get(name) for name in URL_ENV_NAMES]
        found += [p for url in urls for p in url_passwords(url)]
        found += basic_auth_forms(
            getattr(settings, "zendesk_email", None) or env.get("ZENDESK_EMAIL"),
            getattr(settings, "zendesk_api_token", None) or env.get("ZENDESK_API_TOKEN"),
            getattr(settings, "jira_email", None) or env.get("JIRA_EMAIL"),
            getattr(settings, "jira_api_token", None) or env.get("JIRA_API_TOKEN"),
        )
        self.add(*found)


def url_passwords(url: str | None) -> list[str]:
    if not url:
        return []
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def basic_auth_forms(
    zendesk_email: str | None, zendesk_token: str | None, jira_email: str | None, jira_token: str | None
) -> list[str]:
    """The Authorization values the clients send: Zendesk ``email/token:TOKEN``, Jira ``email:TOKEN``."""
    forms = []
    if zendesk_email and zendesk_token:
        forms.append(base64.b64encode(f"{zendesk_email}/token:{zendesk_token}".encode()).decode())
    if jira_email and jira_token:
        forms.append(base64.b64encode(f"{jira_email}:{jira_token}".encode()).decode())
    return forms


SCRUBBER = Scrubber()


# -- records ------------------------------------------------------------------------------------

_factory_lock = threading.Lock()
_installed_factory: Any = None


def _install_record_factory() -> None:
    """Wrap the log-record factory once: context fields in, secrets out, for every record made."""
    global _installed_factory
    with _factory_lock:
        if _installed_factory is not None and logging.getLogRecordFactory() is _installed_factory:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            for key, value in _context.get().items():
                if key not in record.__dict__:
                    setattr(record, key, value)
            if SCRUBBER.values:
                _scrub_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed_factory = factory


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it when the record is emitted
        return
    clean = SCRUBBER.scrub(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = SCRUBBER.scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = SCRUBBER.scrub(record.stack_info)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ticket_id?, issue_key?, delivery_id?, job_id?, …extras,
    "exception"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                payload[key] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in payload and not key.startswith("_"):
                plain = isinstance(value, str | int | float | bool | type(None))
                payload[key] = value if plain else repr(value)
        if record.exc_info or record.exc_text:
            payload["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        if record.stack_info:
            payload["stack"] = record.stack_info
        return SCRUBBER.scrub(json.dumps(payload, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """The classic line, with the context fields appended: ``… [ticket_id=42 delivery_id=…]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS if getattr(record, k, None))
        return SCRUBBER.scrub(f"{line} [{fields}]" if fields else line)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


# Loggers whose plain console handlers get our format: ours (root), gunicorn's, RQ's.
_CONSOLE_LOGGERS = ("", "gunicorn.error", "gunicorn.access", "rq.worker")


def configure(settings: Any = None, *, environ: Mapping[str, str] | None = None) -> None:
    """Secrets known, records scrubbed and given context, console handlers formatting as configured."""
    env = os.environ if environ is None else environ
    if settings is None:
        from worker.config import Settings

        settings = Settings.from_env(env)
    SCRUBBER.add_settings(settings, env)
    _install_record_factory()
    style = (env.get("ESCALATE_LOG_FORMAT") or "json").strip().lower()
    if style in ("none", "off"):
        return
    formatter: logging.Formatter = TextFormatter() if style == "text" else JsonFormatter()
    root = logging.getLogger()
    handled = False
    for name in _CONSOLE_LOGGERS:
        for handler in _console_handlers(logging.getLogger(name).handlers):
            if not isinstance(handler.formatter, type(formatter)):
                handler.setFormatter(formatter)
            handled = handled or name == ""
    if not handled:
        handler = _StderrHandler()
        handler.setFormatter(formatter)
        root.addHandler(handler)
    if root.level == logging.WARNING:  # the untouched default; an explicit choice is left alone
        root.setLevel((env.get("LOG_LEVEL") or "INFO").upper())


def _console_handlers(handlers: Iterable[logging.Handler]) -> Iterator[logging.StreamHandler]:
    """Handlers that print to the process's own stdout/stderr (what basicConfig, gunicorn and RQ add),
    not a test runner's capture handler or a file."""
    consoles = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s is not None}
    for handler in handlers:
        if isinstance(handler, _StderrHandler) or (
            type(handler).__name__ in ("StreamHandler", "ColorizingStreamHandler")
            and id(getattr(handler, "stream", None)) in consoles
        ):
            yield handler  # type: ignore[misc]
