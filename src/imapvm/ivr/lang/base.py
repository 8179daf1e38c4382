"""English, Asterisk's default grammar, which every other language starts from."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from imapvm.ivr import say
from imapvm.ivr.lang.dates import DateWords

Words = list[str]


def signed(n: int, positive: Callable[[int], Words]) -> Words:
    """Zero and negative numbers as every language's say function starts them."""
    if n == 0:
        return ["digits/0"]
    if n < 0:
        return ["digits/minus", *positive(-n)]
    return positive(n)


class Language:
    """How the menus say things in one language (English here; subclasses override)."""

    code = "en"
    #: The envelope's say format when the mailbox's zone gives none (play_message_datetime).
    envelope_format = say.DEFAULT_ENVELOPE_FORMAT
    #: Prompts this grammar plays beyond the shared menu prompts (``imapvm doctor`` checks them).
    extra_prompts: tuple[str, ...] = ()
    #: The say-format letters, when the language says them otherwise than English does
    #: (None: English letters over this language's numbers, as Asterisk's default formatter).
    date_words: type[DateWords] | None = None

    # -- numbers and dates -------------------------------------------------------------------
    def number(self, n: int, gender: str | None = None) -> list[str]:
        """A cardinal number; ``gender`` is Asterisk's say option (``f``, ``m``, ``n``)."""
        return say.number(n)

    def date(self, when: float, fmt: str | None = None, *, tz: str | None = None,
             now: float | None = None) -> list[str]:
        """The moment ``when`` by a say format (the language's envelope format by default)."""
        fmt = fmt or self.envelope_format
        if self.date_words is None:
            return say.date(when, fmt, tz=tz, now=now, number=self.number)
        return self.date_words(self.number).say(when, fmt, tz=tz, now=now)

    def duration_minutes(self, seconds: int) -> list[str]:
        """``vm-duration N vm-minutes`` (play_message_duration's default branch)."""
        return ["vm-duration", *self.number(seconds // 60), "vm-minutes"]

    # -- the menus' sentences ----------------------------------------------------------------
    def intro(self, urgent: int, new: int, old: int) -> list[str]:
        """"You have 1 urgent and 2 new and 3 old messages" (vm_intro_en)."""
        def plural(count: int) -> str:
            return "vm-message" if count == 1 else "vm-messages"

        out = ["vm-youhave"]
        if urgent:
            out += [*self.number(urgent), "vm-Urgent",
                    "vm-and" if (new or old) else plural(urgent)]
        if new:
            out += [*self.number(new), "vm-INBOX", "vm-and" if old else plural(new)]
        if old:
            out += [*self.number(old), "vm-Old", plural(old)]
        if not (urgent or new or old):
            out += ["vm-no", "vm-messages"]
        return out

    def new_and_old(self, new: int, old: int, one: Mapping[str, Words],
                    many: Mapping[str, Words]) -> Words:
        """"N new [and] M old" for grammars whose words after a count are fixed: ``one[kind]``
        is said for a count of one, ``number + many[kind]`` otherwise (kind: new, old)."""
        out: Words = []
        for kind, count, more in (("new", new, old), ("old", old, 0)):
            if count:
                out += one[kind] if count == 1 else [*self.number(count), *many[kind]]
                if more:
                    out.append("vm-and")
        return out

    def folder_name(self, box: str) -> list[str]:
        """A folder as said in sentences, ``box`` being its prompt (``vm-Old``):
        "old messages" (vm_play_folder_name)."""
        return [box, "vm-messages"]

    def empty_folder(self, box: str) -> list[str]:
        """"You have no old messages" when a folder is empty (vm_browse_messages)."""
        return ["vm-youhave", "vm-no", *self.folder_name(box)]

    def message_number(self, n: int | None) -> list[str]:
        """"Message 3" before a message (play_message); None = first or last (no number)."""
        return ["vm-message", *(self.number(n) if n is not None else [])]

    def saved_to(self, n: int, box: str) -> list[str]:
        """"Message 3 saved to old messages" (key 9)."""
        return ["vm-message", *self.number(n), "vm-savedto", *self.folder_name(box)]

    def folder_choice(self, digit: int, box: str) -> list[str]:
        """"Press ... 2 for old messages" (get_folder), one folder."""
        return [*self.number(digit), "vm-for", *self.folder_name(box)]

    def samples(self) -> list[list[str]]:
        """Sentences whose prompts ``imapvm doctor`` checks (counts 0, 1, 2, 5, 21...)."""
        out = [self.intro(u, n, o) for u, n, o in
               ((0, 0, 0), (0, 1, 0), (0, 0, 1), (0, 2, 5), (0, 21, 1), (1, 1, 1))]
        out += [self.number(n) for n in (*range(0, 32), 40, 50, 60, 70, 80, 90, 100, 200,
                                         1000, 2000)]
        out += [self.folder_name(f"vm-{box}") for box in ("INBOX", "Old", "Work", "Family",
                                                          "Friends")]
        out += [self.empty_folder("vm-INBOX"), self.message_number(3)]
        return out
