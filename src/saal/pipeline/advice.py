"""``saal advise`` on a run directory: the advice for ``RUN/active``, written to ``RUN/active/advice.json``.

Reads ``run.json`` for the planned budgets and the loop folder's files only; the data is not loaded, so the
advice of a large run takes a second.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..advise import Advice, advise_loop, write_advice
from ..config import Preset
from ..errors import SaalError
from ..io import read_json
from ..workspace import RUN_FILE
from .rounds import ACTIVE_DIR


def advise_run(run_dir: str | os.PathLike) -> Advice:
    """The advice after the rounds ``run_dir`` has trained so far; also written to ``RUN/active/advice.json``."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        raise SaalError(f"{run_dir} is not a saal run directory (no {RUN_FILE}); start one with 'saal run' or "
                        "'saal select'")
    record = read_json(run_dir / RUN_FILE)
    loop = run_dir / ACTIVE_DIR
    if not (loop / "rounds.jsonl").is_file():
        raise SaalError(f"{run_dir}: no round trained yet: run 'saal train' first")
    advice = advise_loop(loop, Preset.from_record(record["preset"]).budgets, seed=int(record["seed"]))
    write_advice(loop, advice)
    return advice
