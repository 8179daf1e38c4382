"""Interpretation of parsed IMAP data, and modified UTF-7 folder names."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imapvm.storage.imap import utf7
from imapvm.storage.imap.protocol import ResponseFramer, parse_response
from imapvm.storage.imap.responses import (
    by_uid,
    compress_set,
    expand_set,
    fetch_items,
    list_entries,
    personal_namespace,
    quota,
    search_uids,
    status_items,
)


def parse_all(data: bytes):  # type: ignore[no-untyped-def]
    return [parse_response(r) for r in ResponseFramer().feed(data)]


def test_fetch_items_merge_split_responses() -> None:
    rs = parse_all(b"* 3 FETCH (UID 9 FLAGS (\\Seen))\r\n"
                   b"* 3 FETCH (RFC822.SIZE 120 BODY[HEADER.FIELDS (SUBJECT)] {4}\r\nab\r\n)\r\n"
                   b"* 4 FETCH (FLAGS () UID 10 MODSEQ (77))\r\n")
    items = fetch_items(rs)
    assert items[3].uid == 9
    assert items[3].flags == {"\\Seen"}
    assert items[3].size == 120
    assert items[3].section("BODY[HEADER") == b"ab\r\n"
    assert items[4].flags == frozenset()
    assert items[4].modseq == 77
    assert set(by_uid(items)) == {9, 10}


def test_fetch_items_follow_expunges_between_responses() -> None:
    """A header FETCH on a connection that NOTIFY also feeds: another session's EXPUNGE lands
    between our answer for UID 20 (then message 13) and a flag push for UID 21 (message 13 once
    12 is gone). Merged by the old numbers, UID 20's headers were filed under UID 21 and UID 20
    had none: that voicemail was never counted again (the lamp one behind for good)."""
    rs = parse_all(b"* 13 FETCH (UID 20 BODY[HEADER.FIELDS (X-ASTERISK-VM-EXTENSION)] {31}\r\n"
                   b"X-Asterisk-VM-Extension: 1000\r\n)\r\n"
                   b"* 12 EXPUNGE\r\n"
                   b"* 13 FETCH (UID 21 FLAGS (\\Seen))\r\n"
                   b"* 11 FETCH (FLAGS (\\Deleted) UID 18)\r\n"
                   b"* 11 EXPUNGE\r\n")
    items = by_uid(fetch_items(rs))
    assert set(items) == {18, 20, 21}
    assert items[20].section("BODY[HEADER") == b"X-Asterisk-VM-Extension: 1000\r\n"
    assert items[20].flags is None
    assert items[21].section("BODY[HEADER") is None
    assert items[21].flags == {"\\Seen"}
    assert items[18].flags == {"\\Deleted"}  # data that arrived before its expunge is kept


@given(st.lists(st.tuples(st.sampled_from(["fetch", "expunge"]), st.integers(0, 99)),
                max_size=16), st.integers(2, 12))
def test_fetch_items_never_merge_two_messages(ops: list[tuple[str, int]], size: int) -> None:
    """Whatever the interleaving of FETCH data and EXPUNGEs, each UID's data stays its own."""
    uids = list(range(100, 100 + size))  # the mailbox, in sequence order
    wire, fetched = b"", set()
    for op, at in ops:
        if not uids:
            break
        pos = at % len(uids)
        if op == "expunge":
            del uids[pos]
            wire += b"* %d EXPUNGE\r\n" % (pos + 1)
        else:
            wire += b"* %d FETCH (UID %d RFC822.SIZE %d)\r\n" % (pos + 1, uids[pos], uids[pos])
            fetched.add(uids[pos])
    items = by_uid(fetch_items(parse_all(wire)))
    assert set(items) == fetched
    for uid, item in items.items():
        assert item.size == uid


def test_status_search_esearch() -> None:
    rs = parse_all(b'* STATUS "Old" (MESSAGES 2 UIDNEXT 3 UNSEEN 1)\r\n'
                   b"* SEARCH 2 5\r\n"
                   b'* ESEARCH (TAG "V1") UID ALL 7:9,12\r\n')
    assert status_items(rs) == {"Old": {"MESSAGES": 2, "UIDNEXT": 3, "UNSEEN": 1}}
    assert search_uids(rs) == [2, 5, 7, 8, 9, 12]


def test_sets_round_trip() -> None:
    assert compress_set([9, 1, 2, 3, 3]) == "1:3,9"
    assert expand_set("1:3,9") == [1, 2, 3, 9]
    assert expand_set("5:3") == [3, 4, 5]


@given(st.sets(st.integers(min_value=1, max_value=5000), min_size=1, max_size=200))
def test_compress_expand_inverse(uids: set[int]) -> None:
    assert expand_set(compress_set(uids)) == sorted(uids)


def test_list_and_namespace() -> None:
    rs = parse_all(b'* LIST (\\HasChildren) "." INBOX.Work\r\n'
                   b'* LIST (\\Noselect) NIL ""\r\n'
                   b'* NAMESPACE (("INBOX." ".")) NIL NIL\r\n')
    entries = list_entries(rs)
    assert entries[0].name == "INBOX.Work"
    assert entries[0].delimiter == "."
    assert "\\HASCHILDREN" in entries[0].attributes
    assert entries[1].delimiter is None
    assert personal_namespace(rs) == ("INBOX.", ".")


def test_quota_takes_the_tightest_root() -> None:
    rs = parse_all(b'* QUOTAROOT INBOX "User quota" "Domain"\r\n'
                   b'* QUOTA "User quota" (STORAGE 60 100 MESSAGE 3 1000)\r\n'
                   b'* QUOTA "Domain" (STORAGE 10 1000)\r\n')
    q = quota(rs)
    assert (q.storage_used, q.storage_limit) == (60, 100)
    assert (q.messages_used, q.messages_limit) == (3, 1000)


def test_utf7_known_values() -> None:
    assert utf7.encode("Entwürfe") == "Entw&APw-rfe"
    assert utf7.encode("A&B") == "A&-B"
    assert utf7.encode("台北") == "&U,BTFw-"
    assert utf7.decode("&U,BTFw-") == "台北"
    assert utf7.decode("A&-B") == "A&B"
    assert utf7.decode("broken&AAA") == "broken&AAA"


@given(st.text(max_size=30))
def test_utf7_round_trip(name: str) -> None:
    assert utf7.decode(utf7.encode(name)) == name
    assert utf7.encode(name).isascii()
