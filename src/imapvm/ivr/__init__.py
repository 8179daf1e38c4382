"""imapvm.ivr: the voice menus, Asterisk's VoiceMail() and VoiceMailMain() (see DESIGN.md, Layers).

The server builds one :class:`Session` (store, outbox, voicemail.conf, exit resolver, password
saver) and hands every call's :class:`Channel` to :func:`handle_call`, or to
:func:`leave_message` / :func:`voicemail_main` directly for VoiceMail()/VoiceMailMain()
options. Nothing here imports ``telephony`` or ``storage.imap``.

Modules: ``leave`` (leave a message), ``main`` (VoiceMailMain's login and menus), ``mailbox``
(the open folder, message playback), ``options`` (mailbox options, new user), ``forward``,
``record`` (recording with review), ``keys`` (prompt/digit helpers), ``say`` (English numbers
and dates as prompt names), ``session``, ``channel`` (the Channel protocol).
"""

from imapvm.channel import CallerId, CallTarget, Channel, ChannelHangup, RecordResult
from imapvm.ivr.leave import LeaveOptions, LeaveResult, leave_message
from imapvm.ivr.main import MainOptions, MainResult, voicemail_main
from imapvm.ivr.session import DepositSink, Exit, Session


async def handle_call(channel: Channel, session: Session) -> LeaveResult | MainResult:
    """The default route: a deposit call leaves a message, a check call runs VoiceMailMain."""
    if channel.target.purpose == "check":
        return await voicemail_main(channel, session)
    return await leave_message(channel, session)


__all__ = [
    "CallTarget",
    "CallerId",
    "Channel",
    "ChannelHangup",
    "DepositSink",
    "Exit",
    "LeaveOptions",
    "LeaveResult",
    "MainOptions",
    "MainResult",
    "RecordResult",
    "Session",
    "handle_call",
    "leave_message",
    "voicemail_main",
]
