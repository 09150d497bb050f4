"""Shared fixtures. Area-specific fixtures live in the plugin modules listed below."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rules.similarity import load_matcher

pytest_plugins = ["tests.conftest_sandbox", "tests.conftest_service", "tests.conftest_sidebar"]


@pytest.fixture(scope="session")
def matcher():
    """The semantic matcher: what CI and the README install."""
    return load_matcher("semantic")


@pytest.fixture(scope="session")
def lexical_matcher():
    return load_matcher("lexical")


@pytest.fixture(scope="session", params=["semantic", "lexical"])
def any_matcher(request, matcher, lexical_matcher):
    return matcher if request.param == "semantic" else lexical_matcher
