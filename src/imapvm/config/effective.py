"""Precedence: one mailbox's settings from its options, `[general]` and Asterisk's defaults.

This is the only code that knows the order (mailbox option, then `[general]`, then the default)
and how an IMAP account is put together (authpassword over imappassword, authuser as the master
login, imapvmshareid as a header tag only). Everything downstream reads the frozen result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from imapvm.config import directives as d
from imapvm.config.diagnostics import Diagnostics, did_you_mean
from imapvm.config.imapflags import TlsMode, parse_flags, tls_policy
from imapvm.config.model import (
    GeneralSettings,
    ImapAccount,
    Mailbox,
    MailboxSettings,
    StorageKind,
    Zone,
)


class KnownConfig(Protocol):
    """What resolving a mailbox needs of the whole file (`VoicemailConfig` has it)."""

    @property
    def zones(self) -> Mapping[str, Zone]: ...

    @property
    def imap_passwords(self) -> Mapping[str, str]: ...

IMAP_MAILBOX_OPTIONS = frozenset(
    {"imapuser", "imappassword", "imapserver", "imapport", "imapflags", "imapfolder",
     "imapvmshareid"}
)  # fmt: skip
"""Setting any of these on a mailbox line selects IMAP storage for it."""


def resolve(
    mailbox: Mailbox, config: KnownConfig, general: GeneralSettings, diags: Diagnostics
) -> MailboxSettings:
    where = mailbox.location

    def pick(name: str) -> object:
        directive = d.DIRECTIVES[name]
        if directive.scope & d.Scope.MAILBOX and name in mailbox.options:
            return mailbox.options[name]
        return general.values[name]

    def pick_str(name: str) -> str:
        return str(pick(name))

    def pick_int(name: str) -> int:
        value = pick(name)
        return value if isinstance(value, int) else int(str(value))

    def pick_bool(name: str) -> bool:
        return bool(pick(name))

    formats = tuple(str(f) for f in pick("format"))  # type: ignore[attr-defined]
    attachfmt = pick_str("attachfmt")
    if attachfmt and attachfmt.lower() not in formats:
        diags.warning(
            f"mailbox {mailbox.id}: attachfmt '{attachfmt}' is not one of the recorded formats "
            f"({'|'.join(formats)}); '{formats[0]}' is attached instead",
            where,
        )
        attachfmt = formats[0]
    attachfmt = attachfmt.lower() or formats[0]

    tz = pick_str("tz")
    zone = None
    if tz:
        zone = config.zones.get(tz)
        if zone is None:
            known = ", ".join(sorted(config.zones)) or "none"
            local = "tz" in mailbox.options
            diags.error(
                (f"mailbox {mailbox.id}: " if local else "")
                + f"tz '{tz}' is not a [zonemessages] zone"
                f"{did_you_mean(tz, config.zones)} (defined: {known})",
                where if local else general.explicit.get("tz"),
            )
    minsecs, maxsecs = pick_int("minsecs"), pick_int("maxsecs")
    if 0 < maxsecs < minsecs:
        diags.warning(
            f"mailbox {mailbox.id}: minsecs ({minsecs}) is above maxsecs ({maxsecs}); "
            "every recording would be discarded as too short",
            where,
        )
    for address in mailbox.email.split("|"):
        if address.strip() and "@" not in address:
            diags.warning(f"mailbox {mailbox.id}: e-mail '{address.strip()}' has no '@'", where)

    storage = _storage_kind(mailbox, general)
    imap = _imap_account(mailbox, config, general, diags) if storage is StorageKind.IMAP else None
    if storage is StorageKind.SPOOL:
        stray = sorted(IMAP_MAILBOX_OPTIONS & mailbox.options.keys())
        if stray:
            diags.warning(f"mailbox {mailbox.id}: {', '.join(stray)} unused without IMAP", where)

    password = mailbox.password
    locked = password.startswith("-")
    return MailboxSettings(
        context=mailbox.context,
        mailbox=mailbox.number,
        password=password[1:] if locked else password,
        password_locked=locked,
        fullname=mailbox.fullname,
        emails=tuple(e.strip() for e in mailbox.email.split("|") if e.strip()),
        pager=mailbox.pager,
        storage=storage,
        imap=imap,
        formats=formats,
        attach=pick_bool("attach"),
        attachfmt=attachfmt,
        attachextrecs=pick_bool("attachextrecs"),
        serveremail=pick_str("serveremail"),
        fromstring=pick_str("fromstring"),
        emailsubject=_opt_str(pick("emailsubject")),
        emailbody=_opt_str(pick("emailbody")),
        emaildateformat=pick_str("emaildateformat"),
        charset=pick_str("charset"),
        pbxskip=pick_bool("pbxskip"),
        mailcmd=pick_str("mailcmd"),
        pagerfromstring=pick_str("pagerfromstring"),
        pagersubject=_opt_str(pick("pagersubject")),
        pagerbody=_opt_str(pick("pagerbody")),
        pagerdateformat=pick_str("pagerdateformat"),
        delete=pick_bool("delete"),
        volgain=float(pick("volgain")),  # type: ignore[arg-type]
        language=pick_str("language"),
        locale=pick_str("locale"),
        tz=tz,
        zone=zone,
        maxmsg=pick_int("maxmsg"),
        maxsecs=pick_int("maxsecs"),
        minsecs=pick_int("minsecs"),
        maxgreet=pick_int("maxgreet"),
        maxsilence=pick_int("maxsilence"),
        silencethreshold=pick_int("silencethreshold"),
        maxlogins=pick_int("maxlogins"),
        minpassword=pick_int("minpassword"),
        skipms=pick_int("skipms"),
        backupdeleted=pick_int("backupdeleted"),
        saycid=pick_bool("saycid"),
        sayduration=pick_bool("sayduration"),
        saydurationm=pick_int("saydurationm"),
        sendvoicemail=pick_bool("sendvoicemail"),
        review=pick_bool("review"),
        leaveurgent=pick_bool("leaveurgent"),
        tempgreetwarn=pick_bool("tempgreetwarn"),
        messagewrap=pick_bool("messagewrap"),
        operator=pick_bool("operator"),
        envelope=pick_bool("envelope"),
        moveheard=pick_bool("moveheard"),
        forcename=pick_bool("forcename"),
        forcegreetings=pick_bool("forcegreetings"),
        nextaftercmd=pick_bool("nextaftercmd"),
        callback=pick_str("callback"),
        dialout=pick_str("dialout"),
        exitcontext=pick_str("exitcontext"),
        hidefromdir=pick_bool("hidefromdir"),
        directory_aliases=mailbox.directory_aliases,
        passwordlocation=pick_str("passwordlocation"),
        externnotify=pick_str("externnotify"),
        pollmailboxes=pick_bool("pollmailboxes"),
        pollfreq=pick_int("pollfreq"),
        location=where,
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _storage_kind(mailbox: Mailbox, general: GeneralSettings) -> StorageKind:
    """IMAP when an IMAP server is configured (globally or for this mailbox), when the mailbox
    names an IMAP account, or when a master user is configured; else the file spool."""
    if (
        general.is_set("imapserver")
        or general.is_set("authuser")
        or IMAP_MAILBOX_OPTIONS & mailbox.options.keys()
    ):
        return StorageKind.IMAP
    return StorageKind.SPOOL


def _imap_account(
    mailbox: Mailbox, config: KnownConfig, general: GeneralSettings, diags: Diagnostics
) -> ImapAccount:
    where = mailbox.location
    options = mailbox.options

    def pick(name: str) -> object:
        return options[name] if name in options else general.values[name]

    flags_text = str(pick("imapflags"))
    flags_where = where if "imapflags" in options else general.explicit.get("imapflags")
    flags = parse_flags(flags_text)
    security = tls_policy(flags, diags, flags_where)
    port = int(pick("imapport"))  # type: ignore[call-overload]
    if security.mode is TlsMode.IMPLICIT and port == 143:
        local = "imapflags" in options or "imapport" in options
        diags.warning(
            "imapflags has 'ssl' but imapport is 143; as in Asterisk the port does not change "
            "with ssl, and most servers expect implicit TLS on 993",
            where if local else general.explicit.get("imapflags"),
        )
    auth_user = str(general["authuser"]) or None
    user = str(options.get("imapuser", ""))
    if not user:
        if auth_user:
            user = auth_user  # reported once for all such mailboxes, by build()
        else:
            diags.error(
                f"mailbox {mailbox.id}: IMAP storage is configured but the mailbox has neither "
                "imapuser nor a [general] authuser",
                where,
            )
    password = str(general["authpassword"]) or str(options.get("imappassword", ""))
    if user and not password:
        # Asterisk's mm_login looks for another mailbox with the same imapuser.
        password = config.imap_passwords.get(user, "")
        if not password:
            diags.error(
                f"mailbox {mailbox.id}: no IMAP password (imappassword, or authpassword in "
                "[general])",
                where,
            )
    folder = str(pick("imapfolder"))
    server = str(pick("imapserver")).strip()
    for name, value in (("imapserver", server), ("imapfolder", folder)):
        if not value:
            local = name in options
            diags.error(
                f"{name} is empty",
                where if local else general.explicit.get(name),
            )
    greetings = str(general["greetingfolder"]) or str(general["imapfolder"])
    return ImapAccount(
        server=server,
        port=port,
        flags=flags,
        security=security,
        user=user,
        auth_user=auth_user if auth_user != user else None,
        password=password,
        folder=folder,
        parent_folder=str(general["imapparentfolder"]),
        greetings_folder=greetings,
        greetings_in_imap=bool(general["imapgreetings"]),
        expunge_on_hangup=bool(general["expungeonhangup"]),
        extension_tag=str(options.get("imapvmshareid", "")) or mailbox.number,
        open_timeout=int(general["imapopentimeout"]),  # type: ignore[call-overload]
        close_timeout=int(general["imapclosetimeout"]),  # type: ignore[call-overload]
        read_timeout=int(general["imapreadtimeout"]),  # type: ignore[call-overload]
        write_timeout=int(general["imapwritetimeout"]),  # type: ignore[call-overload]
        poll_logout=bool(general["imap_poll_logout"]),
    )
