"""Draining a node: OPTIONS probes and new calls get 480 (what Kamailio's dispatcher needs to
send calls elsewhere), and SIGUSR2 brings it back; a real `imapvm serve`, the Python phone."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.e2e.serve import ServeProcess, start_serve
from tests.telephony.pyphone import PyPhone


async def _draining(node: ServeProcess, want: bool) -> None:
    async with asyncio.timeout(10):
        while (await node.health())[1]["draining"] is not want:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # another process's state: polled


async def _options(node: ServeProcess) -> int:
    phone = PyPhone("127.0.0.1", ("127.0.0.1", node.sip_port))
    await phone.open()
    try:
        phone.send_request("OPTIONS", f"sip:imapvm@127.0.0.1:{node.sip_port}", cseq=1)
        return (await phone.final_response()).status
    finally:
        phone.close()


async def test_sigusr1_drains_and_sigusr2_resumes(tmp_path: Path) -> None:
    node = await start_serve(tmp_path / "run", "--set", f"paths.spool={tmp_path / 'spool'}",
                             "--set", f"paths.outbox={tmp_path / 'outbox'}")
    await node.wait_healthy()
    try:
        assert await _options(node) == 200
        node.signal(signal.SIGUSR1)
        await _draining(node, True)
        assert (await node.health())[0] == 503  # load balancers see it too
        assert await _options(node) == 480
        caller = PyPhone("127.0.0.1", ("127.0.0.1", node.sip_port))
        await caller.open()
        try:
            assert (await caller.call("1234")).status == 480
        finally:
            caller.close()
        node.signal(signal.SIGUSR2)
        await _draining(node, False)
        assert await _options(node) == 200
    finally:
        assert await node.stop() == 0
