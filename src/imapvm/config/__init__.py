"""imapvm.config: voicemail.conf (Asterisk syntax and meaning), imapvm.toml, validation.

The calls later layers make:

- `load(voicemail_path, settings_path, overrides)` -> `LoadedConfig` with `.voicemail`
  (`VoicemailConfig`), `.settings` (`ServerSettings`) and `.diagnostics`;
- `LoadedConfig.voicemail.effective("1234@default")` -> `MailboxSettings`, every setting of one
  mailbox after precedence (mailbox option, then [general], then Asterisk's default), with
  `.imap` (`ImapAccount`: server, port, `security` TLS policy, user, auth_user, password,
  folders, extension_tag) or None for the file spool;
- `reload(loaded)` -> `ReloadResult` with `.active`, `.applied` and `.diff` (`ConfigDiff`).
"""

from imapvm.config.diagnostics import Diagnostic, Diagnostics, Location, Severity
from imapvm.config.imapflags import ImapSecurity, TlsMode
from imapvm.config.loader import LoadedConfig, load
from imapvm.config.model import (
    Alias,
    ImapAccount,
    Mailbox,
    MailboxSettings,
    StorageKind,
    Zone,
)
from imapvm.config.reload import ConfigDiff, MailboxChange, ReloadResult, reload
from imapvm.config.settings import (
    AmiSettings,
    Endpoint,
    HttpSettings,
    MwiSettings,
    PathSettings,
    ServerSettings,
    SipSettings,
    load_settings,
)
from imapvm.config.voicemail import GeneralSettings, VoicemailConfig, load_voicemail_conf

__all__ = [
    "Alias",
    "AmiSettings",
    "ConfigDiff",
    "Diagnostic",
    "Diagnostics",
    "Endpoint",
    "GeneralSettings",
    "HttpSettings",
    "ImapAccount",
    "ImapSecurity",
    "LoadedConfig",
    "Location",
    "Mailbox",
    "MailboxChange",
    "MailboxSettings",
    "MwiSettings",
    "PathSettings",
    "ReloadResult",
    "ServerSettings",
    "Severity",
    "SipSettings",
    "StorageKind",
    "TlsMode",
    "VoicemailConfig",
    "Zone",
    "load",
    "load_settings",
    "load_voicemail_conf",
    "reload",
]
