"""``saal data synth``: write the embedded synthetic dataset to disk (ISIC 2017 layout)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Commands attach to ``data_app`` (see ``data_cmds``); nothing to add at top level."""
