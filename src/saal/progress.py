"""One progress bar for every long loop of saal (pretraining, segmentation training).

A rich bar over optimisation steps that shows the running loss, the elapsed
and remaining time, and log lines above it; ``enabled=False`` makes every call
a no-op, so a training loop has a single code path with or without a terminal.
When a loop ends before its planned total (early stopping), :meth:`StepProgress.finish`
shrinks the total to what was done, so the last frame reads complete rather than
stuck half-way.
"""

from __future__ import annotations


class StepProgress:
    """Progress over ``total`` steps; use as a context manager."""

    def __init__(self, label: str, total: int, *, enabled: bool = True, completed: int = 0,
                 transient: bool = False):
        self.label, self.total, self.completed = label, int(total), int(completed)
        self.enabled, self.transient = enabled, transient
        self._bar = None

    def __enter__(self) -> "StepProgress":
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 transient=self.transient)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.completed, loss="-")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def describe(self, text: str) -> None:
        """Replace the label (e.g. ``ssl epoch 3/60``)."""
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def update(self, *, advance: int = 0, completed: int | None = None, loss: float | None = None) -> None:
        """Move the bar by ``advance`` steps or to ``completed``; show ``loss`` when given."""
        self.completed = completed if completed is not None else self.completed + advance
        if self._bar is not None:
            fields = {} if loss is None else {"loss": f"{loss:.5f}"}
            self._bar.update(self._task, completed=self.completed, **fields)

    def finish(self) -> None:
        """End the bar at the steps actually done (early stopping ends a loop before its total)."""
        self.total = self.completed
        if self._bar is not None:
            self._bar.update(self._task, total=self.completed, completed=self.completed)

    def log(self, line: str) -> None:
        """Print a line above the bar (nothing when disabled)."""
        if self._bar is not None:
            self._bar.console.print(line, highlight=False)


def say(line: str) -> None:
    """Print one message line to stderr (outside any bar): a notice the user should see, not a result."""
    from rich.console import Console

    Console(stderr=True).print(line, highlight=False, soft_wrap=True)  # one line, whatever the width
