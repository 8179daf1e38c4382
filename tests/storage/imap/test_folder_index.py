"""Folder indexes: what a store learnt of a folder survives a restart, and an unchanged folder
(STATUS as it was) is answered from the last exact view, while any change another client makes
in between, or while imapvm was down, is seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapvm.storage.base import Folder, MailboxRef
from imapvm.storage.imap.connection import ImapConnection
from imapvm.storage.imap.folder_index import FolderIndex, IndexFiles, Key, View
from imapvm.storage.imap.store import ImapStore, _in_view, _Scan
from tests.conftest import Account, make_account
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import AsyncMailClient, simple_message
from tests.support.vmmail import voicemail

from .test_store import settings_for

BOX = MailboxRef("1234", "default")


def test_index_round_trips_through_json() -> None:
    index = FolderIndex()
    who = ("1234", "default")
    index.keys = {3: Key("1234", "default", "", "<a@x>"), 9: Key("1234", "default", "Greeting",
                                                                "<b@x>")}
    index.checked[who] = 12
    index.matches[who] = {3, 9}
    index.views[who] = View((13, 10, 77), {3, 9}, {3}, set())
    back = FolderIndex.from_json(index.to_json())
    assert back.checked == {who: 12}
    assert back.matches == {who: {3, 9}}
    assert back.keys[9].mtype == "Greeting"
    assert back.keys[3].mtype == ""
    assert back.views[who] == index.views[who]


def test_index_of_two_boxes_round_trips_and_types_only_name_matches() -> None:
    index = FolderIndex()
    a, b = ("1234", "default"), ("1234", "other")
    index.keys = {1: Key(*a, "", ""), 2: Key(*b, "Busy", ""), 5: Key(*a, "Unavail", "")}
    index.checked = {a: 6, b: 6}
    index.matches = {a: {1, 5}, b: {2}}
    data = index.to_json()
    back = FolderIndex.from_json(data)
    assert back.matches == {a: {1, 5}, b: {2}}
    assert {u: (k.ext, k.ctx, k.mtype) for u, k in back.keys.items()} == {
        1: (*a, ""), 2: (*b, "Busy"), 5: (*a, "Unavail")}
    # a type for a UID the box never matched names nothing (and takes no other box's UID)
    boxes = data["boxes"]
    assert isinstance(boxes, list)
    assert boxes[0]["types"] == {"Unavail": [5]}
    boxes[1]["types"]["Busy"].append(1)
    assert FolderIndex.from_json(data).keys[1].mtype == ""
    boxes[1]["types"] = ["Busy"]
    with pytest.raises(TypeError):
        FolderIndex.from_json(data)


def test_unusable_index_files_are_ignored(tmp_path: Path) -> None:
    files = IndexFiles(tmp_path)
    path = files._path("acct", "INBOX", 5)
    assert path is not None
    path.write_text('{"version": 99}')
    assert files.load("acct", "INBOX", 5).checked == {}
    # version 3 (types one by one) is read again in the new layout
    path.write_text('{"version": 3, "boxes": [{"ext": "1234", "ctx": "default", "checked": 9,'
                    ' "matches": [1, 2], "types": {"1": "Message"}, "view": null}]}')
    assert files.load("acct", "INBOX", 5).checked == {}
    # version 2 indexes may lack a voicemail for good (the scan took NOTIFY's reports of other
    # messages for answers): rebuilt
    path.write_text('{"version": 2, "boxes": [{"ext": "1234", "ctx": "default", "checked": 9,'
                    ' "matches": [1, 2], "types": {}, "view": null}]}')
    assert files.load("acct", "INBOX", 5).checked == {}
    path.write_text("not json")
    assert files.load("acct", "INBOX", 5).checked == {}


class SearchCounter:
    """Counts the SEARCH commands a store sends (a view reused sends none)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.searches = 0
        original = ImapConnection.execute

        async def execute(conn: ImapConnection, name: str, *args: object, **kw: object):  # type: ignore[no-untyped-def]
            if name == "UID" and args and args[0] == "SEARCH":
                self.searches += 1
            return await original(conn, name, *args, **kw)  # type: ignore[arg-type]

        async def pipeline(conn: ImapConnection, commands, **kw):  # type: ignore[no-untyped-def]
            self.searches += sum(1 for n, a in commands if n == "UID" and a[0] == "SEARCH")
            return await original_pipeline(conn, commands, **kw)

        original_pipeline = ImapConnection.pipeline
        monkeypatch.setattr(ImapConnection, "execute", execute)
        monkeypatch.setattr(ImapConnection, "pipeline", pipeline)


async def test_unchanged_folder_is_answered_from_the_view_and_changes_are_seen(
    dovecot_slash: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    acct: Account = make_account(dovecot_slash)
    client = await AsyncMailClient.connect(dovecot_slash, acct.user, acct.password)
    try:
        await client.select("INBOX")
        for i in range(3):
            await client.append("INBOX", voicemail("1234", size=300))
            await client.append("INBOX", voicemail("12345", size=300))  # a sibling
            await client.append("INBOX", simple_message(f"mail {i}"))
        store = ImapStore(settings_for(acct), index_dir=tmp_path)
        first = await store.counts(BOX)
        assert (first.new, first.old) == (3, 0)
        counter = SearchCounter(monkeypatch)
        again = await store.counts(BOX)
        assert (again.new, again.old) == (3, 0)
        assert counter.searches == 0  # nothing changed: STATUS alone answered

        # another client reads one of ours: HIGHESTMODSEQ moves
        ours = [m.ref.uid for m in await store.list(BOX, Folder.INBOX)]
        searches = counter.searches
        await client.store([ours[0]], "+FLAGS", "\\Seen")
        changed = await store.counts(BOX)
        assert (changed.new, changed.old) == (2, 1)
        assert counter.searches > searches
        listed = await store.list(BOX, Folder.OLD)
        assert [m.ref.uid for m in listed] == [ours[0]]
        # each view is worked out once per change and reused while nothing changes: a change
        # moves a message between the views of every kind of open, never leaves one behind
        await client.store([ours[2]], "+FLAGS", "\\Flagged")
        for second in (False, True):  # the second time, the first one's answer is reused
            searches = counter.searches
            urgent = await store.counts(BOX)
            assert (urgent.new, urgent.old, urgent.urgent) == (1, 1, 1)
            assert [m.ref.uid for m in await store.list(BOX, Folder.URGENT)] == [ours[2]]
            assert [m.ref.uid for m in await store.list(BOX, Folder.INBOX)] == [ours[1]]
            assert [m.ref.uid for m in await store.list(BOX, Folder.INBOX, limit=0)] == []
            assert (counter.searches == searches) == second  # nothing changed meanwhile
        await client.store([ours[2]], "-FLAGS", "\\Flagged")
        assert (await store.counts(BOX)).urgent == 0
        assert [m.ref.uid for m in await store.list(BOX, Folder.INBOX)] == ours[1:]
        await store.aclose()

        # a new process: the saved index and view are used, and what changed while it was
        # away (a new voicemail, an expunge) is seen
        await client.append("INBOX", voicemail("1234", size=300))
        await client.delete([ours[1]])
        restarted = ImapStore(settings_for(acct), index_dir=tmp_path)
        after = await restarted.counts(BOX)
        assert (after.new, after.old) == (2, 1)
        searches = counter.searches
        assert (await restarted.counts(BOX)).new == 2
        assert counter.searches == searches
        await restarted.aclose()
        assert [p.suffix for p in tmp_path.iterdir()] == [".json"]  # noqa: ASYNC240
    finally:
        await client.close()


async def test_restricted_server_without_condstore_always_scans(
    dovecot_restricted: DovecotServer, tmp_path: Path,
) -> None:
    acct: Account = make_account(dovecot_restricted)
    mark = dovecot_restricted.command_mark()
    client = await AsyncMailClient.connect(dovecot_restricted, acct.user, acct.password)
    try:
        await client.append("INBOX", voicemail("1234", size=300))
        store = ImapStore(settings_for(acct), index_dir=tmp_path)
        assert (await store.counts(BOX)).new == 1
        await client.select("INBOX")
        [uid] = await client.uids()
        await client.store([uid], "+FLAGS", "\\Seen")
        assert (await store.counts(BOX)).old == 1
        await store.aclose()
    finally:
        await client.close()
    dovecot_restricted.assert_only_offered(since=mark)


@pytest.mark.parametrize("folder", list(Folder))
def test_a_scans_folder_views_are_the_flag_rule_of_each_folder(folder: Folder) -> None:
    """``_Scan.in_folder`` (set operations, once per view) keeps ``_in_view``'s rule (the
    one the listing applies to fetched flags): new is neither seen nor flagged, old is seen,
    urgent is flagged and not seen, a real folder is everything."""
    uids = list(range(1, 41))
    seen, flagged = {u for u in uids if u % 2}, {u for u in uids if u % 3 == 0}
    scan = _Scan(7, uids, seen, flagged)
    expected = [u for u in uids if _in_view(folder, u in seen, u in flagged)]
    assert scan.in_folder(folder) == expected
    assert scan.in_folder(folder) is scan.in_folder(folder)  # worked out once
