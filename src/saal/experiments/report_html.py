"""A single self-contained HTML report of an experiment.

One file that can be mailed, archived or opened offline: images are embedded as base64 data URIs,
the CSS is inline, and there are no scripts and no external references. Tables come either straight
from a :class:`~saal.experiments.summary.Summary` or from its Markdown (``summary.md``), through the
small Markdown subset converter below (headings, pipe tables, bullet lists, paragraphs, inline code
and bold), which is all the summary uses.
"""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path
from typing import Sequence

from ..errors import SaalError
from ..io import atomic_write_text
from .summary import Summary, Table

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: .15em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
tr:nth-child(even) td { background: #f8f9fb; }
p.note { color: #555; font-size: .85em; max-width: 60em; }
code { background: #f1f1f1; padding: 0 .2em; border-radius: 3px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #444; margin-top: .3em; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
.grid figure { flex: 1 1 360px; max-width: 580px; }
"""

_MIME = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


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


def table_html(table: Table) -> str:
    """A titled HTML table (title as <h2>, note as a paragraph below)."""
    return _titled_table(table.title, table.header, table.rows, table.note)


def _titled_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], note: str) -> str:
    head = "".join(f"<th>{_inline(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
    out = f"<h2>{_inline(title)}</h2>\n<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"
    return out + (f'<p class="note">{_inline(note)}</p>\n' if note else "")


def _inline(text: str) -> str:
    """Escape HTML, then render `code` and **bold**."""
    text = html.escape(str(text), quote=True)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _split_row(line: str) -> list[str]:
    """Cells of a pipe-table line; ``\\|`` is a literal bar."""
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def markdown_to_html(text: str) -> str:
    """Convert the Markdown subset the summary uses into HTML (everything is escaped first)."""
    lines = text.splitlines()
    out: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            flush()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2).strip())}</h{level}>")
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1]):
            flush()
            header = _split_row(line)
            i += 2
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_split_row(lines[i]))
                i += 1
            head = "".join(f"<th>{_inline(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            continue
        elif re.match(r"^\s*[-*]\s+", line):
            if paragraph:
                flush()
            items.append(re.sub(r"^\s*[-*]\s+", "", line))
        elif not line.strip():
            flush()
        else:
            if items:
                flush()
            paragraph.append(line.strip())
        i += 1
    flush()
    return "\n".join(out) + "\n"


def _summary_html(summary: Summary) -> tuple[str, str]:
    """(preamble and findings, tables) of a summary."""
    head = (f"<p>{_inline(summary.preamble())}</p>\n<h2>Findings</h2>\n"
            + "<ul>" + "".join(f"<li>{_inline(s)}</li>" for s in summary.statements) + "</ul>\n")
    return head, "".join(table_html(t) for t in summary.tables())


def _split_markdown(md: str) -> tuple[str, str]:
    """(preamble and first section, the rest) of a Markdown summary, its ``# title`` dropped.

    In ``summary.md`` the first section is the findings, which the report shows above the figures.
    """
    md = re.sub(r"\A\s*#\s+[^\n]*\n", "", md)  # the report has its own <h1>
    sections = [m.start() for m in re.finditer(r"^##\s", md, flags=re.MULTILINE)]
    cut = sections[1] if len(sections) > 1 else len(md)
    return md[:cut], md[cut:]


def _figure(title: str, png: str | os.PathLike) -> str:
    return (f'<figure><img src="{image_data_uri(png)}" alt="{html.escape(title, quote=True)}">'
            f"<figcaption>{_inline(title)}</figcaption></figure>")


def _gallery(heading: str, images: Sequence[tuple[str, str | os.PathLike]], note: str) -> str:
    if not images:
        return ""
    figures = "\n".join(_figure(title, png) for title, png in images)
    return f'<h2>{_inline(heading)}</h2>\n<p class="note">{_inline(note)}</p>\n<div class="grid">\n{figures}\n</div>\n'


def write_html_report(path: str | os.PathLike, *, summary: Summary | None = None, summary_md: str | None = None,
                      learning_curves_png: str | os.PathLike | None = None,
                      selection_sheets: Sequence[tuple[str, str | os.PathLike]] = (),
                      overlays: Sequence[tuple[str, str | os.PathLike]] = (),
                      extra_tables: Sequence[Table] = (), title: str = "saal experiment report") -> Path:
    """Write the report: findings, learning curves, summary tables, selected images, prediction overlays.

    Give the summary either as a :class:`Summary` (``summary``) or as Markdown text (``summary_md``,
    e.g. the contents of ``summary.md``), not both. ``selection_sheets`` and ``overlays`` are
    ``(caption, image path)`` pairs; sections without content are left out.
    """
    if summary is not None and summary_md is not None:
        raise ValueError("pass either summary or summary_md, not both")
    if summary is not None:
        findings, tables = _summary_html(summary)
    elif summary_md is not None:
        findings, tables = map(markdown_to_html, _split_markdown(summary_md))
    else:
        findings = tables = ""
    sections = [findings]
    if learning_curves_png is not None:
        sections.append("<h2>Learning curves</h2>\n" + _figure(
            "Dice vs labeled images: mean ± std over seeds (thin lines: single seeds); dashed: full supervision",
            learning_curves_png))
    sections.append(tables)
    sections.append(_gallery("Images selected for annotation", selection_sheets,
                             "The cold-start selection: the images chosen per feature cluster."))
    sections.append(_gallery("Prediction overlays", overlays,
                             "Test images with the best and the worst Dice: prediction over ground truth."))
    sections += [table_html(t) for t in extra_tables]
    doc = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
           f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
           f"<h1>{html.escape(title)}</h1>\n" + "\n".join(s for s in sections if s) + "\n</body>\n</html>\n")
    return atomic_write_text(path, doc)
