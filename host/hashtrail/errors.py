"""One error family for everything a user can cause or fix, caught once in the CLI.

Why: expected failures (bad input, a device that is not enrolled, a broken chain)
must end with a clear message and a non-zero exit, never a traceback. Every error
carries a hint that tells the user what to do next.
"""

from __future__ import annotations


class HashtrailError(Exception):
    """Base of every error hashtrail raises on purpose."""

    hint: str = ""
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class FormatError(HashtrailError):
    """Bytes that do not parse as the format they claim to be (entry, checkpoint, frame...)."""

    hint = "the data is malformed or truncated; it was not accepted"


class VerificationError(HashtrailError):
    """Well-formed data whose signatures, links or proofs do not check."""

    hint = "the data does not verify; do not trust it, and keep it as evidence"


class ConfigError(HashtrailError):
    """A missing or inconsistent board definition, path or option."""

    exit_code = 2


class InputError(ConfigError):
    """A file, path or value the user gave is missing, unreadable or not the kind the
    command expects (a directory, empty, binary, too big, too deeply nested, a store
    where a ledger belongs...). Raised before anything is created or changed: exit 2."""

    hint = "nothing was created or changed; check the path and what the command expects"


def printable(text: str) -> str:
    """Device text made safe for a terminal: control characters (C0, DEL, C1) shown as
    escapes (`\\x1b`, `\\n`...), so a device cannot retitle the terminal, clear the
    screen or draw a fake prompt; everything else, non-ASCII letters included, as is.
    Only for human output: --json carries the exact text."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] if c in "\t\n\r"
                   else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
                   for c in text)
