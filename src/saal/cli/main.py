"""Entry point of the ``saal`` command.

Each stage's commands live in a module of their own under ``saal.cli`` and are
registered here. Errors the user can act on (:class:`saal.errors.SaalError`)
are printed as one line, without a traceback, and exit with status 2.
"""

from __future__ import annotations

import sys

import typer

try:  # typer >= 0.20 vendors click; older releases depend on it
    from typer._click import exceptions as _click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as _click_exceptions

from ..errors import SaalError

app = typer.Typer(
    name="saal",
    help=(
        "Self-supervised assisted active learning for skin lesion segmentation: decide which "
        "dermoscopy images to annotate first, and train the best segmentation model from them.\n\n"
        "Pipeline: data -> pretrain (self-supervised) -> select (cold start) -> train / query "
        "(active learning) -> experiment / report. 'saal run' does all of it; with no --data it "
        "uses the embedded synthetic dataset."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register_commands() -> None:
    from . import data_cmds, experiment_cmd, pipeline_cmds, synth_cmd

    data_cmds.register(app)
    synth_cmd.register(app)
    pipeline_cmds.register(app)
    experiment_cmd.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status instead of raising it (handy in tests)."""
    try:
        app(args=argv, standalone_mode=False)
    except SaalError as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted: state written so far is kept; rerun the same command to resume", err=True)
        return 130
    except typer.Exit as ex:  # raised by commands that set their own status
        return ex.exit_code
    except SystemExit as ex:
        return int(ex.code or 0)
    except _click_exceptions.ClickException as ex:  # usage errors when not in standalone mode
        ex.show()
        return ex.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
