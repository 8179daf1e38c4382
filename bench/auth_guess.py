"""How fast can an attacker guess a mailbox's secret over SIP digest, from one source and from
100 sources? (issue 12; goal: under 100 guesses per hour per mailbox, whatever the number of
sources).

Run from the repository root:  .venv/bin/python bench/auth_guess.py
The real server runs in this process (spool storage, default lockout policy, default rate
limits) on 127.0.0.1; the attackers are SIP digest clients bound to 127.0.0.2-127.0.0.101,
each guessing as fast as the server answers (SUBSCRIBE, 401, SUBSCRIBE with credentials).
Traffic goes to 127.0.0.0/8 only, and the run is bounded (``--seconds`` per scenario).

An hour of lockout policy is played in ``--seconds`` of real time: the lockouts' clock runs
``3600 / seconds`` times faster than the wall clock (everything else, rate limits and nonce
lifetimes included, runs at real speed, which only favours the attacker). A guess counts when
the server checked it (answered 401 or 200); refusals during a back-off or lock (403) and
requests dropped by the rate limiter are not guesses.
Last line: ``guesses_per_hour_one_source= guesses_per_hour_100_sources= lock_after=``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sets sys.path)
from tests.support.net import free_port_udp_and_tcp
from tests.support.sipauth import DigestGuesser

from imapvm.config.loader import load
from imapvm.server import VoicemailServer, check_call, deposit_call
from imapvm.storage.base import MailboxRef

BOX = MailboxRef("1234", "default")


def write_config(work: Path) -> tuple[Path, Path]:
    work.mkdir()
    conf = work / "voicemail.conf"
    conf.write_text("[general]\nformat=wav\n[default]\n1234 => 4242,Alice\n")
    toml = work / "imapvm.toml"
    toml.write_text(
        f'[sip]\nlisten = ["127.0.0.1:{free_port_udp_and_tcp()}"]\n'
        'trusted = ["127.0.0.1/32"]\ntcp = false\n'
        '[sip.credentials]\n"1234" = "Nq3-v8Ye2LkP0sWmZ7xA4hTc"\n'
        f'[paths]\nspool = "{work / "spool"}"\noutbox = "{work / "outbox"}"\n'
        '[http]\nlisten = ""\n')
    return conf, toml


async def scenario(work: Path, sources: int, seconds: float) -> tuple[int, int, int]:
    """(checked guesses in the simulated hour, refused, lock_after) for ``sources`` sources."""
    conf, toml = write_config(work)
    loaded = load(conf, toml)
    if not loaded.ok:
        raise SystemExit("\n".join(str(d) for d in loaded.diagnostics))
    server = VoicemailServer(loaded, deposit_flow=deposit_call, check_flow=check_call)
    await server.start()
    assert server.sip is not None
    factor = 3600.0 / seconds
    t0 = time.time()
    server.lockouts.clock = lambda: t0 + (time.time() - t0) * factor
    guessers = [await DigestGuesser(f"127.0.0.{2 + i}", server.sip.address).open()
                for i in range(sources)]
    counts = {"checked": 0, "refused": 0, "dropped": 0}
    lock_after = 0
    deadline = time.monotonic() + seconds

    async def attack(guesser: DigestGuesser, n: int) -> None:
        nonlocal lock_after
        i = 0
        while time.monotonic() < deadline:
            i += 1
            status = await guesser.attempt(f"guess-{n}-{i}", within=1.0)
            if status in (401, 200):
                counts["checked"] += 1
            elif status == 403:
                counts["refused"] += 1
                if not lock_after and server.lockouts.wait(BOX) >= 0.99 * (
                        server.lockouts.policy.lock_seconds):
                    lock_after = server.lockouts.failures(BOX)
                await asyncio.sleep(0.05)  # a refusal costs the attacker nothing: keep asking
            else:
                counts["dropped"] += 1

    try:
        await asyncio.gather(*(attack(g, n) for n, g in enumerate(guessers)))
    finally:
        for g in guessers:
            g.close()
        await server.stop(grace=1)
    print(f"sources={sources} simulated_s=3600 real_s={seconds:.0f} checked={counts['checked']} "
          f"refused={counts['refused']} dropped={counts['dropped']} "
          f"failures_counted={server.lockouts.failures(BOX)}", flush=True)
    return counts["checked"], counts["refused"], lock_after


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="real seconds that stand for one hour of lockout policy")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        one, _, lock_one = await scenario(Path(tmp) / "one", 1, args.seconds)
        many, _, lock_many = await scenario(Path(tmp) / "many", 100, args.seconds)
    print(f"guesses_per_hour_one_source={one} guesses_per_hour_100_sources={many} "
          f"lock_after={lock_one or lock_many}")


if __name__ == "__main__":
    asyncio.run(main())
