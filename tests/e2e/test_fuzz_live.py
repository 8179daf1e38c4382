"""Fuzzing the running `imapvm serve` (a subprocess, as deployed): a seeded mutation loop over
the RFC 4475-style corpus, for a bounded time, from a trusted and an untrusted source over UDP,
then as TCP streams. After
(and during) the storm the server must still answer OPTIONS, and its log must hold no
traceback. ``IMAPVM_FUZZ_SECONDS`` (default 5) and ``IMAPVM_FUZZ_SEED`` tune a run; a failure
prints the seed to replay it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from pathlib import Path
from typing import cast

import pytest

from imapvm.telephony.sip.errors import SipParseError
from imapvm.telephony.sip.message import SipResponse, parse_message
from tests.e2e.serve import start_serve
from tests.telephony.torture import SDP, corpus, options

SEED = int(os.environ.get("IMAPVM_FUZZ_SEED", "4475"))
SECONDS = float(os.environ.get("IMAPVM_FUZZ_SECONDS", "5"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 + SECONDS)]

TOKENS = [b"\r\n", b":", b";", b",", b"<", b">", b'"', b"@", b" ", b"\t", b"\x00", b"\xff",
          b"SIP/2.0", b";tag=", b";branch=z9hG4bK", b"\r\n\r\n", b"Content-Length: 99999\r\n",
          b"99999999999999999999", b"-1", b"%00", b"\\", b"RTP/AVP 300", b"c=IN IP4 224.0.0.1",
          b"m=audio 70000 RTP/AVP 0", b"Via: SIP/2.0/UDP x\r\n", b"sips:", b"[::1]"]


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 8)):
        pos = rng.randint(0, len(data))
        op = rng.randint(0, 5)
        if op == 0:
            data[pos:pos] = rng.choice(TOKENS)
        elif op == 1:
            del data[pos : pos + rng.randint(1, 40)]
        elif op == 2 and pos < len(data):
            data[pos] = rng.randint(0, 255)
        elif op == 3:  # duplicate a line
            start = data.rfind(b"\n", 0, pos) + 1
            end = data.find(b"\n", pos)
            if end > start:
                data[end + 1 : end + 1] = data[start : end + 1]
        elif op == 4:  # splice another seed's tail
            other = rng.choice(seeds)
            data = data[:pos] + other[rng.randint(0, len(other)) :]
        else:
            data = data[:pos]
    return bytes(data[:60_000])


class _Socket(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:  # type: ignore[override]
        self.answers.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        pass


async def _alive(sock: _Socket, server: tuple[str, int], n: int) -> bool:
    """OPTIONS from the trusted source; True once its 200 arrives (other answers skipped)."""
    assert sock.transport is not None
    call_id = f"alive-{n}-{time.monotonic_ns()}"
    sock.transport.sendto(options(call_id, f"alive{n}x{time.monotonic_ns()}"), server)
    try:
        async with asyncio.timeout(5):
            while True:
                try:
                    msg = parse_message(await sock.answers.get())
                except SipParseError:  # e.g. a 400 that copied a mutated header too long
                    continue  # for our own limits: an answer to the storm, not to us
                if isinstance(msg, SipResponse) and msg.call_id == call_id:
                    return msg.status == 200
    except TimeoutError:
        return False


async def _tcp_storm(rng: random.Random, seeds: list[bytes], server: tuple[str, int]) -> int:
    """The same mutations as a byte stream: 20 connections, each a few messages glued
    together (framing by a Content-Length that may lie), some cut off mid-message."""
    sent = 0
    for _ in range(20):
        try:
            reader, writer = await asyncio.open_connection(*server)
        except OSError:
            continue
        try:
            stream = b"".join(mutate(rng, seeds) for _ in range(rng.randint(1, 6)))
            if rng.random() < 0.3:
                stream = stream[: rng.randint(0, len(stream))]
            writer.write(stream)
            await writer.drain()
            sent += 1
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(reader.read(65536), 0.05)
        except OSError:
            pass  # the server may close a connection that sent garbage: that is its right
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return sent


async def test_live_server_survives_a_mutation_storm(tmp_path: Path) -> None:
    seed, seconds = SEED, SECONDS
    print(f"fuzz seed {seed}, {seconds:g} s")  # shown with any failure, to replay it
    rng = random.Random(seed)
    conf = tmp_path / "voicemail.conf"
    conf.write_text("[general]\nformat=wav\n[default]\n1234 => 4242,Alice\n")
    serve = await start_serve(tmp_path / "run", "--config", str(conf), "--grace", "1",
                              "--set", f"paths.spool={tmp_path / 'spool'}",
                              "--set", f"paths.outbox={tmp_path / 'outbox'}")
    await serve.wait_healthy()
    server = ("127.0.0.1", serve.sip_port)
    seeds = [case.data for case in corpus()] + [
        options(),
        (f"INVITE sip:1234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKi"
         f"\r\nFrom: <sip:a@192.0.2.99>;tag=1\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: inv\r\n"
         f"CSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.99>\r\nContent-Type: application/sdp\r\n"
         f"Content-Length: {len(SDP)}\r\n\r\n{SDP}").encode(),
    ]
    loop = asyncio.get_running_loop()
    sockets = []
    for source in ("127.0.0.1", "127.0.0.2"):  # trusted (the PBX) and not
        sock = _Socket()
        await loop.create_datagram_endpoint(lambda s=sock: s, local_addr=(source, 0))  # type: ignore[misc]
        sockets.append(sock)
    sent = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # at most 2,500 datagrams a second (below)
            for _ in range(50):
                sock = rng.choice(sockets)
                assert sock.transport is not None
                sock.transport.sendto(mutate(rng, seeds), server)
                sent += 1
            await asyncio.sleep(0.02)  # ~2,500 datagrams/s: a storm, not a kernel-buffer test
            if sent % 1000 == 0:
                assert await _alive(sockets[0], server, sent), f"no OPTIONS answer (seed {seed})"
        sent += await _tcp_storm(rng, seeds, server)
        for _ in range(3):  # after the storm (answers to it may still be queued)
            if await _alive(sockets[0], server, sent + 1):
                break
        else:
            pytest.fail(f"the server stopped answering OPTIONS after {sent} datagrams "
                        f"(seed {seed})")
        status, _ = await serve.health()
        assert status == 200
    finally:
        for sock in sockets:
            if sock.transport is not None:
                sock.transport.close()
        await serve.stop()
    log = serve.log
    assert "Traceback" not in log, f"seed {seed}:\n{log[log.index('Traceback') - 2000:][:4000]}"
    assert sent > 1000
    assert "answering 400 to bad request" in log  # the storm did reach the parser
