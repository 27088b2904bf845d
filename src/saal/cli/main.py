"""Entry point of the ``saal`` command.

Each stage's commands live in a module of their own under ``saal.cli`` and are
registered here. Errors the user can act on (:class:`saal.errors.SaalError`,
and the parser's complaints about an option) are printed as one line, without
a traceback, and exit with status 2.
"""

from __future__ import annotations

import sys

import typer

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
    from . import advise_cmd, data_cmds, experiment_cmd, pipeline_cmds, serve_cmd, synth_cmd

    data_cmds.register(app)
    synth_cmd.register(app)
    pipeline_cmds.register(app)
    serve_cmd.register(app)
    advise_cmd.register(app)
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
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except Exception as ex:
        if _is_usage_error(ex):
            typer.echo(f"error: {_usage_line(ex)}", err=True)
            return ex.exit_code
        raise
    return 0


def _usage_line(ex: Exception) -> str:
    """The parser's complaint as one line, with where to get help (like every other saal error)."""
    message = ex.format_message() if callable(getattr(ex, "format_message", None)) else str(ex)
    context = getattr(ex, "ctx", None)
    where = f" ('{context.command_path} --help' explains the options)" if context is not None else ""
    return " ".join(message.split()) + where


def _is_usage_error(ex: Exception) -> bool:
    """A bad option or argument, raised by the command-line parser when it does not exit by itself.

    Recognised by the parser's public protocol (``show()`` and an integer
    ``exit_code``) rather than by its class, which typer keeps in a private
    module in some releases and in click in others.
    """
    return callable(getattr(ex, "show", None)) and isinstance(getattr(ex, "exit_code", None), int)


if __name__ == "__main__":
    sys.exit(main())
