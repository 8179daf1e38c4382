"""Golden files: one switch for all of them. `IMAPVM_UPDATE_GOLDEN=1 pytest ...` rewrites every
golden file a test compares against (then review the diff before committing)."""

from __future__ import annotations

import os

VARIABLE = "IMAPVM_UPDATE_GOLDEN"


def updating() -> bool:
    """True when golden files are to be rewritten from the implementation."""
    return bool(os.environ.get(VARIABLE))
