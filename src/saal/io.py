"""Atomic file writes and small readers for the run directory.

Every stage writes through these helpers so that a crash (or Ctrl-C) at any
moment leaves either the old file or the new one, never a truncated one: the
content goes to a temporary file in the same folder, is flushed to disk, and is
renamed over the target (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import DataError, UnreadableFile


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; give the result the usual umask-based mode instead.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in ``path``; a truncated or garbled file is a one-line DataError naming it.

    (A missing file raises FileNotFoundError: callers decide whether absence is an error.)
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _unreadable(path, "JSON", exc) from None


def _unreadable(path: str | os.PathLike, what: str, exc: BaseException) -> Exception:
    return UnreadableFile(f"not a readable {what} file ({exc.__class__.__name__}; was it cut short by a crash or "
                     "edited by hand?)", path)


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
              fieldnames: Sequence[str] | None = None) -> Path:
    """Write dict rows as CSV; the columns are ``fieldnames`` or the first row's keys."""
    if fieldnames is None:
        fieldnames = list(rows[0].keys()) if rows else []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in fieldnames})
    return atomic_write_text(path, buf.getvalue())


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def append_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> Path:
    """Append records to a JSON-lines file by rewriting it atomically.

    The files this is used for (one line per AL round) are small, so rewriting
    keeps the append all-or-nothing.
    """
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    new = "".join(json.dumps(r, default=_json_default) + "\n" for r in records)
    return atomic_write_text(path, old + new)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _unreadable(path, "JSON-lines", exc) from None


def save_state(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Save a torch state (tensors, numbers, strings, nested dicts) atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(dict(state), buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_state(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a state saved by :func:`save_state`, refusing pickled code (``weights_only``).

    Anything that is not such a state -- a text file, a truncated file, a pickle that would run code --
    is a one-line DataError naming the file, never a traceback.
    """
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning would only clutter the one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # torch's safe loader names what it refused on the line after "WeightsUnpickler error"
        found = next((b for a, b in zip(lines, lines[1:]) if a.startswith("Please file an issue")), "")
        reason = f" ({found[:120]})" if found else ""
        raise DataError(f"refused to load: it holds objects other than tensors and numbers{reason}, which could "
                        "run code; saal only loads weights it wrote", path) from None
    except Exception as exc:  # torch's parsers fail on garbage in many ways (IndexError, KeyError, ...)
        raise _unreadable(path, "weights", exc) from None
    if not isinstance(state, dict):
        raise DataError(f"not a weights file (holds a {type(state).__name__}, not a state dict)", path)
    return state
