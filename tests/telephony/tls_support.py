"""Throwaway certificates (openssl CLI) and a minimal SIP-over-TLS client for the TLS tests."""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
from pathlib import Path


def make_cert(directory: Path, name: str, days: int = 30) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (and 127.0.0.1): (cert.pem, key.pem)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", str(days), "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


class TlsClient:
    """One TLS connection to a SIP server: send requests, read whole messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, ca: Path | None = None) -> TlsClient:
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        if ca is None:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                       server_hostname="127.0.0.1")
        return cls(reader, writer)

    @property
    def peer_names(self) -> list[str]:
        obj = self.writer.get_extra_info("ssl_object")
        der = obj.getpeercert(binary_form=True) if obj else None
        if der is None:
            return []
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
            f.write(ssl.DER_cert_to_PEM_cert(der))
            f.flush()
            decoded = ssl._ssl._test_decode_cert(f.name)  # type: ignore[attr-defined]
        return [v for _, v in decoded.get("subjectAltName", ())]

    @property
    def local_port(self) -> int:
        return int(self.writer.get_extra_info("sockname")[1])

    def send(self, text: str) -> None:
        self.writer.write(text.encode())

    async def message(self, within: float = 10.0) -> str:
        async with asyncio.timeout(within):
            head = (await self.reader.readuntil(b"\r\n\r\n")).decode()
            m = re.search(r"(?im)^content-length:\s*(\d+)", head)
            length = int(m.group(1)) if m else 0
            body = (await self.reader.readexactly(length)).decode() if length else ""
        return head + body

    def close(self) -> None:
        self.writer.close()


def request(method: str, uri: str, port: int, call_id: str, extra: str = "",
            body: str = "", cseq: int = 1) -> str:
    return (f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bK-{call_id}-{cseq};rport\r\n"
            f"From: <sip:1234@127.0.0.1>;tag=t{call_id}\r\nTo: <{uri}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:1234@127.0.0.1:{port};transport=tls>\r\n{extra}"
            f"Content-Length: {len(body.encode())}\r\n\r\n{body}")
