"""Model-based tests of the store (issue 17): hypothesis drives random sequences of phone and
operator actions (deposit, list, play, save to each folder, delete, undelete, greetings) and of
another mail client's actions (read, flag \\Deleted, expunge, move away, append ordinary mail and
voicemail of other mailboxes: a sibling whose number is a prefix, another context) plus lost
connections, against the real servers: Dovecot (`/`, `.`, restricted), Cyrus, and the spool.

After every step: the counts equal the model's; every message that is not a voicemail of the
mailbox is byte for byte and flag for flag what it was; no operation on a foreign or stale id
succeeded; and (at the end of each run) the restricted server saw only offered commands.

Bounded for CI (IMAPVM_MODEL_EXAMPLES examples of at most IMAPVM_MODEL_STEPS steps per server,
default 8 and 20); a longer hunt: `IMAPVM_MODEL_EXAMPLES=300 IMAPVM_MODEL_STEPS=50 .venv/bin/python
-m pytest --timeout=7200 tests/storage/test_store_model.py`."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from imapvm.storage.audio_parts import extract_audio
from imapvm.storage.base import (
    Folder,
    GreetingKind,
    MailboxRef,
    MessageGone,
    MessageRef,
    NotAVoicemail,
)
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.store import ImapStore
from imapvm.storage.spool import SpoolStore
from tests.conftest import make_account
from tests.support.cyrus import CyrusServer
from tests.support.dovecot import DovecotServer
from tests.support.mailclient import MailClient, simple_message
from tests.support.vmmail import message_id, voicemail

T = TypeVar("T")
BOX = MailboxRef("1234", "default")
EXAMPLES = int(os.environ.get("IMAPVM_MODEL_EXAMPLES", "8"))
STEPS = int(os.environ.get("IMAPVM_MODEL_STEPS", "20"))
SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                    database=None, suppress_health_check=list(HealthCheck))
SAVE_TARGETS = [Folder.INBOX, Folder.OLD, Folder.WORK, Folder.FAMILY, Folder.FRIENDS,
                Folder.CUST1, Folder.CUST5]
FOREIGN_KINDS = ["ordinary", "own deleted", "sibling 123", "box 12345", "context other",
                 "mentions 1234"]


@dataclass
class Vm:
    """A voicemail of BOX as the model knows it."""

    ref: MessageRef
    mid: str
    folder: Folder  # Folder.INBOX stands for the main folder (INBOX, Old and Urgent)
    seen: bool
    urgent: bool

    def in_view(self, view: Folder) -> bool:
        if view in (Folder.INBOX, Folder.OLD, Folder.URGENT):
            if self.folder is not Folder.INBOX:
                return False
            if view is Folder.OLD:
                return self.seen
            if view is Folder.URGENT:
                return self.urgent and not self.seen
            return not self.seen and not self.urgent
        return self.folder is view


def _foreign_message(kind: str) -> tuple[bytes, str]:
    """(message, flags) another client appends."""
    if kind == "ordinary":
        return simple_message("lunch?"), ""
    if kind == "own deleted":
        return simple_message("old newsletter"), "\\Deleted"
    if kind == "sibling 123":
        return voicemail("123"), ""
    if kind == "box 12345":
        return voicemail("12345"), "\\Seen"
    if kind == "context other":
        return voicemail("1234", "other"), ""
    return simple_message("mentions", headers={"X-Asterisk-VM-Extension": "x1234x",
                                               "X-Asterisk-VM-Context": "default"}), "\\Flagged"


class ImapModel(RuleBasedStateMachine):
    """One fresh account per example; the store under test and a plain imaplib mail client."""

    server: DovecotServer | CyrusServer  # set by the test

    vms = Bundle("vms")
    stale = Bundle("stale")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.acct = make_account(self.server, "model")
        self.mark = (self.server.command_mark()
                     if self.server.variant == "restricted" else 0)
        self.client = MailClient(self.server, self.acct.user, self.acct.password)
        self.client.select("INBOX")
        _, data = self.client.conn.status("INBOX", "(UIDVALIDITY)")
        self.validity = int(data[0].split(b"UIDVALIDITY ")[1].rstrip(b")"))
        self.expunge = True
        self.store: ImapStore | None = None
        self.model: dict[str, Vm] = {}  # Message-ID -> Vm
        self.deleted_present: dict[str, Vm] = {}  # flagged \Deleted, not expunged (ours)
        self.foreign: dict[int, tuple[bytes, set[str]]] = {}  # INBOX uid -> (bytes, flags)
        self.greetings: dict[GreetingKind, bytes] = {}
        self.archive = "Archive"

    # -- plumbing ---------------------------------------------------------------------------
    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def _settings(self, box: MailboxRef) -> ImapSettings:
        return ImapSettings(host=self.acct.host, port=self.acct.port, user=self.acct.user,
                            password=self.acct.password, vm_tag=box.mailbox,
                            context=box.context, expunge_on_hangup=self.expunge, pool_size=2)

    def teardown(self) -> None:
        try:
            if self.store is not None:
                self.run(self.store.aclose())
            self.client.close()
        finally:
            self.loop.close()
        if self.server.variant == "restricted":
            self.server.assert_only_offered(since=self.mark)  # type: ignore[union-attr]

    def _gone(self, op: Awaitable[object], kind: type[MessageGone] = MessageGone) -> None:
        try:
            self.run(op)
        except kind:
            return
        raise AssertionError(f"an operation on a foreign or stale id succeeded ({kind})")

    def _refresh_flags(self) -> None:
        """After the other client's EXPUNGE: forget foreign messages it removed."""
        self.client.select("INBOX")
        present = set(self.client.uids())
        for uid in list(self.foreign):
            if uid not in present:
                del self.foreign[uid]

    # -- set-up -----------------------------------------------------------------------------
    @initialize(expunge=st.booleans())
    def start(self, expunge: bool) -> None:
        self.expunge = expunge
        self.store = ImapStore(self._settings)

    # -- the phone and the operator ---------------------------------------------------------
    @rule(target=vms, urgent=st.booleans())
    def deposit(self, urgent: bool) -> str:
        assert self.store is not None
        email = voicemail("1234")
        ref = self.run(self.store.deposit(BOX, email, urgent=urgent))
        mid = message_id(email)
        self.model[mid] = Vm(ref, mid, Folder.INBOX, seen=False, urgent=urgent)
        return mid

    @rule(view=st.sampled_from(list(Folder)))
    def listing(self, view: Folder) -> None:
        assert self.store is not None
        got = {m.ref for m in self.run(self.store.list(BOX, view))}
        assert got == {v.ref for v in self.model.values() if v.in_view(view)}, view

    @rule(mid=vms)
    def play(self, mid: str) -> None:
        vm = self.model.get(mid)
        if vm is None:
            return
        assert self.store is not None
        audio = self.run(self.store.fetch_audio(BOX, vm.ref))
        assert audio.message.data
        self.run(self.store.mark_heard(BOX, vm.ref))
        vm.seen = True

    @rule(mid=vms)
    def unheard(self, mid: str) -> None:
        vm = self.model.get(mid)
        if vm is None:
            return
        assert self.store is not None
        self.run(self.store.mark_unheard(BOX, vm.ref))
        vm.seen = False

    @rule(target=stale, mid=vms, folder=st.sampled_from(SAVE_TARGETS))
    def save(self, mid: str, folder: Folder) -> Any:
        vm = self.model.get(mid)
        if vm is None:
            return multiple()
        assert self.store is not None
        old = vm.ref
        new = self.run(self.store.save_to_folder(BOX, vm.ref, folder))
        if folder.in_main_folder and vm.folder is Folder.INBOX:
            assert new == old  # Old <-> INBOX is a flag change
            vm.seen = folder is Folder.OLD
            return multiple()
        if folder is vm.folder:
            assert new == old
            return multiple()
        vm.folder = Folder.INBOX if folder.in_main_folder else folder
        if folder is Folder.OLD:
            vm.seen = True
        vm.ref = new
        return old

    @rule(target=stale, mid=consumes(vms))
    def delete(self, mid: str) -> Any:
        vm = self.model.pop(mid, None)
        if vm is None:
            return multiple()
        assert self.store is not None
        self.run(self.store.delete(BOX, [vm.ref]))
        if not self.expunge:
            self.deleted_present[mid] = vm
        return vm.ref

    @precondition(lambda self: bool(self.deleted_present))
    @rule(data=st.data())
    def undelete(self, data: st.DataObject) -> None:
        mid = data.draw(st.sampled_from(sorted(self.deleted_present)))
        vm = self.deleted_present.pop(mid)
        assert self.store is not None
        self.run(self.store.undelete(BOX, vm.ref))
        self.model[mid] = vm

    @rule(ref=stale, op=st.sampled_from(["fetch", "heard", "unheard", "save", "delete"]))
    def stale_id(self, ref: MessageRef, op: str) -> None:
        if any(v.ref == ref for v in self.model.values()):
            return  # a flag change kept the id valid
        if any(v.ref == ref for v in self.deleted_present.values()) and op == "undelete":
            return
        self._gone(self._op(op, ref))

    @precondition(lambda self: bool(self.foreign))
    @rule(data=st.data(), op=st.sampled_from(["fetch", "heard", "unheard", "save", "delete",
                                              "undelete"]))
    def foreign_id(self, data: st.DataObject, op: str) -> None:
        uid = data.draw(st.sampled_from(sorted(self.foreign)))
        self._gone(self._op(op, MessageRef("INBOX", self.validity, uid)), NotAVoicemail)

    def _op(self, op: str, ref: MessageRef) -> Awaitable[object]:
        assert self.store is not None
        if op == "fetch":
            return self.store.fetch(BOX, ref)
        if op == "heard":
            return self.store.mark_heard(BOX, ref)
        if op == "unheard":
            return self.store.mark_unheard(BOX, ref)
        if op == "save":
            return self.store.save_to_folder(BOX, ref, Folder.WORK)
        if op == "undelete":
            return self.store.undelete(BOX, ref)
        return self.store.delete(BOX, [ref])

    @rule(kind=st.sampled_from(list(GreetingKind)), action=st.sampled_from(["put", "delete"]))
    def greeting(self, kind: GreetingKind, action: str) -> None:
        assert self.store is not None
        if action == "put":
            email = voicemail("1234", message_type=kind.value)
            self.run(self.store.put_greeting(BOX, kind, email))
            self.greetings[kind] = extract_audio(email).message.data
        else:
            self.run(self.store.delete_greeting(BOX, kind))
            self.greetings.pop(kind, None)
        got = self.run(self.store.get_greeting(BOX, kind))
        assert (got.data if got else None) == self.greetings.get(kind)

    @rule()
    def lost_connections(self) -> None:
        """The server drops every pooled connection under imapvm's feet (a NAT timeout, a
        restart behind a load balancer): the next idempotent operation retries unnoticed."""
        assert self.store is not None
        for acct in self.store._accounts.values():
            for conn in acct._idle:
                # the connection's own transport: fail loudly if a refactoring renames it
                sock = conn._writer.get_extra_info("socket")
                assert sock is not None, "cannot reach the pooled connection's socket"
                sock.shutdown(socket.SHUT_RDWR)
        self.run(self.store.counts(BOX))

    # -- the other mail client ---------------------------------------------------------------
    @rule(kind=st.sampled_from(FOREIGN_KINDS))
    def client_appends(self, kind: str) -> None:
        message, flags = _foreign_message(kind)
        self.client.select("INBOX")
        before = set(self.client.uids())
        uid = self.client.append("INBOX", message, flags=flags)
        if uid is None:
            [uid] = set(self.client.uids()) - before
        self.foreign[uid] = (self.client.fetch(uid), self.client.flags(uid) - {"\\Recent"})

    def _main(self, mid: str) -> Vm | None:
        vm = self.model.get(mid)
        return vm if vm is not None and vm.folder is Folder.INBOX else None

    @rule(mid=vms)
    def client_reads(self, mid: str) -> None:
        vm = self._main(mid)
        if vm is None:
            return
        self.client.select("INBOX")
        self.client.read(vm.ref.uid)
        vm.seen = True

    @rule(target=stale, mid=vms)
    def client_flags_deleted(self, mid: str) -> Any:
        vm = self._main(mid)
        if vm is None:
            return multiple()
        self.client.select("INBOX")
        self.client.store([vm.ref.uid], "+FLAGS", "\\Deleted")
        del self.model[mid]
        self.deleted_present[mid] = vm  # \Deleted by the user: undelete may bring it back
        return vm.ref

    @rule()
    def client_expunges(self) -> None:
        self.client.select("INBOX")
        self.client.expunge()
        self.deleted_present = {m: v for m, v in self.deleted_present.items()
                                if v.folder is not Folder.INBOX}
        self._refresh_flags()

    @rule(target=stale, mid=vms)
    def client_moves_away(self, mid: str) -> Any:
        vm = self._main(mid)
        if vm is None:
            return multiple()
        self.client.create(self.archive)
        self.client.select("INBOX")
        self.client.move([vm.ref.uid], self.archive)  # COPY, \Deleted, EXPUNGE
        del self.model[mid]
        self.deleted_present = {m: v for m, v in self.deleted_present.items()
                                if v.folder is not Folder.INBOX}
        self._refresh_flags()
        return vm.ref

    # -- invariants ---------------------------------------------------------------------------
    @invariant()
    def counts_match(self) -> None:
        if self.store is None:
            return
        c = self.run(self.store.counts(BOX))
        main = [v for v in self.model.values() if v.folder is Folder.INBOX]
        want = (sum(not v.seen and not v.urgent for v in main), sum(v.seen for v in main),
                sum(v.urgent and not v.seen for v in main))
        assert (c.new, c.old, c.urgent) == want

    @invariant()
    def foreign_untouched(self) -> None:
        if not self.foreign:
            return
        self.client.select("INBOX")
        present = set(self.client.uids())
        for uid, (data, flags) in self.foreign.items():
            assert uid in present, f"foreign message {uid} vanished"
            assert self.client.fetch(uid) == data
            assert self.client.flags(uid) - {"\\Recent"} == flags, uid


@pytest.mark.parametrize("variant", ["dovecot_slash", "dovecot_dot", "dovecot_restricted",
                                     "cyrus"])
def test_store_model_imap(variant: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue(variant)

    class Machine(ImapModel):
        pass

    Machine.server = server
    run_state_machine_as_test(Machine, settings=SETTINGS)


# -- the spool ----------------------------------------------------------------------------------

class SpoolModel(RuleBasedStateMachine):
    """The same promises on Asterisk's file spool; "another client" is another writer of the
    tree (a second store over the same directory: Asterisk or another imapvm node)."""

    vms = Bundle("vms")
    stale = Bundle("stale")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.store = SpoolStore(self.dir)
        self.other = SpoolStore(self.dir)
        self.model: dict[str, Vm] = {}
        self.foreign: list[MessageRef] = []

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def teardown(self) -> None:
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _foreign_files(self) -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in self.dir.rglob("*")
                if p.is_file() and not str(p.relative_to(self.dir)).startswith("default/1234/")
                and not p.name.startswith(".lock")}

    @rule(target=vms, urgent=st.booleans())
    def deposit(self, urgent: bool) -> str:
        email = voicemail("1234")
        ref = self.run(self.store.deposit(BOX, email, urgent=urgent))
        mid = message_id(email)
        self.model[mid] = Vm(ref, mid, Folder.INBOX, seen=False, urgent=urgent)
        return mid

    @rule(box=st.sampled_from([MailboxRef("123"), MailboxRef("12345"),
                               MailboxRef("1234", "other")]))
    def other_box_deposit(self, box: MailboxRef) -> None:
        ref = self.run(self.other.deposit(box, voicemail(box.mailbox, box.context)))
        self.foreign.append(ref)
        self.snapshot = self._foreign_files()

    @rule(view=st.sampled_from(list(Folder)))
    def listing(self, view: Folder) -> None:
        got = {m.ref.key for m in self.run(self.store.list(BOX, view))}
        assert got == {v.ref.key for v in self.model.values() if v.in_view(view)}, view

    @rule(mid=vms)
    def play(self, mid: str) -> None:
        vm = self.model.get(mid)
        if vm is None:
            return
        assert self.run(self.store.fetch_audio(BOX, vm.ref)).message.data
        self.run(self.store.mark_heard(BOX, vm.ref))
        if vm.folder is Folder.INBOX:
            vm.seen = True

    @rule(target=stale, mid=vms, folder=st.sampled_from(SAVE_TARGETS))
    def save(self, mid: str, folder: Folder) -> Any:
        vm = self.model.get(mid)
        if vm is None:
            return multiple()
        new = self.run(self.store.save_to_folder(BOX, vm.ref, folder))
        vm.ref = new
        if folder.in_main_folder:
            vm.folder, vm.seen = Folder.INBOX, folder is Folder.OLD
            vm.urgent = False  # the spool's Urgent is a folder: saving leaves it
        else:
            vm.folder = folder
        return multiple()

    @rule(target=stale, mid=consumes(vms), by_other=st.booleans())
    def delete(self, mid: str, by_other: bool) -> Any:
        vm = self.model.pop(mid, None)
        if vm is None:
            return multiple()
        self.run((self.other if by_other else self.store).delete(BOX, [vm.ref]))
        return vm.ref

    @rule(ref=stale, op=st.sampled_from(["fetch", "heard", "save", "delete"]))
    def stale_id(self, ref: MessageRef, op: str) -> None:
        try:
            self.run(self._op(op, ref))
        except MessageGone:
            return
        raise AssertionError(f"{op} of the stale id {ref} succeeded")

    @precondition(lambda self: bool(self.foreign))
    @rule(data=st.data(), op=st.sampled_from(["fetch", "heard", "save", "delete"]))
    def foreign_id(self, data: st.DataObject, op: str) -> None:
        ref = data.draw(st.sampled_from(self.foreign))
        try:
            self.run(self._op(op, ref))
        except NotAVoicemail:
            return
        raise AssertionError(f"{op} of the foreign id {ref} succeeded")

    def _op(self, op: str, ref: MessageRef) -> Awaitable[object]:
        if op == "fetch":
            return self.store.fetch(BOX, ref)
        if op == "heard":
            return self.store.mark_heard(BOX, ref)
        if op == "save":
            return self.store.save_to_folder(BOX, ref, Folder.WORK)
        return self.store.delete(BOX, [ref])

    @rule(kind=st.sampled_from(list(GreetingKind)))
    def greeting(self, kind: GreetingKind) -> None:
        email = voicemail("1234", message_type=kind.value)
        self.run(self.store.put_greeting(BOX, kind, email))
        got = self.run(self.store.get_greeting(BOX, kind))
        assert got is not None
        assert got.data == extract_audio(email).message.data

    @invariant()
    def counts_match(self) -> None:
        c = self.run(self.store.counts(BOX))
        main = [v for v in self.model.values() if v.folder is Folder.INBOX]
        assert (c.new, c.old, c.urgent) == (
            sum(not v.seen and not v.urgent for v in main), sum(v.seen for v in main),
            sum(v.urgent and not v.seen for v in main))

    @invariant()
    def foreign_untouched(self) -> None:
        if self.foreign:
            assert self._foreign_files() == self.snapshot


def test_store_model_spool() -> None:
    run_state_machine_as_test(SpoolModel, settings=SETTINGS)
