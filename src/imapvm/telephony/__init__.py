"""imapvm.telephony: the SIP front end (see DESIGN.md, Layers).

Start a server with a call handler; each call is a ``SipChannel`` implementing
``imapvm.channel.Channel``::

    from imapvm.telephony import SipServer, SipSettings

    async def handler(channel):
        await channel.answer()
        ...

    async with SipServer(SipSettings(host="0.0.0.0", advertised_host="192.0.2.5"), handler):
        ...
"""

from .channel import SipChannel
from .message_summary import MessageSummary
from .routing import RoutingConfig
from .server import SipServer, SipSettings

__all__ = ["MessageSummary", "RoutingConfig", "SipChannel", "SipServer", "SipSettings"]
