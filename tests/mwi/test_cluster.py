"""One publisher per mailbox: rendezvous hashing over the live nodes (pure logic, plus the
health-check loop driven by a scripted probe)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from imapvm.mwi.cluster import Membership, owned, owner

NODES = ["http://10.0.0.1:9180", "http://10.0.0.2:9180", "http://10.0.0.3:9180"]
BOXES = [f"{n}@default" for n in range(1000, 4000)]


def test_every_mailbox_has_exactly_one_owner_and_the_load_is_even() -> None:
    shares = [owned(BOXES, node, NODES) for node in NODES]
    assert set().union(*shares) == set(BOXES)
    assert sum(len(s) for s in shares) == len(BOXES)  # disjoint
    for share in shares:
        assert 800 < len(share) < 1200  # about a third each


def test_a_dead_nodes_mailboxes_move_and_no_others() -> None:
    before = {box: owner(box, NODES) for box in BOXES}
    survivors = NODES[:2]
    after = {box: owner(box, survivors) for box in BOXES}
    moved = {box for box in BOXES if before[box] != after[box]}
    assert moved == {box for box in BOXES if before[box] == NODES[2]}
    # spread over both survivors, not dumped on one
    assert min(Counter(after[box] for box in moved).values()) > len(moved) // 3


@settings(max_examples=30, deadline=None)
@given(st.sets(st.sampled_from(NODES), min_size=1), st.sampled_from(BOXES))
def test_nodes_with_the_same_view_agree(live: set[str], box: str) -> None:
    owners = [node for node in live if box in owned([box], node, live)]
    assert owners == [owner(box, live)]


@settings(max_examples=30, deadline=None)
@given(st.sets(st.sampled_from(NODES), min_size=1), st.sets(st.sampled_from(NODES), min_size=1),
       st.sampled_from(BOXES))
def test_a_split_view_never_leaves_a_mailbox_unpublished(view_a: set[str], view_b: set[str],
                                                          box: str) -> None:
    """Two nodes that disagree may both publish a box (the same recount), but a box whose
    owner in the true view is live is published by it."""
    truth = view_a | view_b
    publisher = owner(box, truth)
    assert publisher is not None
    assert box in owned([box], publisher, truth)


async def test_membership_follows_probes_and_reports_changes() -> None:
    up = {NODES[1]: True, NODES[2]: True}
    seen: list[tuple[frozenset[str], frozenset[str]]] = []

    async def probe(url: str) -> bool:
        return up[url]

    async def changed(old: frozenset[str], new: frozenset[str]) -> None:
        seen.append((old, new))

    m = Membership(NODES, NODES[0], probe=probe, on_change=changed)
    assert not await m.check()  # starts with everybody live
    up[NODES[2]] = False
    assert not await m.check()  # one missed check is not a death
    assert await m.check()
    assert m.live == frozenset(NODES[:2])
    assert seen == [(frozenset(NODES), frozenset(NODES[:2]))]
    gained = {b for b in BOXES if m.owns(b)} - owned(BOXES, NODES[0], NODES)
    assert gained == {b for b in BOXES if owner(b, NODES) == NODES[2]
                      and owner(b, NODES[:2]) == NODES[0]}
    up[NODES[2]] = True
    assert await m.check()
    assert m.live == frozenset(NODES)
    assert m.changes == 2
