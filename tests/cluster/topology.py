"""The several-nodes topology of the README, for tests and bench/failover.py: Kamailio (from
the shipped configuration) in front of N `imapvm serve` processes sharing one Dovecot, each
node publishing its share of the mailboxes to Kamailio's presence server."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.serve import ServeProcess, imap_conf
from tests.support.kamailio import DOMAIN, Kamailio
from tests.support.net import free_port, free_port_udp_and_tcp


@dataclass
class Node:
    name: str
    serve: ServeProcess
    outbox: Path
    args: list[str] = field(default_factory=list)


async def launch(node: Node) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    await asyncio.to_thread(node.serve.workdir.mkdir, parents=True, exist_ok=True)
    log = node.serve.workdir / "serve.log"
    node.serve.proc = await asyncio.create_subprocess_exec(
        *node.args, cwd=node.serve.workdir, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=open(log, "ab"),  # noqa: SIM115, ASYNC230 - owned by the child
        stderr=asyncio.subprocess.STDOUT)


@dataclass
class Topology:
    root: Path
    kamailio: Kamailio
    nodes: list[Node]

    @classmethod
    async def start(cls, root: Path, imap_port: int, mailboxes: str, count: int = 2,
                    adopt: bool = True) -> Topology:
        """`mailboxes`: voicemail.conf mailbox lines. Each node adopts the others' outboxes."""
        conf = root / "voicemail.conf"
        # GSM only: small messages, so the test accounts' quota holds many of them
        text = imap_conf(imap_port, mailboxes).replace("format=wav|gsm", "format=gsm")
        await asyncio.to_thread(conf.write_text, text)
        ports = [(free_port_udp_and_tcp(), free_port()) for _ in range(count)]
        kam = Kamailio([("127.0.0.1", sip) for sip, _ in ports])
        await asyncio.to_thread(kam.start)
        urls = [f"http://127.0.0.1:{http}" for _, http in ports]
        nodes: list[Node] = []
        for i, (sip, http) in enumerate(ports):
            name = f"n{i + 1}"
            outbox = root / name / "outbox"
            args = [sys.executable, "-m", "imapvm", "serve", "--config", str(conf),
                    "--set", f'sip.listen=["127.0.0.1:{sip}"]',
                    "--set", f"http.listen=127.0.0.1:{http}",
                    "--set", f"paths.spool={root / name / 'spool'}",
                    "--set", f"paths.outbox={outbox}",
                    "--set", f'mwi.presence_server="sip:127.0.0.1:{kam.port}"',
                    "--set", f'mwi.publish_domain="{DOMAIN}"',
                    "--set", "cluster.nodes=[" + ",".join(f'"{u}"' for u in urls) + "]",
                    "--set", f'cluster.self="{urls[i]}"',
                    "--set", "cluster.check_interval=0.5",
                    "--log-level", os.environ.get("IMAPVM_NODE_LOG_LEVEL", "info")]
            if adopt:
                for j in range(count):
                    if j != i:
                        args += ["--adopt-outbox", str(root / f"n{j + 1}" / "outbox")]
            node = Node(name, ServeProcess(root / name / "run", sip, http), outbox, args)
            node.serve.args = args
            nodes.append(node)
        topo = cls(root, kam, nodes)
        await kam.wait_ready()
        for node in nodes:
            await launch(node)
        for node in nodes:
            await node.serve.wait_healthy()
        await kam.wait_nodes_up()
        return topo

    async def stop(self) -> None:
        for node in self.nodes:
            if node.serve.proc is not None and node.serve.proc.returncode is None:
                await node.serve.stop()
        await asyncio.to_thread(self.kamailio.stop)
