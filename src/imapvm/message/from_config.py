"""From the configuration's effective mailbox settings to the message builder's EmailSettings."""

from __future__ import annotations

from imapvm.config.model import MailboxSettings
from imapvm.config.voicemail import VoicemailConfig
from imapvm.message.settings import EmailSettings


def _raw(text: str | None) -> str | None:
    """The config layer has already applied Asterisk's escapes; the builder applies them again,
    so a literal backslash must reach it escaped (a real newline passes through unchanged)."""
    return None if text is None else text.replace("\\", "\\\\")


def email_settings(ms: MailboxSettings, config: VoicemailConfig | None = None) -> EmailSettings:
    global_from = config.general.text("fromstring") if config is not None else ms.fromstring
    return EmailSettings(
        context=ms.context,
        mailbox=ms.mailbox,
        imapvmshareid=ms.extension_tag if ms.extension_tag != ms.mailbox else "",
        fullname=ms.fullname,
        emails=ms.emails,
        imapuser=ms.imap.user if ms.imap else "",
        serveremail=ms.serveremail,
        fromstring=ms.fromstring,
        global_fromstring=global_from,
        emailsubject=_raw(ms.emailsubject),
        emailbody=_raw(ms.emailbody),
        emaildateformat=ms.emaildateformat,
        charset=ms.charset,
        pbxskip=ms.pbxskip,
        tz=ms.zone.timezone if ms.zone else None,
        formats=ms.formats,
        attachfmt=ms.attachfmt or None,
    )
