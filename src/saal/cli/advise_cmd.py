"""``saal advise``: how many more labels are worth drawing, from the rounds a run has trained so far."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .text import help_text

RUN_HELP = ("Run directory to advise on (made by 'saal run', or 'saal select' and 'saal train'); only "
            "active/advice.json is written.")


def advise_cmd(
    run: Path = typer.Option(Path("runs/demo"), "--run", help=RUN_HELP),
    crossval: int = typer.Option(3, "--crossval", min=0,
                                 help="Without test masks: folds of the cross-validation on the labeled images "
                                      "that gives the curve (3 folds x 3 training sizes = 9 short trainings, cached "
                                      "per round); 0: no curve, only the stopping signal."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                        help="Training steps of each cross-validation model (default: the "
                                             "preset's, as the rounds)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """How many more images to label: a learning-curve forecast and a label-free stopping signal, in one sentence.

    Needs at least one trained round (saal train or saal run). When the test split has masks, it fits Dice against
    the number of labels with an inverse power law (a - b n^-c, a <= 1) over the rounds so far (three rounds or
    more) and forecasts the next two budgets of the preset (doublings beyond them), with a 10-90 % interval from
    resampling the test images. Without test masks the curve comes from cross-validation on the labeled images
    (--crossval folds; models trained on a quarter, half and all of the other folds score the held-out one).

    Stopping signal: the mean Dice between the last two rounds' predictions on a fixed sample of unlabeled pool
    images (RUN/active/stopset.csv); near 100 % and steady or rising means the model has stopped changing.

    Verdict: more labels are likely worth it when even the 10 % end of the expected gain from doubling the labels
    is at least 1 Dice point, likely not worth it when even the 90 % end is below 1 point, uncertain otherwise.

    Prints a table (labels, measured Dice, fitted, forecast with interval, agreement) and the sentence; then, for
    the rounds whose images went out with the previous model's masks as pre-annotations, the annotation effort:
    the proposals' Dice against the masks and the share of pixels an annotator had to change. Writes
    RUN/active/advice.json. See docs/active-learning.md, "How many more labels?".
    """
    from ..advise import advice_table, effort_table
    from ..pipeline.advice import advise_run

    advice = advise_run(run, crossval_folds=crossval, steps=steps, progress=not quiet)
    table = advice_table(advice)
    typer.echo(table.to_markdown())
    typer.echo("")
    typer.echo(advice.sentence)
    effort = effort_table(advice.effort)
    if effort is not None:
        typer.echo("")
        typer.echo(f"{effort.title}: {effort.note}")
        typer.echo(effort.to_markdown())


def register(app: typer.Typer) -> None:
    app.command("advise", help=help_text(advise_cmd.__doc__))(advise_cmd)
