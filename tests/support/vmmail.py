"""Minimal Asterisk-style voicemail emails for storage tests (the message layer builds the real
ones; storage only needs the identifying headers, a Message-ID and an audio part)."""

from __future__ import annotations

import base64
import itertools
import time

_seq = itertools.count(1)


def voicemail(mailbox: str, context: str = "default", *, caller: str = "5551234",
              duration: int = 3, message_type: str = "Message", extra: bytes = b"",
              size: int = 800) -> bytes:
    n = next(_seq)
    audio = base64.encodebytes(bytes(range(256)) * (size // 256 + 1))[: size * 4 // 3]
    boundary = f"----voicemail_{n}{mailbox}"
    now = int(time.time())
    name = "msg0000.wav" if message_type == "Message" else f"{message_type}.wav"
    head = (
        f"Date: Thu, 26 Nov 2026 09:00:00 +0000\r\n"
        f"From: \"Asterisk PBX\" <asterisk@pbx.example>\r\n"
        f"To: \"Owner\" <owner@example.org>\r\n"
        f"Subject: [PBX]: New message {n} in mailbox {mailbox}\r\n"
        f"Message-ID: <Asterisk-{n}-{now}-{mailbox}-test@pbx.example>\r\n"
        f"X-Asterisk-VM-Message-Num: {n}\r\n"
        f"X-Asterisk-VM-Server-Name: \r\n"
        f"X-Asterisk-VM-Context: {context}\r\n"
        f"X-Asterisk-VM-Extension: {mailbox}\r\n"
        f"X-Asterisk-VM-Flag: \r\n"
        f"X-Asterisk-VM-Priority: 1\r\n"
        f"X-Asterisk-VM-Caller-ID-Num: {caller}\r\n"
        f"X-Asterisk-VM-Caller-ID-Name: Test Caller\r\n"
        f"X-Asterisk-VM-Duration: {duration}\r\n"
        f"X-Asterisk-VM-Category: \r\n"
        f"X-Asterisk-VM-Message-Type: {message_type}\r\n"
        f"X-Asterisk-VM-Orig-date: Thursday, November 26, 2026 at 09:00:00 AM\r\n"
        f"X-Asterisk-VM-Orig-time: {now}\r\n"
        f"X-Asterisk-VM-Message-ID: {now}-{n:08x}\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n"
    ).encode()
    body = (
        f"\r\n\r\nThis is a multi-part message in MIME format.\r\n\r\n--{boundary}\r\n"
        f"Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"Dear Owner:\r\n\r\n\tA message for you.\r\n\r\n--{boundary}\r\n"
        f"Content-Type: audio/x-wav; name=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Description: Voicemail sound attachment.\r\n"
        f"Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n"
    ).encode() + audio.replace(b"\n", b"\r\n") + extra + f"\r\n\r\n--{boundary}--\r\n".encode()
    return head + body


def message_id(email: bytes) -> str:
    for line in email.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise ValueError("no Message-ID")
