"""`imapvm doctor`: check everything the server depends on, and say what it will do.

For every IMAP account in voicemail.conf: login (as the mailbox owner or the master user), the
server's capabilities and the strategies imapvm picks from them (how it expunges, moves, watches
and counts), the hierarchy delimiter and namespace, the voicemail folders, quota and counts of
each mailbox. Then the SIP listen addresses (free to bind?), the prompt set, and the outbox
(deposits waiting, and each one set aside for good with its reason). Exit status 1
when anything is broken."""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from imapvm.audio import language, prompts
from imapvm.commands._runtime import add_config_args, add_json_arg, print_json, run_async
from imapvm.config.loader import LoadedConfig
from imapvm.config.model import StorageKind
from imapvm.ivr import lang
from imapvm.notify.queue import rejected as rejected_mail
from imapvm.storage.base import Folder, MailboxRef, StoreError
from imapvm.storage.imap.account import Account
from imapvm.storage.imap.connection import ImapError
from imapvm.storage.imap.responses import list_entries
from imapvm.storage.router import RoutingStore


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("doctor", help="check IMAP servers, mailboxes, SIP and prompts",
                              description=__doc__)
    add_json_arg(p)
    add_config_args(p)
    p.set_defaults(handler=lambda args: run_async(args, _doctor))


@dataclass
class Check:
    subject: str
    item: str
    ok: bool
    detail: str
    #: Prompt checks: the names missing (``--json`` lists them all; the table says how many).
    missing: list[str] = field(default_factory=list)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, subject: str, item: str, ok: bool, detail: str,
            missing: list[str] | None = None) -> None:
        self.checks.append(Check(subject, item, ok, detail, list(missing or ())))


def strategies(caps: frozenset[str], pollfreq: int) -> dict[str, str]:
    """What imapvm will do on a server with these capabilities."""
    return {
        "expunge": "UID EXPUNGE of exactly the deleted voicemails (UIDPLUS)" if "UIDPLUS" in caps
        else "EXPUNGE only when no other message is flagged \\Deleted (no UIDPLUS)",
        "move": "MOVE" if "MOVE" in caps else "COPY, then delete as above (no MOVE)",
        "watch": "NOTIFY on one connection" if "NOTIFY" in caps
        else (f"IDLE on the voicemail folder, other folders every {pollfreq} s"
              if "IDLE" in caps else f"polling every {pollfreq} s"),
        "count": "pipelined ESEARCH flag searches" if "ESEARCH" in caps
        else "SEARCH flag searches, one at a time (no ESEARCH)",
        "quota": "GETQUOTAROOT and maxmsg" if "QUOTA" in caps else "maxmsg only (no QUOTA)",
        "master login": "AUTHENTICATE PLAIN with authorization id" if "AUTH=PLAIN" in caps
        else "LOGIN user*master (Dovecot syntax; no AUTH=PLAIN)",
    }


async def _doctor(args: argparse.Namespace, loaded: LoadedConfig, store: RoutingStore) -> int:
    report = Report()
    boxes = loaded.voicemail.all_effective()
    accounts: dict[tuple[object, ...], list[MailboxRef]] = {}
    for ms in boxes:
        if ms.storage is StorageKind.IMAP:
            box = MailboxRef(ms.mailbox, ms.context)
            accounts.setdefault(store.imap.account(box)[1].identity, []).append(
                MailboxRef(ms.mailbox, ms.context))
    if not boxes:
        report.add("config", "mailboxes", True, f"none configured in {loaded.voicemail_path}")
    for members in accounts.values():
        await _check_account(report, store, members)
    spool_boxes = [MailboxRef(ms.mailbox, ms.context) for ms in boxes
                   if ms.storage is StorageKind.SPOOL]
    for box in spool_boxes:
        await _check_box(report, store, box)
    _check_sip(report, loaded)
    _check_prompts(report, loaded)
    _check_outbox(report, loaded)
    failed = [c for c in report.checks if not c.ok]
    if args.json:
        print_json({"ok": not failed, "checks": [c.__dict__ for c in report.checks]})
    else:
        table = Table(title="imapvm doctor")
        for col in ("", "subject", "check", "detail"):
            table.add_column(col)
        for c in report.checks:
            table.add_row("[green]ok[/]" if c.ok else "[red]FAIL[/]", c.subject, c.item, c.detail)
        Console().print(table)
        print(f"{len(failed)} problem(s)" if failed else "everything looks right")
    return 1 if failed else 0


async def _check_account(report: Report, store: RoutingStore, members: list[MailboxRef]) -> None:
    first = members[0]
    settings = store.imap.account(first)[1]  # with imapvm.toml's [imap] login method
    acct = Account(settings)
    subject = f"imap {acct.label}"
    t = time.perf_counter()
    try:
        conn = await acct.open_connection()
    except StoreError as exc:
        report.add(subject, "login", False, str(exc))
        return
    try:
        how = ("with Kerberos (GSSAPI)" if settings.gssapi
               else "with an OAuth2 token (XOAUTH2)" if settings.oauth2_token_command
               else f"as master {settings.authuser}" if settings.authuser else "as the owner")
        report.add(subject, "login", True,
                   f"{how}, {(time.perf_counter() - t) * 1000:.0f} ms, "
                   f"{'TLS' if conn.encrypted else 'no TLS'}")
        info = acct.info
        assert info is not None
        report.add(subject, "hierarchy", True,
                   f"delimiter {info.delimiter!r}, personal namespace {info.prefix!r}")
        pollfreq = store.settings(first).pollfreq
        for item, what in strategies(conn.capabilities, pollfreq).items():
            report.add(subject, item, True, what)
        for name in sorted({acct.folder_name(Folder.INBOX)} |
                           ({acct.greetings_folder_name()} if settings.imap_greetings else set())):
            try:
                found = list_entries((await conn.execute("LIST", "", name)).untagged)
            except ImapError as exc:
                report.add(subject, f"folder {name}", False, str(exc))
                continue
            report.add(subject, f"folder {name}", bool(found) or name.upper() == "INBOX",
                       "exists" if found else "missing (will be created on first use)")
    finally:
        await conn.close()
        await acct.aclose()
    for box in members:
        await _check_box(report, store, box)


async def _check_box(report: Report, store: RoutingStore, box: MailboxRef) -> None:
    try:
        c = await store.counts(box)
        q = await store.quota(box)
    except StoreError as exc:
        report.add(f"mailbox {box}", "counts", False, str(exc))
        return
    usage = f"{q.messages}/{q.maxmsg or '∞'} messages"
    if q.storage_limit:
        usage += f", {q.storage_used}/{q.storage_limit} KiB"
    report.add(f"mailbox {box}", "counts", True,
               f"new {c.new}, urgent {c.urgent}, old {c.old}; {usage}; {store.describe(box)}")
    if q.full():
        report.add(f"mailbox {box}", "quota", False, "full: callers will hear vm-mailboxfull")


def _check_sip(report: Report, loaded: LoadedConfig) -> None:
    for addr in loaded.settings.sip.listen:
        family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.bind((addr.host, addr.port))
            report.add("sip", f"listen {addr}", True, "free to bind (UDP)")
        except OSError as exc:
            report.add("sip", f"listen {addr}", False,
                       f"cannot bind: {exc.strerror} (is imapvm serve already running?)")
    _check_tls(report, loaded)


def _check_tls(report: Report, loaded: LoadedConfig) -> None:
    """SIP over TLS: the certificate's names and expiry, and that the key matches it."""
    from imapvm.telephony.transport_tls import TlsSettings, certificate_info, server_context

    s = loaded.settings.sip
    if not s.tls_listen or s.tls_certificate is None or s.tls_private_key is None:
        return
    where = ", ".join(str(e) for e in s.tls_listen)
    try:
        info = certificate_info(s.tls_certificate)
    except ValueError as exc:
        report.add("sip", f"TLS {where}", False, str(exc))
        return
    names = ", ".join(info.names) or info.subject
    expiry = f"expires {info.not_after:%Y-%m-%d %H:%M} UTC ({info.days_left} days)"
    ok = info.days_left > 0
    if info.days_left < 0:
        expiry = f"EXPIRED {info.not_after:%Y-%m-%d %H:%M} UTC"
    elif info.days_left < 14:
        expiry += "; renew it soon (SIGHUP reloads it)"
    try:
        server_context(TlsSettings(s.tls_certificate, s.tls_private_key, s.tls_ca,
                                   s.tls_verify_client))
    except (OSError, ssl.SSLError) as exc:
        report.add("sip", f"TLS {where}", False, f"{names}; {expiry}; unusable: {exc}")
        return
    report.add("sip", f"TLS {where}", ok, f"certificate {s.tls_certificate}: {names}; {expiry}")


def _check_outbox(report: Report, loaded: LoadedConfig) -> None:
    """Deposits and notification e-mails waiting, and those set aside for good (each with its
    reason): they are kept, but nobody gets them until the cause is fixed and they are put
    back (`imapvm outbox retry`)."""
    directory = loaded.settings.paths.outbox
    pending = len(list((directory / "pending").glob("*.json")))
    report.add("outbox", str(directory), True, f"{pending} deposit(s) waiting for the store")
    rejected = sorted((directory / "rejected").glob("*.json"))
    for meta in rejected:
        try:
            item = json.loads(meta.read_text())
            detail = (f"for {item.get('mailbox')}@{item.get('context')}: "
                      f"{item.get('last_error') or 'no reason recorded'}")
        except (OSError, ValueError) as exc:
            detail = f"unreadable: {exc}"
        report.add("outbox", f"rejected {meta.stem}", False,
                   f"{detail}; after fixing the cause: imapvm outbox retry {meta.stem}")
    mail = directory / "mail"
    waiting = len(list(mail.glob("*.json")))
    if waiting:
        report.add("outbox", str(mail), True, f"{waiting} notification e-mail(s) waiting")
    for item in rejected_mail(mail):
        report.add("outbox", f"rejected {item.kind} {item.id}", False,
                   f"to {', '.join(item.recipients)} for {item.mailbox}@{item.context}: "
                   f"{item.last_error or 'no reason recorded'}; after fixing the cause: "
                   f"imapvm outbox retry {item.id}")


def _check_prompts(report: Report, loaded: LoadedConfig) -> None:
    sounds = loaded.settings.paths.sounds
    if not sounds.is_dir():
        report.add("prompts", str(sounds), False,
                   "directory missing (apt-get install asterisk-core-sounds-en-wav)")
        return
    gone = prompts.missing(sounds)
    report.add("prompts", str(sounds), not gone,
               f"all {len(prompts.REQUIRED)} present" if not gone
               else f"{len(gone)} missing: {', '.join(gone[:8])}{' ...' if len(gone) > 8 else ''}")
    for code in _languages_in_use(loaded):
        _check_language(report, sounds, code)


def _languages_in_use(loaded: LoadedConfig) -> list[str]:
    """Every language other than English that ``[general]`` or a mailbox speaks."""
    used = {language.normalize(str(loaded.voicemail.general["language"] or ""))}
    used |= {language.normalize(s.language) for s in loaded.voicemail.all_effective()}
    return sorted(used - {language.DEFAULT})


def _check_language(report: Report, sounds: Path, code: str) -> None:
    """A language's own prompts: those the menus play and its grammar adds. A prompt it lacks
    is played in English, as Asterisk does; the report names them so an operator can add them."""
    own = language.sounds_dir(sounds, code)
    grammar = lang.for_code(code)
    if own == sounds:
        report.add("prompts", f"language {code}", False,
                   f"no {code} prompt directory beside {sounds} "
                   f"(apt-get install asterisk-core-sounds-{code}-wav); English is played")
        return
    names = sorted({*prompts.REQUIRED, *grammar.extra_prompts,
                    *(n for sentence in grammar.samples() for n in sentence)})
    gone = prompts.missing(own, tuple(names), extra=(prompts.SYNTH_DIR / code,))
    detail = (f"all {len(names)} present" if not gone else
              f"{len(gone)} missing (played in English): {', '.join(gone)}")
    if grammar.code != code:
        detail += f"; no {code} grammar in imapvm, English grammar is used"
    report.add("prompts", f"language {code} ({own})", not gone, detail, missing=gone)


