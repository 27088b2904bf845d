"""Errors a user can act on.

Everything raised as :class:`SaalError` is caught by the command line and shown
as one line (no traceback): the message must name the file or option at fault
and the problem.
"""

from __future__ import annotations

from typing import Sequence


class SaalError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataError(SaalError):
    """Unusable input data: missing folder, corrupt image, unmatched mask, ..."""

    def __init__(self, message: str, path: object | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
        self.reason = message


class UnreadableFile(DataError, ValueError):
    """A file that should hold JSON or weights but cannot be read back (cut short by a crash, edited by hand).

    Also a ValueError, as the decoders' own errors are: code that treats a damaged cache or record as
    missing keeps doing so.
    """


class SelectionError(SaalError):
    """A selection request that cannot be met (bad budget, bad features)."""


def name_some(items: Sequence[object], limit: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, ... (12 in all)``: error messages stay one readable line."""
    shown = ", ".join(str(x) for x in items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"
