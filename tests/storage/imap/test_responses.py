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
