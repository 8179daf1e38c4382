"""``emailsubject`` / ``emailbody`` / ``fromstring`` templates and their ``${VM_*}`` variables.

Asterisk runs these through its dialplan substitution on a dummy channel; imapvm substitutes
``${NAME}`` from the variable set of reference §2.4 only (unknown names become empty, as unset
channel variables do). Dialplan functions such as ``${IF(...)}`` are not supported.

Escapes follow Asterisk (``\\n \\r \\t \\\\``), except that line ends are normalised to a single
CRLF afterwards, so ``\\n`` can never turn into CR CR LF (reference §6 #28).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from imapvm.message.meta import UNKNOWN_CALLER, VoicemailMeta

_ESCAPES = {"n": "\r\n", "r": "\r", "t": "\t", "\\": "\\"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute_escapes(text: str) -> str:
    """Apply Asterisk's backslash escapes; an unknown escape is kept verbatim."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def normalise_lines(text: str) -> str:
    """Every line end (CRLF, CR CR LF, lone CR or LF) becomes exactly one CRLF."""
    return re.sub(r"\r*\n|\r", "\r\n", text)


def expand(template: str, variables: Mapping[str, str]) -> str:
    """Escapes first, then ``${NAME}`` substitution (a variable's value is never re-expanded)."""
    return _VAR.sub(lambda m: variables.get(m.group(1), ""), substitute_escapes(template))


def duration_text(seconds: int) -> str:
    """``m:ss``, the form of ``${VM_DUR}``."""
    return f"{seconds // 60}:{seconds % 60:02d}"


def vm_variables(meta: VoicemailMeta, fullname: str, date_text: str) -> dict[str, str]:
    """The ``VM_*`` (and, for forwarded copies, ``ORIG_VM_*``) variables of one message."""
    variables = {
        "VM_NAME": fullname,
        "VM_DUR": duration_text(meta.duration),
        "VM_MSGNUM": str(meta.number),
        "VM_CONTEXT": meta.context,
        "VM_MAILBOX": meta.owner,
        "VM_CALLERID": meta.callerid,
        "VM_CIDNAME": meta.caller_id_name or UNKNOWN_CALLER,
        "VM_CIDNUM": meta.caller_id_num or UNKNOWN_CALLER,
        "VM_DATE": date_text,
        "VM_CATEGORY": meta.category or "no category",
        "VM_FLAG": meta.flag,
    }
    if meta.forwarded is not None:
        # Asterisk reads these from the original's msgNNNN.txt, which never exists with IMAP;
        # we keep the original caller in the message itself, so they are simply the same values.
        variables.update(
            ORIG_VM_CALLERID=meta.callerid,
            ORIG_VM_CIDNAME=variables["VM_CIDNAME"],
            ORIG_VM_CIDNUM=variables["VM_CIDNUM"],
            ORIG_VM_DATE=date_text,
        )
    return variables
