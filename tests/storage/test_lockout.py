"""Login lockouts: the policy (pure), and the state shared by two nodes through the real stores
(Dovecot and Cyrus METADATA, the spool directory), with the per-node fallback on a server
without METADATA (the restricted Dovecot)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from imapvm.storage.base import MailboxRef
from imapvm.storage.lockout import FailureState, LockoutPolicy, Lockouts, LockoutUnsupported
from imapvm.storage.spool import SpoolStore
from tests.conftest import Account
from tests.storage.test_outbox import make_store

BOX = MailboxRef("1234", "default")
POLICY = LockoutPolicy(free_failures=2, backoff=30.0, lock_after=5, lock_seconds=600.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_policy_free_then_doubling_then_lock() -> None:
    waits = [POLICY.wait_after(n) for n in range(0, 7)]
    assert waits == [0.0, 0.0, 0.0, 30.0, 60.0, 600.0, 600.0]


async def test_lock_engages_across_sources_and_releases_after_the_back_off() -> None:
    clock = Clock()
    lockouts = Lockouts(POLICY, clock=clock)
    for i in range(5):  # five sources, one failure each: the mailbox's count is what locks
        assert lockouts.wait(BOX, f"192.0.2.{i}") == 0.0 or i >= 3
        await lockouts.failure(BOX, f"192.0.2.{i}", "phone")
        clock.now += 1
    assert lockouts.failures(BOX) == 5
    assert lockouts.wait(BOX, "198.51.100.9") == pytest.approx(600.0 - 1)  # a new source too
    clock.now += 600
    assert lockouts.wait(BOX, "198.51.100.9") == 0.0  # released
    await lockouts.success(BOX)
    assert lockouts.failures(BOX) == 0


async def test_one_source_is_slowed_down_across_mailboxes() -> None:
    clock = Clock()
    lockouts = Lockouts(POLICY, clock=clock)
    for n in range(3):
        await lockouts.failure(MailboxRef(f"10{n}", "default"), "203.0.113.5", "sip-digest")
    assert lockouts.wait(MailboxRef("999", "default"), "203.0.113.5") == pytest.approx(30.0)
    assert lockouts.wait(MailboxRef("999", "default"), "203.0.113.6") == 0.0


async def test_fail2ban_lines_name_the_source_and_never_a_pin(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    lockouts = Lockouts(POLICY, clock=Clock())
    for _ in range(5):
        await lockouts.failure(BOX, "192.0.2.7", "phone")
    lines = [r.getMessage() for r in caplog.records]
    assert "auth failure: source=192.0.2.7 user=1234@default via=phone" in lines
    assert any(line.startswith("auth locked: user=1234@default for 600 s after 5 failures")
               for line in lines)


async def test_two_nodes_share_the_state_through_the_spool(tmp_path: Path) -> None:
    clock = Clock()
    node_a = Lockouts(POLICY, SpoolStore(tmp_path), clock=clock)
    node_b = Lockouts(POLICY, SpoolStore(tmp_path), clock=clock)
    for _ in range(5):
        await node_a.failure(BOX, "192.0.2.1", "phone")
    await node_b.refresh(BOX)
    assert node_b.failures(BOX) == 5
    assert node_b.wait(BOX) > 0
    await node_b.success(BOX)
    await node_a.refresh(BOX)
    assert node_a.wait(BOX) == 0.0


async def test_two_nodes_share_the_state_on_each_imap_server(
        account: Account, caplog: pytest.LogCaptureFixture) -> None:
    """Dovecot (both separators) keeps it in METADATA; the restricted Dovecot offers no
    METADATA and stock Cyrus refuses undefined vendor entries, so there each node counts
    alone and says so once."""
    clock = Clock()
    store_a, store_b = make_store(account), make_store(account)
    node_a = Lockouts(POLICY, store_a, clock=clock)
    node_b = Lockouts(POLICY, store_b, clock=clock)
    try:
        for i in range(4):  # node A's failures, alternating with node B's
            await (node_a if i % 2 == 0 else node_b).failure(BOX, f"192.0.2.{i}", "phone")
        variant = getattr(account.server, "variant", "")
        if variant in ("restricted", "cyrus"):
            if variant == "restricted":
                with pytest.raises(LockoutUnsupported):
                    await store_a.read_lockout(BOX)
            with pytest.raises(LockoutUnsupported):
                await store_a.write_lockout(BOX, b"{}")
            assert node_a.failures(BOX) == 2
            assert node_b.failures(BOX) == 2
            assert "is kept on this node only" in caplog.text
            return
        assert FailureState.from_bytes(await store_a.read_lockout(BOX)).failures == 4
        await node_a.failure(BOX, "192.0.2.9", "sip-digest")  # the fifth, on A: locked
        await node_b.refresh(BOX)
        assert node_b.failures(BOX) == 5
        assert node_b.wait(BOX, "198.51.100.1") > 0  # B refuses too, for any source
        clock.now += POLICY.lock_seconds + 1
        assert node_b.wait(BOX, "198.51.100.1") == 0.0
        await node_b.success(BOX)
        cleared = FailureState.from_bytes(await store_a.read_lockout(BOX))
        assert cleared.failures == 0  # cleared for everyone
        await node_a.refresh(BOX)
        assert node_a.failures(BOX) == 0
    finally:
        await store_a.aclose()
        await store_b.aclose()


async def test_phone_failures_through_the_pbx_never_lock_the_pbx_out() -> None:
    """Every phone login comes from the PBX's address: it is logged, but the per-source count
    is per caller, so strangers' failures on other mailboxes never lock anyone else out."""
    clock = Clock()
    lockouts = Lockouts(POLICY, clock=clock)
    for n in range(12):
        await lockouts.failure(MailboxRef(f"20{n}", "default"), "192.0.2.10", "phone",
                               counted_as=f"caller:55501{n}")
    assert lockouts.wait(MailboxRef("1234", "default"), "caller:5550999") == 0.0
    assert lockouts.wait(None, "192.0.2.10") == 0.0
    for _ in range(3):  # but one caller trying mailbox after mailbox is slowed down
        await lockouts.failure(MailboxRef("300", "default"), "192.0.2.10", "phone",
                               counted_as="caller:5550100")
    assert lockouts.wait(MailboxRef("1234", "default"), "caller:5550100") > 0
