"""RFC 3842 message-summary bodies: what a phone's message-waiting lamp is told.

``Voice-Message: new/old (urgent_new/urgent_old)`` follows the counting rules of DESIGN.md
(urgent messages are counted in new as well, as Asterisk does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CONTENT_TYPE = "application/simple-message-summary"
_VOICE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*(?:\(\s*(\d+)\s*/\s*(\d+)\s*\))?\s*$")


@dataclass(frozen=True)
class MessageSummary:
    new: int
    old: int
    urgent_new: int = 0
    urgent_old: int = 0

    @property
    def waiting(self) -> bool:
        return self.new > 0

    def render(self, account: str | None = None) -> bytes:
        lines = [f"Messages-Waiting: {'yes' if self.waiting else 'no'}"]
        if account:
            lines.append(f"Message-Account: {account}")
        lines.append(
            f"Voice-Message: {self.new}/{self.old} ({self.urgent_new}/{self.urgent_old})"
        )
        return ("\r\n".join(lines) + "\r\n").encode()


def parse_message_summary(body: bytes) -> tuple[bool, str | None, MessageSummary | None]:
    """(messages waiting, account, voice counts) from a body; lenient, for tests and peers."""
    waiting, account, voice = False, None, None
    for line in body.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "messages-waiting":
            waiting = value.lower() == "yes"
        elif name == "message-account":
            account = value
        elif name == "voice-message":
            m = _VOICE.match(value)
            if m:
                voice = MessageSummary(int(m[1]), int(m[2]), int(m[3] or 0), int(m[4] or 0))
    return waiting, account, voice
