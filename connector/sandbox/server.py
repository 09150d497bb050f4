"""Run the sandbox Zendesk and Jira side by side on local ports, in background threads.

Served by waitress rather than werkzeug's development server: werkzeug closes every connection
("Connection: close"), while the real Zendesk and Jira keep them open, so with werkzeug each call would
pay a TCP handshake and a new server thread that production never pays (bench/bench_pipeline.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from waitress.server import create_server

from connector.sandbox import jira_app, zendesk_app
from connector.sandbox.jira_state import JiraState
from connector.sandbox.seed import JIRA_ISSUE_FIELD
from connector.sandbox.zendesk_state import ZendeskState

# Threads per server: tests hold requests open with injected latency while others go on.
THREADS = 16


@dataclass
class _Running:
    server: Any  # waitress's server (its type depends on the address family)
    thread: threading.Thread
    stopping: threading.Event

    @property
    def url(self) -> str:
        return f"http://{self.server.effective_host}:{self.server.effective_port}"

    def close(self) -> None:
        self.stopping.set()
        # The request threads first: one finishing a request after close() would wake the closed server
        # (waitress's pull_trigger on a closed descriptor, an OSError in that thread).
        self.server.task_dispatcher.shutdown(timeout=5)
        self.server.close()
        self.thread.join(timeout=5)


@dataclass
class Sandbox:
    """Both servers; ``zendesk_state``/``jira_state`` are the live in-memory state they serve."""

    zendesk_state: ZendeskState
    jira_state: JiraState
    _zendesk: _Running
    _jira: _Running
    _stopped: bool = field(default=False, init=False)

    @property
    def zendesk_url(self) -> str:
        return self._zendesk.url

    @property
    def jira_url(self) -> str:
        return self._jira.url

    def environment(self) -> dict[str, str]:
        """The configuration (DESIGN.md names) that points the connectors at this sandbox."""
        return {
            "ZENDESK_URL": self.zendesk_url,
            "ZENDESK_EMAIL": self.zendesk_state.email,
            "ZENDESK_API_TOKEN": self.zendesk_state.token,
            "ZENDESK_JIRA_FIELD_ID": str(JIRA_ISSUE_FIELD),
            "JIRA_URL": self.jira_url,
            "JIRA_EMAIL": self.jira_state.email,
            "JIRA_API_TOKEN": self.jira_state.token,
        }

    def reset(self) -> None:
        self.zendesk_state.reset()
        self.jira_state.reset()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for running in (self._zendesk, self._jira):
            running.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(app, host: str, port: int, name: str) -> _Running:
    server = create_server(app, host=host, port=port, threads=THREADS, ident=name)
    stopping = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:
            # close() from another thread can pull a descriptor from under the loop's select(): that
            # is the stop itself. Before a stop, an OSError is a real failure.
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return _Running(server, thread, stopping)


def start(
    *,
    host: str = "127.0.0.1",
    zendesk_port: int = 0,
    jira_port: int = 0,
    jira_deployment: str = "Cloud",
    search_delay_s: float = 0.0,
) -> Sandbox:
    """Start both servers (port 0: any free port) and return once they accept connections."""
    zendesk_state = ZendeskState()
    jira_state = JiraState(deployment_type=jira_deployment, search_delay_s=search_delay_s)
    zendesk = _serve(zendesk_app.create_app(zendesk_state), host, zendesk_port, "sandbox-zendesk")
    try:
        jira = _serve(jira_app.create_app(jira_state), host, jira_port, "sandbox-jira")
    except BaseException:
        zendesk.close()
        raise
    return Sandbox(zendesk_state, jira_state, zendesk, jira)
