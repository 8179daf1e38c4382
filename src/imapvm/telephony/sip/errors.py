"""The SIP core's exceptions: bad input from a peer, and wrong use by its driver.

``SipParseError`` is about what a peer sent and never escapes the core (it becomes a 4xx or
the datagram is dropped). ``SipStateError`` is about what the driver asked (h11's
LocalProtocolError idea): a call-control or notifier method called for a call or
subscription that does not exist (any more) or is in a state that does not allow it. The
core's state is unchanged when it is raised.
"""

from __future__ import annotations

from typing import Any


class SipParseError(ValueError):
    """Input is not acceptable SIP.

    ``status`` is the response code a server should send (400, 416, 505, 513) and ``partial``
    the request as far as it was understood, so the caller can answer if the headers needed
    for a response (Via, From, To, Call-ID, CSeq) were readable. ``partial`` is None when the
    start line or the header section itself was unreadable: such input is dropped.
    """

    def __init__(self, message: str, status: int = 400, partial: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.partial = partial


class SipStateError(Exception):
    """The driver asked for something the call or subscription's state does not allow
    (answering a call already answered or gone, notifying an ended subscription, ...)."""
