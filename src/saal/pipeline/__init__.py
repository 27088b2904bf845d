"""The stages as one-call functions on a run directory: what the ``saal`` commands run.

:func:`ssl_weights` / :func:`pool_features` (the self-supervised encoder) ->
:func:`select_images` (cold start) -> :func:`train_model` -> :func:`query_next`
-> :func:`import_annotations` -> :func:`train_model` ... is the human-in-the-loop
cycle; :func:`run_all` is the whole pipeline with the data's own masks standing
in for the annotator, ending with :func:`write_run_report`. Each function opens
nothing itself: it takes a :class:`~saal.workspace.Workspace` (see
:func:`saal.workspace.open_workspace`) and leaves its results as plain files in
the run directory. :func:`advise_run` (how many more labels are likely to pay)
takes the run directory's path instead: it reads files only, no data.
"""

from .advice import advise_run
from .encoder import load_encoder, pool_features, ssl_state, ssl_weights
from .report import write_run_report
from .rounds import (QueryResult, import_annotations, import_mask, loop_dir, next_increment, query_next,
                     run_loop_config, train_model)
from .run import RunResult, describe_run, run_all
from .select import SelectResult, select_images, selection_plan

__all__ = [
    "ssl_weights", "ssl_state", "load_encoder", "pool_features",
    "SelectResult", "select_images", "selection_plan",
    "QueryResult", "train_model", "query_next", "import_annotations", "import_mask", "next_increment", "loop_dir",
    "run_loop_config",
    "RunResult", "describe_run", "run_all", "write_run_report", "advise_run",
]
