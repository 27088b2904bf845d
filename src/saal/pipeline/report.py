"""``report.html`` of a run: what a team lead wants on one screen.

From the run directory's files alone: the learning curve (Dice and HD95 after
each round) beside the rounds table, how many more labels are likely to pay
(:mod:`saal.advise`), the images the cold start chose (in colour,
as the annotator sees them, with the model's input, cluster and distance), the
pool map, what the self-supervised warm-up trained and shows (in the words of
its objective: restorations, or the views it learned to match), and the final
model's best and worst test images.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..active import LoopConfig
from ..advise import advice_table
from ..data.thumbnails import colour_thumbnails
from ..render import html
from ..render.html import Table
from ..segmentation import evaluate, save_prediction_overlays
from ..selection import read_selection_manifest
from ..ssl import describe_objective
from ..ssl.pretrain import SSL_DIR
from ..workspace import EMBEDDED, Workspace
from .advice import advise_run
from .encoder import held_pretraining
from .rounds import loop_dir
from .select import SELECTION_DIR, SELECTION_FILE, THUMBNAIL_PX

#: Test images shown per overlay row (best ones, then worst ones).
N_OVERLAY = 4


def _number(value, fmt: str) -> str:
    return fmt.format(value) if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def warm_up_caption(ws: Workspace) -> str:
    """The caption of ``ssl/samples.png`` in the words of the objective that made it.

    A contrastive run trains no decoder and shows views, a restoration run shows
    restorations: the words must be the run's. The pretraining the run holds
    (finished or interrupted) says which objective made the picture; before any,
    the preset's.
    """
    held = held_pretraining(ws.run_dir)
    objective = held.objective if held is not None else ws.preset.ssl_objective
    return f"Self-supervised warm-up ({objective}). {describe_objective(objective)}"


def rounds_table(rounds: list[dict]) -> Table:
    """One row per round: labels, test scores, time, and (when measured) what its pre-annotations left to change."""
    effort = any("effort_changed" in r for r in rounds)
    rows, previous = [], 0
    for r in rounds:
        rows.append([str(r["round"]), str(r["n_labeled"]), f"+{r['n_labeled'] - previous}",
                     _number(100 * r["dice"], "{:.1f}") if "dice" in r else "–",
                     _number(100 * r["iou"], "{:.1f}") if "iou" in r else "–",
                     _number(r.get("hd95"), "{:.1f}"), _number(r.get("train_seconds"), "{:.0f}")]
                    + ([_number(100 * r["effort_dice"], "{:.1f}") if "effort_dice" in r else "–",
                        _number(100 * r["effort_changed"], "{:.1f}") if "effort_changed" in r else "–"]
                       if effort else []))
        previous = r["n_labeled"]
    header = ["round", "labeled", "new", "Dice (%)", "IoU (%)", "HD95 (px)", "train (s)"]
    note = ("Test-set means after each round's training. Round 0 is the cold start; HD95 is the 95th "
            "percentile of the boundary distance in pixels of the model's input.")
    if effort:
        header += ["proposal Dice (%)", "pixels to change (%)"]
        note += (" Proposal Dice and pixels to change: the previous round's model's masks of the new images (their "
                 "pre-annotations) against the masks they got, and the mean share of each image's pixels an "
                 "annotator changes to correct them (round 0 had no model to propose).")
    return Table("Rounds", header, rows, note)


def _advice(ws: Workspace) -> str:
    """The advisor's sentence and table (also written to ``RUN/active/advice.json``)."""
    advice = advise_run(ws.run_dir, progress=False)  # no cross-validation: the report must not train
    return (f'<h2>How many more labels?</h2>\n<p>{html.inline(advice.sentence)}</p>\n'
            + advice_table(advice).to_html(heading=False))


def _cards(ws: Workspace) -> str:
    """The cold-start images as cards: original in colour, the model's input beside it, cluster and distance."""
    manifest = ws.path(SELECTION_FILE)
    if not manifest.is_file():
        return ""
    rows = read_selection_manifest(manifest)
    index = ws.pool.index_of([r.image_id for r in rows])
    colour = colour_thumbnails(ws.pool, index, THUMBNAIL_PX)
    cards = []
    for r, i, thumb in zip(rows, index, colour):
        details = [f"cluster {r.cluster}"] if r.cluster >= 0 else []
        if math.isfinite(r.distance):
            details.append(f"distance {r.distance:.3g}")
        cards.append(
            f'<div class="card"><div class="pair"><img src="{html.array_data_uri(thumb)}" alt="{r.image_id}">'
            f'<img class="model" src="{html.array_data_uri(ws.pool.images[i])}" alt="model input"></div>'
            f'<div class="id">#{r.rank} {html.inline(r.image_id)}</div><div>{html.inline(", ".join(details))}</div>'
            "</div>")
    strategy = rows[0].strategy if rows else ""
    note = (f"The {len(rows)} images the {strategy} cold start asks to annotate first, in rank order: each one "
            f"as the annotator sees it (colour) and, right, as the model sees it ({ws.preset.image_size} px"
            f"{', gray' if ws.preset.channels == 'gray' else ''}). The distance is the strategy's own: to the cluster "
            "centre for saal and typiclust, to the nearest earlier pick for kcenter.")
    return (f'<h2>Images chosen for annotation</h2>\n<p class="note">{html.inline(note)}</p>\n'
            f'<div class="cards">{"".join(cards)}</div>\n')


def _prediction_overlays(ws: Workspace, model, config: LoopConfig) -> Path:
    """Best and worst test images of ``model`` (predicted as the loop evaluated it): truth and prediction outlines."""
    result = evaluate(model, ws.test, prior=config.seg.prior, threshold=config.seg.threshold, tta=config.seg.tta)
    dice = result.column("dice")
    order = np.argsort(-dice, kind="stable")
    k = max(1, min(N_OVERLAY, len(dice) // 2))
    pick = np.concatenate([order[:k], order[::-1][:k][::-1]])
    return save_prediction_overlays(ws.path("overlays_best_worst.png"), colour_thumbnails(ws.test, pick, THUMBNAIL_PX),
                                    ws.test.masks[pick], result.predictions[pick], [ws.test.ids[i] for i in pick],
                                    dice[pick], columns=k)


def write_run_report(ws: Workspace, config: LoopConfig) -> Path | None:
    """Write ``RUN/report.html`` (None when there is no trained, evaluated round yet)."""
    loop = loop_dir(ws)
    rounds = loop.rounds()
    loaded = loop.load_model("latest")
    if not rounds or loaded is None or ws.test is None:
        return None
    source = "embedded synthetic data" if ws.source == EMBEDDED else ws.source
    facts = (f"{ws.run_dir} · {source} · {len(ws.pool)} pool / {len(ws.test)} test images at "
             f"{ws.preset.image_size} px{' gray' if ws.preset.channels == 'gray' else ''} · preset {ws.preset.name} · "
             f"seed {ws.seed} · cold start {config.cold_start} · query {config.query} · init {config.init} · "
             f"{config.seg.train} training")
    curve = loop.file("learning_curve.png")
    top = ['<div class="row">']
    if curve.is_file():
        top.append(html.figure("Dice (left) and HD95 (right) on the test images after each round of this run "
                               "(one seed: differences of a few points can be seed noise; see saal experiment).",
                               curve))
    top.append("<div>" + rounds_table(rounds).to_html(heading=False) + "</div></div>")
    sections = ["<h2>Learning curve</h2>\n" + "\n".join(top), _advice(ws), _cards(ws)]
    pictures = []
    pool_map = ws.path(SELECTION_DIR, "pool_map.png")
    if pool_map.is_file():
        pictures.append(("Pool map: the pool's features in two dimensions (PCA), the chosen images as stars, "
                         "coloured by cluster", pool_map))
    samples = ws.path(SSL_DIR, "samples.png")
    if samples.is_file():
        pictures.append((warm_up_caption(ws), samples))
    sections.append(html.gallery("Pool and warm-up", pictures))
    overlays = _prediction_overlays(ws, loaded[0], config)
    sections.append(f"<h2>Final model ({rounds[-1]['n_labeled']} labels): best and worst test images</h2>\n"
                    + html.figure("Top row: the best test images; bottom row: the worst. Green: ground truth, "
                                  "red: prediction, drawn over the original image.", overlays))
    return html.write_page(ws.path("report.html"), "saal run report", sections, subtitle=facts)
