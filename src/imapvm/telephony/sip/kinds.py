"""The closed sets of the SIP core, as types: mypy rejects a misspelt value at its source."""

from __future__ import annotations

from typing import Literal

SipTransport = Literal["UDP", "TCP", "TLS"]
"""How a request came in and how its responses (and in-dialog requests) go out."""

EndReason = Literal["remote-bye", "local-bye", "cancelled", "rejected", "redirected",
                    "ack-timeout", "session-expired"]
"""Why a call ended (`CallEnded.reason`)."""

TerminationReason = Literal["deactivated", "probation", "rejected", "timeout", "giveup",
                            "noresource", "invariant"]
"""The reason of a terminated Subscription-State (RFC 6665 §4.1.3)."""
