"""The web process's access log: gunicorn's, building only the atoms its format names.

gunicorn's logger builds every atom for each request, the request's headers, the response's and the whole
WSGI environ among them (some fifty entries), and copies them into a dict that escapes each value, to
format the five or six its line names. Under webhook load that was a third of the access log's cost
(bench/bench_intake.py, py-spy). This logger computes only the named atoms, with gunicorn's meaning and
escaping; a format naming any other atom (a header, an environ variable) is logged by gunicorn's own code.
``deploy/gunicorn.conf.py`` sets it as ``logger_class``.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

Atom = Callable[[Any, Mapping[str, Any], timedelta], Any]


def _status(resp: Any, environ: Mapping[str, Any], took: timedelta) -> Any:
    status = resp.status
    return status.split(None, 1)[0] if isinstance(status, str) else status


def _sent(resp: Any, environ: Mapping[str, Any], took: timedelta) -> str:
    sent = getattr(resp, "sent", None)
    return str(sent) if sent is not None else "-"


# gunicorn's own definitions (gunicorn.glogging.Logger.atoms) of the atoms worth computing one by one.
ATOMS: dict[str, Atom] = {
    "h": lambda resp, environ, took: environ.get("REMOTE_ADDR", "-"),
    "m": lambda resp, environ, took: environ.get("REQUEST_METHOD"),
    "U": lambda resp, environ, took: environ.get("PATH_INFO"),
    "q": lambda resp, environ, took: environ.get("QUERY_STRING"),
    "H": lambda resp, environ, took: environ.get("SERVER_PROTOCOL"),
    "s": _status,
    "b": _sent,
    "B": lambda resp, environ, took: getattr(resp, "sent", None),
    "T": lambda resp, environ, took: took.seconds,
    "D": lambda resp, environ, took: took.seconds * 1_000_000 + took.microseconds,
    "M": lambda resp, environ, took: took.seconds * 1000 + took.microseconds // 1000,
    "L": lambda resp, environ, took: f"{took.seconds}.{took.microseconds:06d}",
    "p": lambda resp, environ, took: f"<{os.getpid()}>",
}
_NAMED = re.compile(r"%\(([^)]*)\)")


def named_atoms(access_log_format: str) -> tuple[str, ...] | None:
    """The atoms the format names, when all of them are in ``ATOMS``; else None."""
    names = tuple(dict.fromkeys(_NAMED.findall(access_log_format)))
    return names if all(name in ATOMS for name in names) else None


class AccessLogger(Logger):
    _named: tuple[str, ...] | None = None

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)  # a configuration reload runs this again
        self._named = named_atoms(cfg.access_log_format)

    def access(self, resp: Any, req: Any, environ: Mapping[str, Any], request_time: timedelta) -> None:
        enabled = getattr(self, "access_log_enabled", None)  # gunicorn 27's cached answer
        if self._named is None or enabled is None:
            super().access(resp, req, environ, request_time)
            return
        if not enabled:
            return
        atoms = {}
        for name in self._named:
            value = ATOMS[name](resp, environ, request_time)
            # As gunicorn's SafeAtoms: a quote in a value cannot end a quoted field early.
            atoms[name] = value.replace('"', '\\"') if isinstance(value, str) else value
        try:
            self.access_log.info(self.cfg.access_log_format, atoms)
        except Exception:
            self.error(traceback.format_exc())
