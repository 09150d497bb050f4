"""Transport shared by the Zendesk and Jira connectors: a session that never retries, and translation of
transport failures into the typed errors of ``connector.errors``.

Why a session of our own: zenpy mounts an ``HTTPAdapter`` with ``Retry(total=3)`` on sessions it creates
itself, and both clients sleep on 429 (DESIGN.md, "Facts about the outside world"). A retry hidden in a
client can send a create twice and parks a worker thread; the worker owns retrying, with the error's
``retry_after`` in hand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from connector import errors

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
# Keep-alive connections kept per host (requests' default: 10). A worker running more jobs at once than
# that would open a connection for every call past it and drop it after (urllib3: "Connection pool is
# full"): a new TCP and TLS handshake with Zendesk or Jira each time.
_connections_per_host = 10


def keep_connections_per_host(count: int) -> None:
    """Size the sessions built from now on for ``count`` calls to one host at once (at least 10)."""
    global _connections_per_host
    _connections_per_host = max(10, count)


def no_retry_session() -> requests.Session:
    """A ``requests.Session`` whose adapters make exactly one attempt per call."""
    return without_environment_lookups(mount_no_retry_adapters(requests.Session()))


def mount_no_retry_adapters(session: requests.Session) -> requests.Session:
    """One attempt per call, and as many keep-alive connections per host as ``keep_connections_per_host``
    asked for."""
    for prefix in ("http://", "https://"):
        session.mount(prefix, HTTPAdapter(max_retries=0, pool_maxsize=_connections_per_host))
    return session


# What requests reads from the environment on every call when ``trust_env`` is on.
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def without_environment_lookups(
    session: requests.Session, environ: Mapping[str, str] | None = None
) -> requests.Session:
    """Stop ``session`` from scanning the environment for proxies on every request when none is set.

    With ``trust_env`` on, requests walks the whole environment per call (``getproxies``), a measurable
    share of a job's CPU. When no proxy variable is set, the only other thing it reads is a CA bundle
    path, taken here once instead; with a proxy configured the session is left as it is, so
    ``NO_PROXY`` keeps its meaning."""
    env = os.environ if environ is None else environ
    names = {name.lower() for name in env}
    if any(variable in names for variable in _PROXY_VARIABLES):
        return session
    bundle = next((env[v] for v in _CA_VARIABLES if env.get(v)), None)
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False
    return session


def url_path(url: str | bytes | None) -> str:
    """The path of a URL, for messages: never the query (search text) or userinfo."""
    if url is None:
        return "?"
    if isinstance(url, bytes):
        url = url.decode("utf-8", "replace")
    return urlsplit(url).path or "/"


def error_for_response(service: str, response: requests.Response) -> errors.ConnectorError:
    request = response.request
    try:
        body: Any = response.content  # reading it also hands the connection back to the pool
    except requests.RequestException:
        body = None
    return errors.from_status(
        service,
        response.status_code,
        method=(request.method if request is not None else None) or "?",
        path=url_path(request.url if request is not None else response.url),
        retry_after_header=response.headers.get("Retry-After"),
        body=body,
    )


def raise_for_error_hook(service: str) -> Callable[..., requests.Response]:
    """A requests response hook raising the typed error for any status >= 400.

    It runs inside ``Session.send``, before the client library sees the response: zenpy's
    ``_call_api`` never reaches its Retry-After sleep loop, and its own exception mapping is bypassed.
    """

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if response.status_code >= 400:
            error = error_for_response(service, response)
            log.info("%s call failed: %s", service, error.message)
            raise error
        return response

    return hook


@contextmanager
def translated(service: str) -> Iterator[None]:
    """Turn transport exceptions escaping a block into typed connector errors."""
    try:
        yield
    except errors.ConnectorError:
        raise
    except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
        raise errors.TransientError(service, f"timed out calling {_where(exc)}") from exc
    except requests.ConnectionError as exc:
        raise errors.TransientError(service, f"could not connect to {_where(exc)}") from exc
    except requests.RequestException as exc:
        raise errors.PermanentError(
            service, f"request to {_where(exc)} failed: {type(exc).__name__}"
        ) from exc


def _where(exc: requests.RequestException) -> str:
    request = getattr(exc, "request", None)
    if request is None or not getattr(request, "url", None):
        return "the service"
    return f"{request.method} {url_path(request.url)}"
