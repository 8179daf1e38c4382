"""Messages as Asterisk's IMAP storage writes them, built from reference §2.2-§2.3.

Used to check that imapvm reads what real Asterisk installations already have in their mailboxes.
"""

from __future__ import annotations

import base64

from imapvm.audio import Audio, encode


def b64_72(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"".join(text[i : i + 72] + b"\r\n" for i in range(0, len(text), 72))


def asterisk_message(
    audio: Audio,
    *,
    fmt: str = "wav",
    msgnum: int = 0,
    mailbox: str = "1234",
    context: str = "default",
    cid_num: bytes = b"5551234",
    cid_name: bytes = b"Andy Dufresne",
    flag: bytes = b"",
    duration: int | None = None,
    orig_time: int = 1687276784,
    msg_id: bytes = b"1687276784-00000001",
    message_type: bytes = b"Message",
    intro: Audio | None = None,
    lowercase_headers: bool = False,
    attachment_name: str | None = None,
) -> bytes:
    """One Asterisk-written voicemail (a greeting with ``message_type``/``attachment_name``)."""
    boundary = f"----voicemail_{msgnum + 1}{mailbox}31337846930886".encode()
    dur = audio.whole_seconds if duration is None else duration
    headers: list[tuple[bytes, bytes]] = [
        (b"Date", b"Tue, 20 Jun 2023 11:59:44 -0400"),
        (b"From", b'"Asterisk PBX" <asterisk@pbx.example.org>'),
        (b"To", b'"Ellis Redding" <red@buxton.us>'),
        (b"Subject", f"[PBX]: New message {msgnum + 1} in mailbox {mailbox}".encode()),
        (b"Message-ID", f"<Asterisk-{msgnum + 1}-1804289383-{mailbox}-31337@pbx>".encode()),
        (b"X-Asterisk-VM-Message-Num", str(msgnum + 1).encode()),
        (b"X-Asterisk-VM-Server-Name", b""),
        (b"X-Asterisk-VM-Context", context.encode()),
        (b"X-Asterisk-VM-Extension", mailbox.encode()),
        (b"X-Asterisk-VM-Flag", flag),
        (b"X-Asterisk-VM-Priority", b"2"),
        (b"X-Asterisk-VM-Caller-ID-Num", cid_num),
        (b"X-Asterisk-VM-Caller-ID-Name", cid_name),
        (b"X-Asterisk-VM-Duration", str(dur).encode()),
        (b"X-Asterisk-VM-Category", b""),
        (b"X-Asterisk-VM-Message-Type", message_type),
        (b"X-Asterisk-VM-Orig-date", b"Tuesday, June 20, 2023 at 11:59:44 AM"),
        (b"X-Asterisk-VM-Orig-time", str(orig_time).encode()),
        (b"X-Asterisk-VM-Message-ID", msg_id),
    ]
    if cid_num:
        headers.append((b"X-Asterisk-CallerID", cid_num))
    if cid_name:
        headers.append((b"X-Asterisk-CallerIDName", cid_name))
    headers.append((b"MIME-Version", b"1.0"))
    headers.append(
        (b"Content-Type", b'multipart/mixed; boundary="' + boundary + b'"')
    )
    out = []
    for name, value in headers:
        if lowercase_headers and name.startswith(b"X-"):
            name = name.lower()
        out.append(name + b": " + value + b"\r\n")
    name = attachment_name or f"msg{msgnum:04d}.{fmt}"
    ctype = b"audio/x-" + fmt.encode()
    out += [
        b"\r\n\r\nThis is a multi-part message in MIME format.\r\n\r\n",
        b"--" + boundary + b"\r\n",
        b"Content-Type: text/plain; charset=ISO-8859-1\r\n",
        b"Content-Transfer-Encoding: 8bit\r\n\r\n",
        b"Dear Ellis Redding:\r\n\r\n\tYou have a message.\r\n\r\n\t\t\t\t--Asterisk\r\n\r\n",
    ]
    attachments = [(name, audio)]
    if intro is not None:
        attachments.append((f"msgintro{msgnum:04d}.{fmt}", intro))
    for fname, a in attachments:
        out += [
            b"--" + boundary + b"\r\n",
            ctype + b"; name=\"" + fname.encode() + b"\"\r\n",
        ]
        out[-1] = b"Content-Type: " + out[-1]
        out += [
            b"Content-Transfer-Encoding: base64\r\n",
            b"Content-Description: Voicemail sound attachment.\r\n",
            b'Content-Disposition: attachment; filename="' + fname.encode() + b'"\r\n\r\n',
            b64_72(encode(a, fmt)),
        ]
    out.append(b"\r\n\r\n--" + boundary + b"--\r\n.\r\n")
    return b"".join(out)
