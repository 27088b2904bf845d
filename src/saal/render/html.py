"""Self-contained HTML pages: one file that can be mailed, archived or opened offline.

Images are embedded as base64 data URIs, the CSS is inline, and there are no
scripts and no external references. A page is a title plus sections of HTML
built from the helpers here; every text passes through :func:`inline`, which
escapes HTML and renders Markdown's `code` and **bold**, the only markup the
reports' prose uses.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import SaalError
from ..io import atomic_write_text

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em auto; max-width: 1240px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; margin-bottom: .3em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; padding-bottom: .15em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
tr:nth-child(even) td { background: #f8f9fb; }
p.note, p.facts { color: #555; font-size: .88em; max-width: 75em; }
code { background: #f1f1f1; padding: 0 .2em; border-radius: 3px; }
figure { margin: .6em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .88em; color: #444; margin-top: .2em; }
.row { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; }
.row > * { flex: 1 1 480px; min-width: 0; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
.grid figure { flex: 1 1 360px; max-width: 600px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: .6em; }
.card { border: 1px solid #ddd; border-radius: 4px; padding: .3em; font-size: .78em; background: #fafafa; }
.card img { width: 100%; height: auto; display: block; image-rendering: auto; }
.card .pair { display: grid; grid-template-columns: 2fr 1fr; gap: .25em; align-items: end; }
.card .pair img.model { image-rendering: pixelated; }
.card .id { font-weight: 600; overflow-wrap: anywhere; }
"""

_MIME = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


@dataclass(frozen=True)
class Table:
    """A titled table of display strings, rendered to Markdown (``summary.md``) and HTML (reports)."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""

    def to_markdown(self) -> str:
        """A GitHub pipe table (``|`` inside cells escaped), without the title."""
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

        return "\n".join([line(self.header), line(["---"] * len(self.header)), *map(line, self.rows)])

    def to_html(self, heading: bool = True) -> str:
        """The table with its title as ``<h2>`` (unless ``heading`` is off) and its note below."""
        head = "".join(f"<th>{inline(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        out = f"<h2>{inline(self.title)}</h2>\n" if heading else ""
        out += f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"
        return out + (f'<p class="note">{inline(self.note)}</p>\n' if self.note else "")


def inline(text: str) -> str:
    """Escape HTML, then render `code` and **bold**."""
    text = html.escape(str(text), quote=True)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def image_data_uri(path: str | os.PathLike) -> str:
    """``data:`` URI of a PNG or JPEG file (the type is read from the file's signature, not its name)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SaalError(f"{path}: cannot read image for the report ({err.strerror or err})") from None
    mime = next((m for magic, m in _MIME if data.startswith(magic)), None)
    if mime is None:
        raise SaalError(f"{path}: not a PNG or JPEG image")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def array_data_uri(image: np.ndarray) -> str:
    """``data:`` URI of a uint8 image array (``(S, S)``, ``(S, S, 1)`` or ``(S, S, 3)``) as PNG."""
    pixels = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def figure(caption: str, png: str | os.PathLike) -> str:
    """An embedded picture with its caption."""
    return (f'<figure><img src="{image_data_uri(png)}" alt="{html.escape(caption, quote=True)}">'
            f"<figcaption>{inline(caption)}</figcaption></figure>")


def gallery(heading: str, images: Sequence[tuple[str, str | os.PathLike]], note: str = "") -> str:
    """A titled section of captioned pictures side by side; empty when there are none."""
    if not images:
        return ""
    figures = "\n".join(figure(caption, png) for caption, png in images)
    note_html = f'<p class="note">{inline(note)}</p>\n' if note else ""
    return f'<h2>{inline(heading)}</h2>\n{note_html}<div class="grid">\n{figures}\n</div>\n'


def page(title: str, sections: Sequence[str], subtitle: str = "") -> str:
    """The whole HTML document: title, optional line of facts under it, then the sections (empty ones skipped)."""
    facts = f'<p class="facts">{inline(subtitle)}</p>\n' if subtitle else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{facts}" + "\n".join(s for s in sections if s) + "\n</body>\n</html>\n")


def write_page(path: str | os.PathLike, title: str, sections: Sequence[str], subtitle: str = "") -> Path:
    """Write :func:`page` atomically; returns the path."""
    return atomic_write_text(path, page(title, sections, subtitle))
