"""``saal pretrain | select | train | query | annotate import | run``: the pipeline, stage by stage.

Every command works on a run directory (``--run``); the first command that
opens it records the data, preset and seed, later ones reuse them. Each command
checks all its options first (:func:`saal.config.check_options`: a typo costs one
line and writes nothing) and then holds the run (:func:`saal.workspace.run_lock`:
one command per run at a time). Thin layer over :mod:`saal.pipeline` and
:mod:`saal.workspace`.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from .text import help_text

RUN_HELP = "Run directory: every stage reads and writes its files here (created on first use)."
DATA_HELP = ("Dataset folder (ISIC 2016/2017/2018 layout, images/ + masks/, or unlabeled images). "
             "Default: the embedded synthetic dataset. Only needed when the run directory is new.")
PRESET_HELP = "demo (minutes on a CPU, 64 px), cpu (ISIC protocol at 128 px), paper (256 px, 64 channels; GPUs)."
OBJECTIVE_HELP = ("Self-supervised objective of a new run: genesis (the paper's Models Genesis restoration: encoder "
                  "and decoder learn to restore damaged images), contrastive (SimCLR: the encoder learns to match two "
                  "random views of each image; the decoder is not trained) or genesis+contrastive (both). Default: "
                  "the preset's (genesis+contrastive for demo, contrastive for cpu, genesis for paper).")
COLD_START_HELP = ("saal (the paper: k-means on the SSL features, a share per cluster, nearest the centre first), "
                   "saal-typical (the paper's shares, the most typical members first), random, kcenter (core-set), "
                   "typiclust, probcover. Default: the preset's (saal-typical for demo and cpu, saal for paper; "
                   "measured in docs/experiments.md).")
QUERY_HELP = ("Query of the rounds after the cold start: random, entropy, bald, variance (MC dropout), "
              "uncertainty-diversity, representative (the paper's cluster criterion continued), cold-start-rule "
              "(the run's own cold start continued), cluster-entropy (the most uncertain image of each least covered "
              "cluster). Default: the preset's (cold-start-rule for demo and cpu, representative for paper; "
              "measured in docs/experiments.md).")

TRAIN_HELP = ("supervised (the labeled images alone) or semi (plus pseudo-labels on the pool's unlabeled images, "
              "FixMatch-style; about twice the time per round). Default: the preset's (supervised; measured in "
              "docs/experiments.md).")
DEVICE_HELP = ("Where to train: auto (CUDA when available, else CPU), cuda or cpu. Not recorded with the run: "
               "a run may resume on another device.")

annotate_app = typer.Typer(help="Bring annotators' masks back into the run.", no_args_is_help=True)


REDUCTION_HELP = ("How the uncertainty queries (entropy, bald, variance, uncertainty-diversity, cluster-entropy) score "
                  "an image: mean (over all pixels) or top10 (the mean of its 10 % most uncertain pixels). "
                  "Default: the preset's (mean).")


SET_HELP = ("Any setting of a new run's preset, by its name (repeat for several): e.g. --set channels=rgb --set "
            "seg_augment=strong --set seg_prior=lesion --set seg_tta=true. Recorded in RUN/run.json; the settings "
            "and their values are listed under 'Presets' in README.md and in saal.config.Preset's documentation.")


@contextmanager
def _workspace(run: Path, data: Optional[Path], preset: Optional[str], seed: Optional[int],
               skip_bad: bool = False, quiet: bool = False, create: bool = True, objective: Optional[str] = None,
               sets: Optional[list[str]] = None, **options) -> Iterator:
    """The opened run, held by this process for the ``with`` block; ``options`` are checked before anything else.

    ``options`` are the command's other settings by their preset names (``query=...``, ``cold_start=...``):
    refused in one line before the run directory is created or changed, as are the ``--set`` pairs (``sets``).
    """
    from ..config import check_options, get_preset, parse_settings
    from ..workspace import RUN_FILE, open_workspace, run_lock

    settings = {"ssl_objective": objective, **parse_settings(sets or [])}
    check_options(ssl_objective=objective, seed=seed, **options)
    if preset is not None:
        get_preset(preset)
    if not create and not (run / RUN_FILE).is_file():
        open_workspace(run, create=False)  # says that this is no run directory (and creates nothing)
    with run_lock(run):
        ws = open_workspace(run, data=data, preset=preset, seed=seed, skip_bad=skip_bad, create=create,
                            progress=not quiet, settings=settings)
        if not quiet:
            test = "no test set" if ws.test is None else f"{len(ws.test)} test"
            typer.echo(f"run {ws.run_dir}: {ws.source}, preset {ws.preset.name}, seed {ws.seed}, "
                       f"pool {len(ws.pool)} images / {test} images at {ws.preset.image_size} px", err=True)
        yield ws


def pretrain_cmd(
    run: Path = typer.Option(Path("runs/demo"), "--run", help=RUN_HELP),
    data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP),
    preset: Optional[str] = typer.Option(None, "--preset", help=PRESET_HELP),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the whole run (default 0)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Pretraining epochs (default: the preset's)."),
    objective: Optional[str] = typer.Option(None, "--objective", help=OBJECTIVE_HELP),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="SETTING=VALUE", help=SET_HELP),
    resume: bool = typer.Option(False, "--resume", help="Require an interrupted run to continue (exactly)."),
    force: bool = typer.Option(False, "--force", help="Start over even if a finished pretraining exists."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave unreadable or inconsistent files out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Self-supervised warm-up on the pool images (no labels), with the run's --objective.

    contrastive (cpu preset): the encoder learns to match two random views of each image (SimCLR); the decoder
    is not trained. genesis (paper preset): encoder and decoder learn to restore Models Genesis-damaged images.
    genesis+contrastive (demo preset): both at once.

    Writes RUN/ssl/: weights.pt (best validation loss), checkpoint.pt (resumable every epoch), history.csv,
    model.json and samples.png (view 1 / view 2 / original for contrastive, damaged input / restored / original
    for the objectives that restore). The validation images are a held-out part of the pool, never the test
    images. An interrupted run continues where it stopped.
    """
    from ..pipeline import ssl_weights
    from ..ssl import load_result

    with _workspace(run, data, preset, seed, skip_bad, quiet, objective=objective, sets=sets,
                    ssl_epochs=epochs) as ws:
        ssl_weights(ws, epochs=epochs, resume=resume, force=force, progress=not quiet)
        result = load_result(ws.run_dir)
    first, last = result.history[0]["val_loss"], result.best_val_loss
    typer.echo(f"pretrained {result.epochs_run} epochs: validation loss {first:.5f} -> best {last:.5f} "
               f"(epoch {result.best_epoch}); weights {result.weights_path}")


def select_cmd(
    budget: int = typer.Option(..., "--budget", "-b", min=1, help="Total number of images to annotate first."),
    run: Path = typer.Option(Path("runs/demo"), "--run", help=RUN_HELP),
    data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP),
    cold_start: Optional[str] = typer.Option(None, "--cold-start", help=COLD_START_HELP),
    weights: Optional[Path] = typer.Option(None, "--weights",
                                           help="SSL weights to take the features from (default: pretrain in RUN)."),
    clusters: Optional[int] = typer.Option(None, "--clusters", min=1, help="k of k-means (default 10)."),
    preset: Optional[str] = typer.Option(None, "--preset", help=PRESET_HELP),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the whole run (default 0)."),
    objective: Optional[str] = typer.Option(None, "--objective", help=OBJECTIVE_HELP),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="SETTING=VALUE", help=SET_HELP),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave unreadable or inconsistent files out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Cold start: choose which images to annotate first, without any labels.

    Works on a folder of unlabeled images. Pretrains (unless --weights), extracts the encoder features of every
    pool image, selects, and writes RUN/selection.csv (rank, image id, path, cluster, distance, strategy),
    RUN/selection/selected.png (the chosen images in colour) and RUN/selection/pool_map.png. A larger --budget
    later extends the same selection.
    """
    from ..pipeline import select_images

    with _workspace(run, data, preset, seed, skip_bad, quiet, objective=objective, sets=sets, budget=budget,
                    cold_start=cold_start, n_clusters=clusters) as ws:
        result = select_images(ws, budget, cold_start=cold_start, weights=weights, n_clusters=clusters,
                               progress=not quiet)
    typer.echo(f"selected {len(result.ids)} images ({len(result.new_ids)} new) -> {result.manifest}")
    typer.echo(f"pictures: {result.sheet}, {result.pool_map}")


INIT_HELP = ("ssl (from the self-supervised weights, the paper's method; the default of every preset) or scratch "
             "(random weights). On real ISIC 2017 (1000-image pool, 10 labels) ssl measured level with or slightly "
             "above scratch (+0.3 and +1.1 Dice points, not significant); docs/experiments.md.")


def train_cmd(
    run: Path = typer.Option(Path("runs/demo"), "--run", help=RUN_HELP),
    init: Optional[str] = typer.Option(None, "--init", help=INIT_HELP),
    finetune: str = typer.Option("restart", "--finetune",
                                 help="restart from the init weights, or continue from the previous model."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Optimisation steps (default: the preset's)."),
    train: Optional[str] = typer.Option(None, "--train", help=TRAIN_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train the segmentation U-Net on every image labeled so far and evaluate it on the test split.

    Writes RUN/active/models/latest.pt, rounds.jsonl (one record per round), labeled_round_N.csv,
    eval/round_N.csv (per test image) and learning_curve.png.
    """
    from ..pipeline import train_model

    with _workspace(run, None, None, None, quiet=quiet, create=False, init=init, finetune=finetune, seg_steps=steps,
                    seg_train=train) as ws:
        rec = train_model(ws, init=init, finetune=finetune, steps=steps, train=train, progress=not quiet)
    score = f"test Dice {100 * rec['dice']:.1f}, IoU {100 * rec['iou']:.1f}" if "dice" in rec else "no test set"
    typer.echo(f"round {rec['round']}: trained on {rec['n_labeled']} labeled images in "
               f"{rec['train_seconds']:.0f} s; {score}")


def query_cmd(
    run: Path = typer.Option(Path("runs/demo"), "--run", help=RUN_HELP),
    k: Optional[int] = typer.Option(None, "--k", "-k", min=1,
                                    help="How many images (default: up to the preset's next budget)."),
    query: Optional[str] = typer.Option(None, "--query", help=QUERY_HELP),
    format: str = typer.Option("folder", "--format",
                               help="For which tool: folder (PNG masks in any editor), labelstudio (tasks.json "
                                    "with the model's masks as pre-annotations), cvat (a 'Segmentation mask 1.1' "
                                    "task package)."),
    ls_root: Optional[Path] = typer.Option(None, "--ls-root",
                                           help="labelstudio: the folder Label Studio serves local files from "
                                                "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); default: the run "
                                                "directory."),
    image_url: Optional[str] = typer.Option(None, "--image-url",
                                            help="labelstudio: refer to the images as IMAGE_URL/<file name> (a web "
                                                 "server or bucket you serve them from) instead of local files."),
    oracle: bool = typer.Option(False, "--oracle",
                                help="Label the batch at once from the data's own masks (simulation)."),
    reduction: Optional[str] = typer.Option(None, "--reduction", help=REDUCTION_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Choose the next images to annotate and export them to RUN/annotate/round_N/ for annotators.

    The first batch is the cold-start selection (saal select); later batches continue it (the default query,
    cold-start-rule, extends the run's own cold start with its k) or ask the model trained on the current labeled
    set (saal train), whose masks come along as pre-annotations (predictions/, and inside the
    Label Studio or CVAT files) with a per-image uncertainty that orders manifest.csv. The folder holds the
    images, manifest.csv, a README for annotators and an empty masks/ folder: draw one binary PNG per image
    there (<id>_segmentation.png, the image's size) and run 'saal annotate import FOLDER', or import the
    tool's export: 'saal annotate import EXPORT.json' (Label Studio) or 'saal annotate import EXPORT.zip' (CVAT).
    docs/annotation.md walks through each tool.
    """
    from ..active.annotate import FORMATS
    from ..errors import SaalError
    from ..pipeline import query_next

    if format not in FORMATS:
        raise SaalError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    with _workspace(run, None, None, None, quiet=quiet, create=False, k=k, query=query,
                    query_reduction=reduction) as ws:
        result = query_next(ws, k=k, query=query, reduction=reduction, oracle=oracle, format=format,
                            document_root=ls_root, image_url=image_url, progress=not quiet)
    where = "labeled from the data's masks" if result.batch_dir is None else f"exported to {result.batch_dir}"
    typer.echo(f"round {result.round}: {len(result.ids)} images {where}")


def annotate_import_cmd(
    source: Path = typer.Argument(..., metavar="SOURCE",
                                  help="The annotation folder written by 'saal query' (masks in its masks/), or an "
                                       "export of its tasks: Label Studio JSON (.json) or CVAT 'Segmentation "
                                       "mask 1.1' (.zip or its unpacked folder)."),
    run: Path = typer.Option(Path("runs/demo"), "--run", help=RUN_HELP),
    batch: Optional[Path] = typer.Option(None, "--batch",
                                         help="With an export: the batch folder it belongs to (default: the "
                                              "batch the run waits for)."),
    replace: bool = typer.Option(False, "--replace",
                                 help="Record corrected masks of a batch imported before (the replaced files are "
                                      "kept in RUN/active/labels/replaced/); retrain afterwards."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No messages besides the result."),
) -> None:
    """Check the annotators' masks (one per image, binary, the image's size) and add them to the labeled set.

    Masks come from the batch's masks/ folder or from a Label Studio / CVAT export, matched to the images by
    their ids. The batch must be one this run exported (the one it waits for, or an earlier one). Nothing is
    recorded unless every mask passes; importing the same batch twice adds nothing, unless --replace records
    corrected masks.
    """
    from ..pipeline import import_annotations

    with _workspace(run, None, None, None, quiet=quiet, create=False) as ws:
        result = import_annotations(ws, source, batch=batch, replace=replace)
    done = [f"imported {len(result.added)} new masks"] if result.added else []
    if result.replaced:
        done.append(f"replaced {len(result.replaced)} masks (the old ones kept); run 'saal train' to learn them")
    if done:
        typer.echo(f"{source}: {'; '.join(done)}")
    elif result.differing:
        typer.echo(f"{source}: already imported; {len(result.differing)} masks differ from the recorded ones: "
                   "pass --replace to record them (the old ones are kept)")
    else:
        typer.echo(f"{source}: already imported, nothing new")


annotate_app.command("import", help=help_text(annotate_import_cmd.__doc__))(annotate_import_cmd)


def run_cmd(
    run: Path = typer.Option(Path("runs/demo"), "--run", help=RUN_HELP),
    data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP),
    preset: Optional[str] = typer.Option(None, "--preset", help=PRESET_HELP),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the whole run (default 0)."),
    cold_start: Optional[str] = typer.Option(None, "--cold-start", help=COLD_START_HELP),
    query: Optional[str] = typer.Option(None, "--query", help=QUERY_HELP),
    init: Optional[str] = typer.Option(None, "--init", help=INIT_HELP),
    train: Optional[str] = typer.Option(None, "--train", help=TRAIN_HELP),
    reduction: Optional[str] = typer.Option(None, "--reduction", help=REDUCTION_HELP),
    objective: Optional[str] = typer.Option(None, "--objective", help=OBJECTIVE_HELP),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="SETTING=VALUE", help=SET_HELP),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave unreadable or inconsistent files out."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Everything: pretrain -> select -> train -> active-learning rounds -> evaluate -> report.

    The annotator is simulated with the data's own masks (the embedded dataset when no --data). Budgets are the
    preset's (demo: 10, 20, 40, 80 labels). Writes RUN/report.html with the learning curve, the selection and
    the best/worst predictions; an interrupted run continues where it stopped when run again.
    """
    import time

    from ..pipeline import describe_run, run_all
    from ..runtime import use_device

    use_device(device)
    t0 = time.perf_counter()
    with _workspace(run, data, preset, seed, skip_bad, quiet, objective=objective, sets=sets, cold_start=cold_start,
                    query=query, init=init, seg_train=train, query_reduction=reduction) as ws:
        typer.echo(describe_run(ws, cold_start=cold_start, query=query, init=init, train=train))
        result = run_all(ws, cold_start=cold_start, query=query, init=init, train=train, reduction=reduction,
                         progress=not quiet)
    for r in result.rounds:
        typer.echo(f"round {r['round']}: {r['n_labeled']:>5} labeled  Dice {100 * r['dice']:.1f}  "
                   f"IoU {100 * r['iou']:.1f}  HD95 {r['hd95']:.1f} px")
    typer.echo(f"report: {result.report}  ({time.perf_counter() - t0:.0f} s)")


def register(app: typer.Typer) -> None:
    for name, command in (("pretrain", pretrain_cmd), ("select", select_cmd), ("train", train_cmd),
                          ("query", query_cmd), ("run", run_cmd)):
        app.command(name, help=help_text(command.__doc__))(command)
    app.add_typer(annotate_app, name="annotate")
