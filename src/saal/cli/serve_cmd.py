"""``saal serve``: the run as a Label Studio ML backend, learning from each mask as annotators submit it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .text import help_text

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve_cmd(
    run: Path = typer.Option(Path("runs/demo"), "--run",
                             help="Run directory with a selection ('saal select'): its batches, masks and models."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on. The default answers this machine only; anyone who reaches "
                                  "another address can record masks into the run (there is no login)."),
    port: int = typer.Option(9090, "--port", min=1, max=65535, help="Port to listen on."),
    retrain_every: Optional[int] = typer.Option(
        None, "--retrain-every", min=1,
        help="Train again after this many new masks (and whenever a batch is complete). Default: the preset's next "
             "budget step, i.e. once the batch the run waits for is complete."),
    ls_root: Optional[Path] = typer.Option(None, "--ls-root",
                                           help="The folder Label Studio serves local files from "
                                                "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT), for the tasks.json of "
                                                "each new batch; default: the run directory."),
    image_url: Optional[str] = typer.Option(None, "--image-url",
                                            help="Refer to the images of new batches as IMAGE_URL/<file name> "
                                                 "instead of local files."),
) -> None:
    """Serve the run as a Label Studio ML backend: predictions as annotators open a task, training as masks arrive.

    Label Studio's ML-backend protocol (Label Studio 1.23 was tested), over HTTP on --host:--port: GET /health;
    POST /setup (Label Studio connects, and asks the model version before predicting; the project's labeling
    interface must be saal's brush label, label_config.xml); POST /predict (one prediction per task: the current
    model's lesion mask as a brush pre-annotation, and score = the image's usefulness for the next batch: 1 for
    the query's first pick of the batch the run waits for, down by rank to 1/k for its k-th, 0 for every other
    image, so sorting the Data Manager by prediction score lists the next tasks to annotate first; before any
    mask exists, the cold-start order and no mask); POST /webhook (the project's events, a webhook Label Studio
    adds when the model is connected: each submitted or updated annotation is checked and recorded exactly as
    'saal annotate import' records a batch, "Start Training" trains now); GET /versions. Every refused request
    gets one line (in the answer and in this log) and writes nothing.

    Learning: the server exports the batch the run waits for (RUN/annotate/round_N/labelstudio/tasks.json, with
    data.saal_id; tasks made from the data folder itself are recognised by their file names), records each mask
    of it as it arrives, trains in the background after --retrain-every new masks and whenever the batch is
    complete, then exports the next batch; the next predictions, and their scores, come from the new model (a
    new model version: 'Retrieve predictions' in the Data Manager asks for them). Annotations of images outside
    the waiting batch are refused in one line; an updated annotation of a recorded image replaces its mask (the
    old file kept in RUN/active/labels/replaced/).

    The server holds the run only while it records, trains or exports, so 'saal advise', 'saal annotate import'
    and the other commands work beside it. Killed at any moment (kill -9 included), it loses no recorded mask
    and counts none twice; started again, it resumes an interrupted training. Label Studio must be allowed to
    reach a local backend: start it with ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false when both run on
    one machine. Step by step: docs/annotation.md.
    """
    import importlib

    from ..errors import SaalError
    from ..progress import say
    from ..workspace import open_workspace

    # Loaded now, not at the first annotation: the SDK (the brush RLE) takes seconds to import, longer than
    # Label Studio waits for a webhook's answer.
    for module in ("label_studio_sdk.converter.brush", "starlette", "uvicorn"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = (exc.name or module).split(".")[0]
            raise SaalError(f"saal serve needs the {missing} package: pip install 'saal[serve]'") from None
    from ..serve.app import listen, serve
    from ..serve.backend import Backend

    ws = open_workspace(run, create=False, progress=False)
    backend = Backend(ws, retrain_every=retrain_every, document_root=ls_root, image_url=image_url)  # writes nothing
    sock = listen(host, port)
    if host not in LOCAL_HOSTS:
        say(f"warning: listening on {host}, not only on this machine: anyone who reaches it can record masks")
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    say(f"saal serve: run {ws.run_dir} as a Label Studio ML backend at {url} (Label Studio: project Settings > "
        "Model > Connect Model, this URL); Ctrl-C stops it")
    serve(backend, sock)


def register(app: typer.Typer) -> None:
    app.command("serve", help=help_text(serve_cmd.__doc__))(serve_cmd)
