"""From the configuration's effective mailbox settings to the IMAP back end's settings."""

from __future__ import annotations

from imapvm.config.model import MailboxSettings
from imapvm.config.settings import ImapClientSettings
from imapvm.storage.imap.account import ImapSettings
from imapvm.storage.imap.connection import Timeouts


def imap_settings(ms: MailboxSettings, pool_size: int = 3,
                  client: ImapClientSettings | None = None,
                  open_timeout: float | None = None) -> ImapSettings:
    """Raises ValueError for a mailbox that is not stored in IMAP."""
    acct = ms.imap
    if acct is None:
        raise ValueError(f"mailbox {ms.mailbox}@{ms.context} is not stored in IMAP")
    master = acct.auth_user is not None
    return ImapSettings(
        host=acct.server,
        port=acct.port,
        user=acct.user,
        password=None if master else acct.password,
        authuser=acct.auth_user,
        authpassword=acct.password if master else None,
        tls=acct.security.mode,
        verify_certificate=acct.security.verify_certificate,
        secure_auth=acct.security.secure_auth,
        folder=acct.folder,
        parent_folder=acct.parent_folder,
        greetings_folder=acct.greetings_folder or None,
        imap_greetings=acct.greetings_in_imap,
        expunge_on_hangup=acct.expunge_on_hangup,
        timeouts=Timeouts(open=min(acct.open_timeout, open_timeout or acct.open_timeout),
                          read=acct.read_timeout,
                          write=acct.write_timeout, close=acct.close_timeout),
        vm_tag=acct.extension_tag,
        context=ms.context,
        maxmsg=ms.maxmsg,
        pool_size=pool_size,
        oauth2_token_command=client.oauth2_token_command if client else (),
        gssapi=client.gssapi if client else False,
        gssapi_host=(client.gssapi_host or None) if client else None,
    )
