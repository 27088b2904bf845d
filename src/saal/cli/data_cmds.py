"""``saal data ...``: generate, load and inspect datasets."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Generate the embedded synthetic dataset, load and inspect image folders.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
