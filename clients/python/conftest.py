"""The tests run against a running retryd whose address and keys come from the environment
(`cargo test --test clients` at the repository root starts one and sets them). Without them the
tests fail rather than pass vacuously. The stubs are generated first, as the build does."""

from __future__ import annotations

import os
import uuid

import pytest

import hatch_build


def pytest_configure(config: pytest.Config) -> None:
    hatch_build.generate_stubs()


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the client tests with `cargo test --test clients`", pytrace=False)
    return value


@pytest.fixture(scope="session")
def address() -> str:
    """host:port of the server."""
    return _required("RETRYD_ADDRESS")


@pytest.fixture(scope="session")
def keys() -> dict[str, str]:
    return {role: _required(f"RETRYD_{role.upper()}_KEY") for role in ("admin", "worker", "reader")}


@pytest.fixture(scope="session")
def retryd_binary() -> str:
    """The server's binary, for its `retryd worker` subcommand."""
    return _required("RETRYD_BIN")


@pytest.fixture
def channels(address: str, keys: dict[str, str]):
    """A channel per role, closed after the test."""
    from retryd import connect

    opened = {role: connect(address, api_key=key) for role, key in keys.items()}
    yield opened
    for channel in opened.values():
        channel.close()


@pytest.fixture
def unique():
    """Names no other test uses, so tests sharing a server never see each other's work."""
    return lambda prefix: f"{prefix}-{uuid.uuid4()}"
