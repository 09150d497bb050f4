"""The HTTP clients keep a keep-alive connection for every job a worker runs at once (`--threads` up to 16):
past requests' default of 10, each call beyond it would open a connection and drop it after."""

from __future__ import annotations

import logging

import pytest

from connector import http_client
from connector.sandbox.seed import TICKETS  # name -> id
from tests.test_store import at_once
from worker import jobs

CALLS = 16  # at once, more than requests' default pool of 10 connections a host


@pytest.fixture
def sized_for_threads(monkeypatch):
    monkeypatch.setattr(http_client, "_connections_per_host", http_client._connections_per_host)
    monkeypatch.setattr(jobs, "_threads", jobs._threads)
    jobs.size_for_threads(CALLS)


def _at_once(call) -> list[BaseException]:
    """``call`` from ``CALLS`` threads released together; what they raised."""

    def attempt() -> BaseException | None:
        try:
            call()
        except BaseException as exc:  # reported by the test
            return exc
        return None

    return [failure for failure in at_once(attempt, CALLS) if failure is not None]


def _dropped(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Connection pool is full" in r.getMessage()]


def test_a_worker_sized_for_16_threads_keeps_16_connections_to_zendesk_and_jira(
    sized_for_threads, sandbox_state, make_zendesk, make_jira, caplog
):
    # Slow answers, as from the real services: the calls overlap.
    sandbox_state.zendesk_state.faults.add(latency_ms=300, count=None)
    sandbox_state.jira_state.faults.add(latency_ms=300, count=None)
    zendesk, jira = make_zendesk(), make_jira()
    ticket = TICKETS["outage"]
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    assert _at_once(lambda: zendesk.get_ticket(ticket)) == []
    assert _at_once(jira.check_auth) == []
    assert _dropped(caplog) == []


def test_with_requests_default_pool_the_16th_call_drops_its_connection(sandbox_state, make_zendesk, caplog):
    """What the sizing avoids (and that the test above would see it)."""
    sandbox_state.zendesk_state.faults.add(latency_ms=300, count=None)
    zendesk = make_zendesk()
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    assert _at_once(lambda: zendesk.get_ticket(TICKETS["outage"])) == []
    assert len(_dropped(caplog)) == CALLS - 10
