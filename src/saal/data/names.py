"""File names and ids that come from a user's folder or a tool's export: which ones saal can use, and how
to show them in a one-line message.

Input is untrusted: a file name may hold bytes that are not UTF-8 (Linux allows
any byte but ``/`` and NUL; Python hands them over as lone surrogates, which
cannot be printed or written to JSON), control characters that would break a
message over lines, or a label name a megabyte long. Messages therefore quote
user text through :func:`shown` (cut, escaped) and paths through
:func:`printable_path`.

An image id becomes a file name in every annotation batch (``images/<id>.jpg``,
``masks/<id>_segmentation.png``, ``predictions/<id>.png``), and ids come from
file names, so :func:`id_problem` is checked when a dataset is loaded, not only
when the first batch is exported: an id refused after pretraining and selection
would leave a run stuck.
"""

from __future__ import annotations

import os
import reprlib

MAX_SHOWN = 80  # characters of user text a message quotes
#: Characters Windows or macOS refuse in file names, and the path separators.
FORBIDDEN_ID_CHARACTERS = '/\\:*?"<>|'
#: ``<id>_segmentation.png`` (17 more bytes) must fit the 255-byte file-name limit of common file systems.
MAX_ID_BYTES = 200

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = MAX_SHOWN


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """``value`` for a one-line message: a ``repr`` (escaped, quoted) of at most about ``limit`` characters.

    Strings are cut before ``repr`` so that a gigabyte-long line costs nothing;
    other values (lists and dicts from JSON) go through :mod:`reprlib`, which
    stops early too.
    """
    if isinstance(value, str):
        text = repr(value[:limit])
        return text if len(value) <= limit else f"{text}... ({len(value)} characters)"
    text = _REPR.repr(value)
    return text if len(text) <= limit + 3 else text[:limit] + "..."


def cut(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` made printable and cut to ``limit`` characters, for lists in messages where quotes would clutter."""
    short = printable_name(text[:limit])
    return short if len(text) <= limit else f"{short}... ({len(text)} characters)"


def is_utf8(name: str) -> bool:
    """Whether a name Python read from the file system was valid UTF-8 (no ``surrogateescape`` bytes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_name(name: str) -> str:
    """A file name as printable text: undecodable bytes as ``\\xNN``, control characters escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def printable_path(path: str | os.PathLike) -> str:
    """``path`` as printable text, escaped like :func:`printable_name`."""
    return printable_name(os.fspath(path))


def id_problem(image_id: str) -> str | None:
    """Why ``image_id`` cannot name the files of an annotation batch, or ``None`` when it can.

    Refused: an empty id, a leading dot (hidden files, and ``..``), bytes that
    are not UTF-8, non-printable characters (control characters, odd spaces),
    the characters of :data:`FORBIDDEN_ID_CHARACTERS`, and ids over
    :data:`MAX_ID_BYTES` bytes.
    """
    if not image_id:
        return "it is empty"
    if image_id.startswith("."):
        return "it starts with a dot (a hidden file)"
    if not is_utf8(image_id):
        return "it is not valid UTF-8"
    if not image_id.isprintable():
        return "it holds control or other non-printable characters"
    bad = sorted(set(image_id) & set(FORBIDDEN_ID_CHARACTERS))
    if bad:
        return f"it holds {' '.join(bad)}, not allowed in file names on Windows or macOS"
    if len(image_id.encode("utf-8")) > MAX_ID_BYTES:
        return f"it is over {MAX_ID_BYTES} bytes long"
    return None
