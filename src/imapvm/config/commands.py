"""The external commands voicemail.conf names, checked before anything runs them.

``externpass``, ``externpassnotify`` and ``externpasscheck`` must name a program that exists
and is executable (an error: a password change would fail in front of a caller). ``mailcmd`` is
checked only when some mailbox has an ``email`` or ``pager`` address and no ``[smtp]`` is
configured; a missing one is a warning, since the notifications wait in the mail queue until it
is fixed (only information for the default ``/usr/sbin/sendmail -t``, which a site without
e-mail may never have meant to use). ``delete=yes`` without an ``email`` address is a warning
too: imapvm keeps such voicemail (Asterisk would delete it unsent).
"""

from __future__ import annotations

from imapvm.config.diagnostics import Diagnostics
from imapvm.config.settings import ServerSettings
from imapvm.config.voicemail import VoicemailConfig
from imapvm.external import find_program

PASSWORD_COMMANDS = ("externpass", "externpassnotify", "externpasscheck")


def check_commands(config: VoicemailConfig, settings: ServerSettings, diags: Diagnostics) -> None:
    general = config.general
    for name in PASSWORD_COMMANDS:
        command = general.text(name).strip()
        if not command:
            continue
        problem = find_program(command)
        if problem is not None:
            diags.error(f"{name}: {problem}", general.explicit.get(name))
    if general.text("externpass").strip() and general.text("externpassnotify").strip():
        diags.warning("externpass and externpassnotify are both set: imapvm uses externpass "
                      "(the command changes the password; voicemail.conf is not rewritten)",
                      general.explicit.get("externpassnotify"))
    mailboxes = config.all_effective()
    if settings.smtp is None:
        notified = [ms for ms in mailboxes if any(a.strip() for a in ms.emails) or ms.pager]
        for command in sorted({ms.mailcmd for ms in notified}):
            problem = find_program(command)
            if problem is not None:
                # The default on a host without an MTA is only information: the site may not
                # have meant to send e-mail at all.
                report = diags.warning if general.is_set("mailcmd") else diags.info
                report(f"mailcmd: {problem}; the e-mails of {len(notified)} mailbox(es) wait "
                       "in the mail queue until it is fixed (or [smtp] is set)",
                       general.explicit.get("mailcmd"))
    for ms in mailboxes:
        if ms.delete and not any(a.strip() for a in ms.emails):
            diags.warning(f"mailbox {ms.id}: delete=yes without an e-mail address; its "
                          "voicemail is kept (Asterisk would delete it unsent)", ms.location)
