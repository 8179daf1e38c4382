"""The one exception type of the SIP core, carrying the status a server should answer with."""

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
