"""The counts tracker with plain values: what is published, and what never is."""

from __future__ import annotations

import pytest

from imapvm.mwi.model import MwiUpdate, parse_boxes
from imapvm.mwi.tracker import CountsTracker
from imapvm.storage.base import Counts, MailboxRef

A = MailboxRef("100", "default")
B = MailboxRef("101", "default")


@pytest.fixture
def published() -> list[MwiUpdate]:
    return []


@pytest.fixture
def tracker(published: list[MwiUpdate]) -> CountsTracker:
    t = CountsTracker(published.append)
    t.add_name("100@default", [A])
    return t


def state(u: MwiUpdate) -> tuple[int, int, int, bool]:
    return (u.new, u.old, u.urgent, u.stale)


def test_publishes_first_count_and_changes_only(tracker: CountsTracker,
                                                published: list[MwiUpdate]) -> None:
    tracker.confirm(A, Counts(new=2, old=1), tracker.begin_recount(A))
    tracker.confirm(A, Counts(new=2, old=1), tracker.begin_recount(A))
    tracker.confirm(A, Counts(new=1, old=2, urgent=1), tracker.begin_recount(A))
    assert [state(u) for u in published] == [(2, 1, 0, False), (1, 2, 1, False)]
    assert published[1].mwi_new == 2  # the lamp counts urgent as new
    assert published[1].mailbox == "100"
    assert published[1].context == "default"


def test_deposit_applied_locally_then_confirmed_gives_one_update(
        tracker: CountsTracker, published: list[MwiUpdate]) -> None:
    tracker.confirm(A, Counts(new=0), tracker.begin_recount(A))
    tracker.apply_local(A, Counts(new=1))
    tracker.confirm(A, Counts(new=1), tracker.begin_recount(A))
    assert [state(u) for u in published] == [(0, 0, 0, False), (1, 0, 0, False)]


def test_recount_started_before_a_local_change_is_discarded(
        tracker: CountsTracker, published: list[MwiUpdate]) -> None:
    """The blink of Asterisk's known issue: a count taken before the deposit landed must not
    turn the lamp back off."""
    tracker.confirm(A, Counts(new=0), tracker.begin_recount(A))
    token = tracker.begin_recount(A)  # a recount is running...
    tracker.apply_local(A, Counts(new=1))  # ...when the deposit is applied
    assert tracker.confirm(A, Counts(new=0), token) is False
    assert [state(u) for u in published] == [(0, 0, 0, False), (1, 0, 0, False)]
    assert tracker.counts(A) == Counts(new=1)


def test_a_recount_begun_before_an_accepted_one_is_discarded(
        tracker: CountsTracker, published: list[MwiUpdate]) -> None:
    """Two recounts of one box at once (a takeover's and the new watcher's): the one that began
    first may have read the server before a change the other one saw; arriving last, it used
    to be published over it, and the lamp stayed one message behind."""
    tracker.confirm(A, Counts(new=1), tracker.begin_recount(A))
    slow = tracker.begin_recount(A)  # reads the server: 1 new
    fast = tracker.begin_recount(A)  # a message arrives; this one reads 2 new
    assert tracker.confirm(A, Counts(new=2), fast) is True
    assert tracker.confirm(A, Counts(new=1), slow) is False
    assert tracker.counts(A) == Counts(new=2)
    assert [state(u) for u in published] == [(1, 0, 0, False), (2, 0, 0, False)]
    # recounts begun after the accepted one still count, in any order of completion
    later, latest = tracker.begin_recount(A), tracker.begin_recount(A)
    assert tracker.confirm(A, Counts(new=3), latest) is True
    assert tracker.confirm(A, Counts(new=2), later) is False
    assert tracker.counts(A) == Counts(new=3)


def test_a_recount_begun_before_the_box_was_watched_again_is_void(
        published: list[MwiUpdate]) -> None:
    tracker = CountsTracker(published.append)
    tracker.add_name("100@default", [A])
    token = tracker.begin_recount(A)
    tracker.remove_name("100@default")
    tracker.add_name("100@default", [A])
    assert tracker.confirm(A, Counts(new=5), token) is False
    assert tracker.confirm(A, Counts(new=1), tracker.begin_recount(A)) is True
    assert [state(u) for u in published] == [(1, 0, 0, False)]


def test_a_count_completing_during_the_store_call_is_not_added_twice(
        tracker: CountsTracker, published: list[MwiUpdate]) -> None:
    tracker.confirm(A, Counts(new=1), tracker.begin_recount(A))
    tracker.begin_local(A)  # the deposit is on its way to the server
    token = tracker.begin_recount(A)
    assert tracker.confirm(A, Counts(new=2), token) is False  # it may or may not include it
    tracker.apply_local(A, Counts(new=1))  # the store accepted it
    tracker.confirm(A, Counts(new=2), tracker.begin_recount(A))
    assert [state(u) for u in published] == [(1, 0, 0, False), (2, 0, 0, False)]


def test_never_negative(tracker: CountsTracker, published: list[MwiUpdate]) -> None:
    tracker.confirm(A, Counts(new=1), tracker.begin_recount(A))
    tracker.apply_local(A, Counts(new=-3, old=-1))
    assert [state(u) for u in published] == [(1, 0, 0, False), (0, 0, 0, False)]
    tracker.apply_local(A, Counts(new=-1))
    assert len(published) == 2


def test_local_delta_on_unknown_counts_waits_for_the_count(
        tracker: CountsTracker, published: list[MwiUpdate]) -> None:
    tracker.apply_local(A, Counts(new=1))
    assert published == []
    tracker.apply_local(A, counts=Counts(new=4, old=1))  # a phone session knows exact counts
    assert [state(u) for u in published] == [(4, 1, 0, False)]


def test_unreachable_keeps_counts_marked_stale_once(tracker: CountsTracker,
                                                    published: list[MwiUpdate]) -> None:
    tracker.confirm(A, Counts(new=3, old=2), tracker.begin_recount(A))
    tracker.mark_stale([A])
    tracker.mark_stale([A])
    assert [state(u) for u in published] == [(3, 2, 0, False), (3, 2, 0, True)]
    assert published[1].counts_changed is False
    tracker.confirm(A, Counts(new=3, old=2), tracker.begin_recount(A))
    assert [state(u) for u in published][2:] == [(3, 2, 0, False)]


def test_stale_without_any_count_publishes_nothing(published: list[MwiUpdate]) -> None:
    t = CountsTracker(published.append)
    t.add_name("100@default", [A])
    t.mark_stale([A])
    assert published == []


def test_lists_are_summed_and_aliases_follow_their_target(published: list[MwiUpdate]) -> None:
    t = CountsTracker(published.append)
    name, boxes = parse_boxes("100@default,101")
    assert name == "100@default,101@default"
    t.add_name(name, boxes)
    t.add_name("5100@aliases", [A], mailbox="5100", context="aliases")
    t.confirm(A, Counts(new=1), t.begin_recount(A))
    # the list waits for both parts; the alias publishes with its own name
    assert [(u.name, u.mailbox, u.context, u.new) for u in published] == [
        ("5100@aliases", "5100", "aliases", 1)]
    t.confirm(B, Counts(new=2, urgent=1, old=4), t.begin_recount(B))
    assert [(u.name, u.new, u.old, u.urgent) for u in published][1:] == [
        ("100@default,101@default", 3, 4, 1)]
    assert published[-1].mwi_new == 4


def test_parse_boxes_accepts_ampersand_and_default_context() -> None:
    assert parse_boxes("1&2@work") == (
        "1@default,2@work", [MailboxRef("1", "default"), MailboxRef("2", "work")])
    with pytest.raises(ValueError, match="no mailbox"):
        parse_boxes(" , ")


def test_removing_a_name_returns_boxes_nobody_needs(tracker: CountsTracker) -> None:
    tracker.add_name("100@default,101@default", [A, B])
    assert tracker.remove_name("100@default,101@default") == [B]
    assert tracker.remove_name("100@default") == [A]


def test_a_failed_local_change_applies_nothing_and_trusts_counts_again(
        tracker: CountsTracker, published: list[MwiUpdate]) -> None:
    tracker.confirm(A, Counts(new=1), tracker.begin_recount(A))
    tracker.begin_local(A)
    tracker.cancel_local(A)  # the deposit failed
    assert tracker.confirm(A, Counts(new=1, old=1), tracker.begin_recount(A)) is True
    assert [state(u) for u in published] == [(1, 0, 0, False), (1, 1, 0, False)]


def test_a_pending_deposit_survives_recounts_until_delivered(
        tracker: CountsTracker, published: list[MwiUpdate]) -> None:
    tracker.confirm(A, Counts(new=1), tracker.begin_recount(A))
    tracker.mark_stale([A])
    tracker.add_pending(A, Counts(new=1))  # the outbox holds it, IMAP is down
    tracker.confirm(A, Counts(new=1), tracker.begin_recount(A))  # back: not delivered yet
    tracker.begin_local(A)  # the outbox's APPEND is under way...
    assert tracker.confirm(A, Counts(new=2), tracker.begin_recount(A)) is False
    tracker.settle_pending(A, Counts(new=1), delivered=True)
    tracker.confirm(A, Counts(new=2), tracker.begin_recount(A))
    assert [state(u) for u in published] == [
        (1, 0, 0, False), (1, 0, 0, True), (2, 0, 0, True), (2, 0, 0, False)]


def test_a_dropped_pending_change_is_withdrawn(tracker: CountsTracker,
                                               published: list[MwiUpdate]) -> None:
    tracker.confirm(A, Counts(old=1), tracker.begin_recount(A))
    tracker.add_pending(A, Counts(new=1))
    tracker.settle_pending(A, Counts(new=1), delivered=False)
    assert [state(u) for u in published] == [(0, 1, 0, False), (1, 1, 0, False),
                                             (0, 1, 0, False)]
