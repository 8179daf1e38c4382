"""From the configuration to the MWI engine: options, sinks, aliases, the boxes watched at start.

What Asterisk does and what imapvm does instead:
- `pollfreq` is the polling period for servers with neither NOTIFY nor IDLE (and for spool
  boxes); Asterisk polls every box this often, imapvm only where nothing better exists;
- `pollmailboxes=yes` means "follow every mailbox": every mailbox is watched from the start.
  Otherwise only boxes that someone watches (a SIP subscription, unsolicited MWI) are;
- `aliasescontext` entries are published with their target, as Asterisk publishes aliases;
- `externnotify` (voicemail.conf) and `[mwi]` of imapvm.toml give the sinks.
"""

from __future__ import annotations

import dataclasses

from imapvm.config.settings import MwiSettings
from imapvm.config.voicemail import VoicemailConfig
from imapvm.mwi.engine import MwiEngine, sinks_from_config
from imapvm.mwi.sinks import Sink
from imapvm.storage.base import MailboxRef
from imapvm.storage.watching import WatchOptions


def watch_options(vm: VoicemailConfig, **overrides: object) -> WatchOptions:
    options = WatchOptions(pollfreq=float(vm.general["pollfreq"]))  # type: ignore[arg-type]
    return dataclasses.replace(options, **overrides)  # type: ignore[arg-type]


def sinks(vm: VoicemailConfig, mwi: MwiSettings) -> list[Sink]:
    return sinks_from_config(mwi, str(vm.general["externnotify"] or ""))


def aliases(vm: VoicemailConfig) -> list[tuple[MailboxRef, MailboxRef]]:
    context = str(vm.general["aliasescontext"] or "default")
    return [(MailboxRef.parse(a.alias, context), MailboxRef.parse(a.target))
            for a in vm.aliases]


async def apply(engine: MwiEngine, vm: VoicemailConfig) -> list[str]:
    """Register the aliases, and watch every mailbox when `pollmailboxes=yes`. Returns the
    names watched."""
    for alias, target in aliases(vm):
        engine.alias(alias, target)
    if not vm.general["pollmailboxes"]:
        return []
    return [await engine.watch(MailboxRef(m.number, m.context)) for m in vm.mailboxes()]
