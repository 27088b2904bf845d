"""Help texts: docstrings written for the source, reflowed for the terminal.

The help renderer keeps a docstring's hard line breaks, which then break lines
mid-sentence at any terminal width; :func:`help_text` joins the lines of each
paragraph so the renderer wraps them itself.
"""

from __future__ import annotations

import inspect


def help_text(doc: str | None) -> str:
    """``doc`` with every paragraph on one line; paragraphs stay separated by a blank line."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)
