"""The metrics registry's exposition format and the health endpoint over a real socket."""

from __future__ import annotations

import asyncio

import pytest

from imapvm.httpd import HealthServer
from imapvm.metrics import Registry


def test_exposition_format() -> None:
    reg = Registry()
    calls = reg.counter("imapvm_calls_total", "Calls answered")
    calls.inc(purpose="deposit")
    calls.inc(2, purpose="check")
    reg.gauge("imapvm_outbox_depth", "Deposits waiting", callback=lambda: 3)
    h = reg.histogram("imapvm_mwi_latency_seconds", "Change to lamp", buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 2.0):
        h.observe(v)
    text = reg.render()
    assert 'imapvm_calls_total{purpose="check"} 2' in text
    assert 'imapvm_calls_total{purpose="deposit"} 1' in text
    assert "imapvm_outbox_depth 3" in text
    assert 'imapvm_mwi_latency_seconds_bucket{le="0.1"} 1' in text
    assert 'imapvm_mwi_latency_seconds_bucket{le="1"} 2' in text
    assert 'imapvm_mwi_latency_seconds_bucket{le="+Inf"} 3' in text
    assert "imapvm_mwi_latency_seconds_count 3" in text
    assert "# TYPE imapvm_calls_total counter" in text
    with pytest.raises(ValueError, match="twice"):
        reg.counter("imapvm_calls_total", "again")
    with pytest.raises(ValueError, match="only goes up"):
        calls.inc(-1)


def test_counter_read_from_a_component_at_each_scrape() -> None:
    reg = Registry()
    counts = {"received": 2, "refused": 0}
    reg.counter("imapvm_mwi_pushes_total", "Pushes",
                callback=lambda: {(("result", k),): float(v) for k, v in counts.items()})
    assert 'imapvm_mwi_pushes_total{result="received"} 2' in reg.render()
    counts["refused"] = 1
    text = reg.render()
    assert 'imapvm_mwi_pushes_total{result="refused"} 1' in text
    assert "# TYPE imapvm_mwi_pushes_total counter" in text


async def _get(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


async def test_health_endpoint() -> None:
    healthy = {"ok": True, "imap": "up"}
    reg = Registry()
    reg.counter("imapvm_deposits_total", "Deposits").inc()
    server = HealthServer(reg.render, lambda: healthy)
    _, port = await server.start("127.0.0.1", 0)
    try:
        status, body = await _get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200
        assert b"imapvm_deposits_total 1" in body
        status, body = await _get(port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert (status, body) == (200, b'{"imap": "up", "ok": true}\n')
        healthy["ok"] = False
        assert (await _get(port, b"GET /healthz HTTP/1.1\r\n\r\n"))[0] == 503
        assert (await _get(port, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
        assert (await _get(port, b"GET /nope HTTP/1.1\r\n\r\n"))[0] == 404
        assert (await _get(port, b"\xff\xfe garbage\r\n\r\n"))[0] == 400
        assert (await _get(port, b"GET / SPDY/9\r\n\r\n"))[0] == 400
    finally:
        await server.close()
