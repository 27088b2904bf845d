"""The figures and files an experiment ends with, drawn from ``results.csv`` and the shared stage.

* ``summary.md`` and ``learning_curves.png`` from the results table alone (:mod:`.summary`, :mod:`.plots`);
* ``report/selection_<cold start>_<replicate>_n<budget>.png``: the images each cold start chose at the smallest
  budget, in colour and rank order, framed by cluster for the clustering strategies;
* ``report/overlays_<cell>_<replicate>_n<budget>_{best,worst}.png``: test predictions of the cell
  with the best mean Dice at the smallest budget, its best and worst images;
* ``report.html``: all of the above in one self-contained file.

The cold-start selections are recomputed (they are cheap and deterministic) and checked against
the ids the cell actually labeled. The overlay model is retrained: every cell keeps only its last
round's model, and round 0 trains deterministically from (seed, round), so rerunning that one round
in ``report/models/`` gives the model the cell evaluated. Pictures are made once and reused; the
report stage holds ``locks/report.lock`` so that parallel processes do not draw them twice.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..active.loop import LoopDir, run_simulated
from ..data.thumbnails import colour_thumbnails
from ..io import read_csv
from ..render import html
from ..segmentation import evaluate, save_prediction_overlays
from ..selection import make_cold_start
from ..selection.figures import selection_sheet
from .collect import RESULTS_FILE
from ..locks import LOCKS_DIR, locked
from .matrix import Cell
from .plots import plot_learning_curves
from .results import Results, load_results
from .stats import budget_stats
from .summary import Summary, write_summary_md
from .tasks import Shared, loop_config

REPORT_DIR = "report"
#: Test images shown per overlay figure (best ones, worst ones).
N_OVERLAY = 4


def _first_replicate(results: Results, cell: str) -> tuple[int, int]:
    return min(r.replicate for r in results.rows if r.cell == cell)


def selection_sheets(shared: Shared, results: Results) -> list[tuple[str, Path]]:
    """One picture per cold start in the results (SAAL first), for its first replicate, smallest budget."""
    budget = min(results.budgets)
    by_cold_start: dict[str, str] = {}
    for cell in results.cells:
        by_cold_start.setdefault(results.meta(cell)[0], cell)
    order = sorted(by_cold_start, key=lambda c: (c != "saal", list(by_cold_start).index(c)))
    sheets = []
    for cold_start in order:
        cell = by_cold_start[cold_start]
        replicate = _first_replicate(results, cell)
        task = shared.task(Cell(*results.meta(cell)), replicate)
        seed = task.seed
        png = shared.out_dir / REPORT_DIR / f"selection_{cold_start}_{task.key}_n{budget}.png"
        strategy = make_cold_start(cold_start, n_clusters=shared.preset.n_clusters)
        selection = strategy.select(shared.encoders[task.ssl_seed].features, budget, seed=seed)
        labeled = read_csv(task.directory(shared.out_dir) / "labeled_round_0.csv")
        chosen = [shared.pool.ids[i] for i in selection.indices]
        if chosen != [row["image_id"] for row in labeled]:
            raise RuntimeError(f"the recomputed {cold_start} cold start ({task.replicate_label}) differs from the "
                               f"images {cell} labeled; the loop's selection settings changed")
        if not png.is_file():
            selection_sheet(png, colour_thumbnails(shared.pool, selection.indices, 128), selection, shared.pool.ids)
        clusters = int(np.unique(selection.cluster[selection.cluster >= 0]).size)
        grouped = f", {clusters} clusters" if clusters else ""
        sheets.append((f"{cold_start} cold start, {task.replicate_label}: {budget} images{grouped}", png))
    return sheets


def best_cell_at_smallest_budget(results: Results) -> tuple[str, int, float]:
    """(cell, budget, mean Dice) of the cell with the highest mean Dice at the smallest budget."""
    budget = min(results.budgets)
    stats = [st for st in budget_stats(results, "dice") if st.n_labeled == budget]
    best = max(stats, key=lambda st: st.mean)
    return best.cell, budget, best.mean


def prediction_overlays(shared: Shared, results: Results, *, progress: bool = True) -> list[tuple[str, Path]]:
    """Best and worst test predictions of the best cell at the smallest budget (its first replicate)."""
    name, budget, _ = best_cell_at_smallest_budget(results)
    task = shared.task(Cell(*results.meta(name)), _first_replicate(results, name))
    cell, encoder = task.cell, shared.encoders[task.ssl_seed]
    stem = f"overlays_{cell.name}_{task.key}_n{budget}"
    pngs = {kind: shared.out_dir / REPORT_DIR / f"{stem}_{kind}.png" for kind in ("best", "worst")}
    if not all(p.is_file() for p in pngs.values()):
        config = replace(loop_config(task, shared), budgets=(budget,))
        model_dir = shared.out_dir / REPORT_DIR / "models" / f"{cell.name}-{task.key}-n{budget}"
        run_simulated(model_dir, shared.pool, shared.test, config=config, features=encoder.features,
                      ssl_state=encoder.state if cell.init == "ssl" else None, progress=progress)
        model, _ = LoopDir(model_dir).load_model("latest")
        result = evaluate(model, shared.test, device=config.seg.device, prior=config.seg.prior,
                          threshold=config.seg.threshold, tta=config.seg.tta)
        dice = result.column("dice")
        k = max(1, min(N_OVERLAY, len(dice) // 2))
        order = np.argsort(-dice, kind="stable")
        test = shared.test
        for kind, index in (("best", order[:k]), ("worst", order[::-1][:k])):
            save_prediction_overlays(pngs[kind], colour_thumbnails(test, index, 128), test.masks[index],
                                     result.predictions[index], [test.ids[i] for i in index], dice[index])
    where = f"{task.label}, {budget} labeled images"
    return [(f"best test images: {where}", pngs["best"]), (f"worst test images: {where}", pngs["worst"])]


def summary_sections(summary: Summary) -> tuple[str, str]:
    """HTML of (preamble and findings, tables) of a summary."""
    head = (f"<p>{html.inline(summary.preamble())}</p>\n<h2>Findings</h2>\n"
            + "<ul>" + "".join(f"<li>{html.inline(s)}</li>" for s in summary.statements) + "</ul>\n")
    return head, "".join(t.to_html() for t in summary.tables())


def write_experiment_report(out_dir: str | os.PathLike, shared: Shared, *, progress: bool = True) -> Path:
    """Write ``summary.md``, ``learning_curves.png`` and ``report.html`` from ``results.csv``; returns the HTML."""
    out_dir = Path(out_dir)
    results = load_results(out_dir / RESULTS_FILE)
    summary = write_summary_md(out_dir / "summary.md", results)
    curves = plot_learning_curves(out_dir / "learning_curves.png", results)
    with locked(out_dir / LOCKS_DIR / "report.lock"):
        sheets = selection_sheets(shared, results)
        overlays = prediction_overlays(shared, results, progress=progress)
    findings, tables = summary_sections(summary)
    sections = [
        findings,
        "<h2>Learning curves</h2>\n" + html.figure(
            "Dice vs labeled images: mean ± std over seeds (thin lines: single seeds); dashed: full supervision",
            curves),
        tables,
        html.gallery("Images selected for annotation", sheets,
                     "The cold-start selections at the smallest budget, in colour and rank order."),
        html.gallery("Prediction overlays", overlays,
                     "Test images with the best and the worst Dice: prediction over ground truth."),
    ]
    title = f"saal experiment: {shared.preset.name} preset, {len(shared.pool)} pool / {len(shared.test)} test images"
    return html.write_page(out_dir / "report.html", title, sections)
