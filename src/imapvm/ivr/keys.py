"""The three ways a voice menu talks to a caller, on top of ``Channel``.

* ``say``: play prompts in order; any key (or the given keys) cuts them short and is returned,
  which is how Asterisk's menus let a caller type ahead of the instructions;
* ``menu_key``: say the prompts, then wait for one key (``""`` when none came in time);
* ``read_string``: say the prompts and collect a number ended by ``#`` (mailbox, password,
  extension), with Asterisk's timeouts: 10 s for the first digit, then 2 s between digits.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable

from imapvm.channel import Channel

log = logging.getLogger(__name__)

#: Logged (debug) each time a menu has said its prompts and waits for the caller: what an
#: end-to-end test waits for before pressing keys, instead of guessing prompt lengths.
WAITING = "menu: prompts said, waiting for the caller"

ANY = "0123456789*#"


class Menu(enum.Enum):
    """What a menu branch hands back when it is not a key the caller pressed."""

    REPEAT = "repeat"
    """Nothing was pressed: read this menu's options again."""
    DONE = "done"
    """This menu is over (the owner gave up or chose to go back): return to the menu above;
    at the top, say goodbye."""


Next = str | Menu
"""A menu branch's result: the key the caller pressed (acted on as if pressed at the menu, so
callers can type ahead) or a `Menu` instruction."""


def pressed(key: str | None) -> Next:
    """The key from `say`, `menu_key` or `Channel.play`, or `Menu.REPEAT` when none came."""
    return key if key else Menu.REPEAT


async def say(channel: Channel, prompts: Iterable[str], interrupts: str = ANY) -> str | None:
    for name in prompts:
        digit = await channel.play(name, interrupts)
        if digit:
            return digit
    return None


async def menu_key(channel: Channel, prompts: Iterable[str], wait: float) -> str:
    digit = await say(channel, prompts)
    if digit:
        return digit
    log.debug(WAITING)
    return await channel.get_digits(1, wait, terminators="")


async def read_string(channel: Channel, prompts: Iterable[str], max_len: int = 80, *,
                      first_timeout: float = 10.0, digit_timeout: float = 2.0,
                      terminators: str = "#") -> str:
    digit = await say(channel, prompts)
    if digit is None:
        log.debug(WAITING)
        first = await channel.get_digits(1, first_timeout, terminators)
    else:
        first = "" if digit in terminators else digit
    if not first:
        return ""
    return first + await channel.get_digits(max_len - 1, digit_timeout, terminators)
