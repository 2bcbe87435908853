"""Fixtures for the tests against a real sietchd (scripts/sdk-testenv.sh
sets the environment they need)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sietch import Client, Sandbox


@pytest.fixture(scope="session")
def client() -> Client:
    if not os.environ.get("SIETCH_ADDR"):
        pytest.skip("SIETCH_ADDR is unset: run under scripts/sdk-testenv.sh for the tests against a real sietchd")
    return Client()


@pytest.fixture(scope="session")
def testguest(client: Client) -> str:
    name = os.environ.get("SIETCH_TEST_TESTGUEST")
    if not name:
        pytest.skip("SIETCH_TEST_TESTGUEST is unset: run under scripts/sdk-testenv.sh")
    return name


@pytest.fixture
def counter(client: Client, testguest: str) -> Iterator[Sandbox]:
    """A sandbox of the counter test guest (no agent; native speed)."""
    with Sandbox.create(image=testguest, labels={"test": "sdk-python"}, client=client) as sb:
        yield sb


@pytest.fixture(scope="module")
def template(client: Client) -> str:
    name = os.environ.get("SIETCH_TEST_TEMPLATE")
    if not name:
        pytest.skip("SIETCH_TEST_TEMPLATE is unset (SIETCH_TEST_NO_TEMPLATE=1?): the Linux tests need a template")
    return name
