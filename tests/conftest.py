"""Session-wide fixtures: real IMAP servers started once per test session.

A test that needs a server fails (never skips) when that server cannot start: the test command
installs every server, so a missing one is a broken set-up, not a reason to pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.cyrus import CyrusServer
from tests.support.dovecot import DovecotServer
from tests.support.kdc import Kdc
from tests.support.oauth import Introspection

_counter = itertools.count(1)


@dataclass(frozen=True)
class Account:
    """One IMAP user on one test server, with what a test needs to log in to it."""

    server: DovecotServer | CyrusServer
    user: str
    password: str

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def separator(self) -> str:
        return self.server.separator

    @property
    def variant(self) -> str:
        return self.server.variant


def _start(server: DovecotServer | CyrusServer) -> Iterator[DovecotServer | CyrusServer]:
    try:
        server.start()
    except Exception as exc:  # a missing server is a failure, never a skip
        pytest.fail(f"cannot start {server.variant} IMAP server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dovecot_slash() -> Iterator[DovecotServer]:
    yield from _start(DovecotServer("slash"))  # type: ignore[misc]


@pytest.fixture(scope="session")
def dovecot_dot() -> Iterator[DovecotServer]:
    yield from _start(DovecotServer("dot"))  # type: ignore[misc]


@pytest.fixture(scope="session")
def dovecot_restricted() -> Iterator[DovecotServer]:
    yield from _start(DovecotServer("restricted"))  # type: ignore[misc]


@pytest.fixture(scope="session")
def dovecot_tls() -> Iterator[DovecotServer]:
    yield from _start(DovecotServer("tls"))  # type: ignore[misc]


@pytest.fixture(scope="session")
def introspection() -> Iterator[Introspection]:
    server = Introspection().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot_oauth(introspection: Introspection) -> Iterator[DovecotServer]:
    yield from _start(DovecotServer("oauth", introspection_url=introspection.url))  # type: ignore[misc]


@pytest.fixture(scope="session")
def kdc() -> Iterator[Kdc]:
    server = Kdc()
    try:
        server.start()
    except Exception as exc:  # a missing server is a failure, never a skip
        pytest.fail(f"cannot start the Kerberos KDC: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot_gssapi(kdc: Kdc) -> Iterator[DovecotServer]:
    yield from _start(DovecotServer("gssapi", krb5_config=str(kdc.krb5_config),  # type: ignore[misc]
                                    krb5_keytab=str(kdc.keytab)))


@pytest.fixture(scope="session")
def cyrus() -> Iterator[CyrusServer]:
    yield from _start(CyrusServer())  # type: ignore[misc]


@pytest.fixture
def private_dovecot() -> Iterator[DovecotServer]:
    """A Dovecot of one test's own, which it may stop (`pause`) and start (`resume`)."""
    yield from _start(DovecotServer("slash"))  # type: ignore[misc]


SERVER_VARIANTS = ["dovecot_slash", "dovecot_dot", "dovecot_restricted", "cyrus"]


@pytest.fixture(params=SERVER_VARIANTS)
def imap_server(request: pytest.FixtureRequest) -> DovecotServer | CyrusServer:
    """Each test using this runs once per server variant."""
    server: DovecotServer | CyrusServer = request.getfixturevalue(request.param)
    return server


def make_account(server: DovecotServer | CyrusServer, prefix: str = "u") -> Account:
    """A fresh user on `server`, so tests never see each other's mail."""
    name = f"{prefix}{next(_counter)}"
    password = f"{name}-pw"  # Dovecot's pool passdb knows such users without a reload
    server.add_user(name, password)
    return Account(server, name, password)


@pytest.fixture
def account(imap_server: DovecotServer | CyrusServer) -> Account:
    """A fresh user on each server variant in turn."""
    return make_account(imap_server)
