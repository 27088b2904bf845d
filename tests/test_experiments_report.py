"""Reporting of an experiment matrix: statistics, summary.md, learning curves, the HTML report."""

from __future__ import annotations

import base64
import html as std_html
import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.integrate import trapezoid
from scipy.stats import ttest_rel, wilcoxon

from saal.errors import SaalError
from saal.experiments import (
    budget_stats,
    budget_to_fraction_of_full,
    default_reference,
    load_results,
    normalised_alc,
    paired_tests,
    results_from_rows,
    summarize,
    write_summary_md,
)
from saal.experiments.plots import cell_colors, plot_learning_curves
from saal.experiments.report import summary_sections
from saal.io import write_csv
from saal.render import html
from saal.render.figures import plot_round_curve, score_ylim

BUDGETS = np.array([10, 20, 40, 80])
BASE = np.array([0.60, 0.70, 0.76, 0.80])  # the reference's mean curve
FULL = 0.85
REF = "random/ssl/random"
SAAL = "saal/ssl/representative"
ORACLE = "oracle/ssl/none"
NOISY = "kcenter/scratch/entropy"
SCRATCH = "random/scratch/random"
# Per-seed offsets of NOISY from the reference, the same at every budget: mixed signs, 3 of 5 positive.
NOISY_OFFSET = np.array([0.01, -0.01, 0.005, -0.005, 0.002])
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_report_render.py"


def _row(cell: str, seed: int, rnd: int, n: int, dice: float) -> dict:
    cold_start, init, query = cell.split("/") if cell != "full" else ("full", "ssl", "none")
    return dict(cold_start=cold_start, init=init, query=query, cell=cell, seed=seed, round=rnd,
                n_labeled=n, dice=dice, iou=dice - 0.1, hd95=20.0 * (1 - dice), assd=5.0 * (1 - dice),
                train_seconds=1.5)


def synthetic_rows(n_seeds: int = 5) -> tuple[list[dict], np.ndarray]:
    """Five cells x seeds x budgets 10/20/40/80 + full supervision, with known effects.

    Seed noise is centred per budget so that means over seeds are exactly BASE (+ offsets).
    Returns the rows and the reference's per-seed curves.
    """
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.02, (n_seeds, BUDGETS.size))
    noise -= noise.mean(axis=0)
    ref = BASE + noise
    curves = {REF: ref, SAAL: ref + 0.05, ORACLE: np.full_like(ref, FULL), SCRATCH: ref - 0.03,
              NOISY: ref + np.resize(NOISY_OFFSET, n_seeds)[:, None]}
    rows = [_row(name, seed, rnd, int(b), float(curve[seed, rnd]))
            for name, curve in curves.items() for seed in range(n_seeds) for rnd, b in enumerate(BUDGETS)]
    rows += [_row("full", seed, 0, 1500, d) for seed, d in enumerate([0.84, 0.85, 0.86])]
    return rows, ref


@pytest.fixture(scope="module")
def table():
    rows, ref = synthetic_rows()
    return results_from_rows(rows), ref


# -------------------------------------------------------------------------------------------- loading
def test_load_results_round_trips_a_csv(tmp_path, table):
    results, _ = table
    rows, _ = synthetic_rows()
    path = write_csv(tmp_path / "results.csv", rows)
    loaded = load_results(path)
    assert loaded.rows == results.rows
    assert loaded.cells == [REF, SAAL, ORACLE, SCRATCH, NOISY]
    assert loaded.budgets == [10, 20, 40, 80]
    assert len(loaded.full_rows) == 3


def test_results_written_before_the_cell_column_are_read(tmp_path):
    rows, _ = synthetic_rows()
    legacy = [{("strategy" if k == "cell" else k): v for k, v in r.items()} for r in rows]
    assert load_results(write_csv(tmp_path / "old.csv", legacy)).rows == load_results(
        write_csv(tmp_path / "new.csv", rows)).rows


def test_empty_optional_metrics_read_as_nan(tmp_path):
    rows = [_row(REF, 0, 0, 10, 0.5)]
    rows[0]["hd95"] = ""
    del rows[0]["assd"]
    results = results_from_rows(rows)
    assert math.isnan(results.rows[0].hd95) and math.isnan(results.rows[0].assd)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(dice="abc"), "line 3: column 'dice' is not a number"),
    (lambda r: r.update(dice="85.0"), "must be a fraction in [0, 1]"),
    (lambda r: r.update(n_labeled="0"), "'n_labeled' must be >= 1"),
    (lambda r: r.update(seed="1.5"), "'seed' must be a whole number"),
])
def test_bad_values_name_the_file_line_and_column(tmp_path, change, message):
    rows = [_row(REF, 0, 0, 10, 0.5), _row(REF, 0, 1, 20, 0.6)]
    change(rows[1])
    path = write_csv(tmp_path / "results.csv", rows)
    with pytest.raises(SaalError, match=re.escape(message)) as err:
        load_results(path)
    assert str(path) in str(err.value)


def test_missing_column_is_named(tmp_path):
    rows = [{k: v for k, v in _row(REF, 0, 0, 10, 0.5).items() if k != "dice"}]
    path = write_csv(tmp_path / "results.csv", rows)
    with pytest.raises(SaalError, match=re.escape(f"{path}: missing column(s) dice")):
        load_results(path)


def test_duplicates_and_ambiguous_labels_are_refused(tmp_path):
    with pytest.raises(SaalError, match="already on line 1"):
        results_from_rows([_row(REF, 0, 0, 10, 0.5), _row(REF, 0, 1, 10, 0.6)])
    other = _row(SAAL, 0, 1, 20, 0.5) | {"cell": REF}
    with pytest.raises(SaalError, match="names must be unique"):
        results_from_rows([_row(REF, 0, 0, 10, 0.5), other])
    with pytest.raises(SaalError, match="not found"):
        load_results(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------------------- statistics
def test_budget_stats_match_numpy(table):
    results, ref = table
    stats = {(s.cell, s.n_labeled): s for s in budget_stats(results)}
    assert len(stats) == 5 * 4
    for j, b in enumerate(BUDGETS):
        s = stats[(REF, int(b))]
        assert s.n == 5
        assert s.mean == pytest.approx(ref[:, j].mean())
        assert s.std == pytest.approx(ref[:, j].std(ddof=1))
        assert (s.min, s.max) == (pytest.approx(ref[:, j].min()), pytest.approx(ref[:, j].max()))
        assert s.worst == s.min and s.worst_replicate == (0, int(np.argmin(ref[:, j])))
    hd = {(s.cell, s.n_labeled): s for s in budget_stats(results, "hd95")}
    assert hd[(REF, 10)].worst == hd[(REF, 10)].max  # lower is better for distances


def test_normalised_alc_is_0_for_the_reference_1_for_full_and_exact_in_between(table):
    results, ref = table
    alc = {a.cell: a for a in normalised_alc(results, REF)}
    assert all(v == 0.0 for v in alc[REF].per_seed.values())
    assert alc[ORACLE].mean == pytest.approx(1.0)
    assert alc[ORACLE].std == pytest.approx(0.0, abs=1e-12)
    x = np.log2(BUDGETS)
    span = x[-1] - x[0]
    expected = [0.05 * span / (FULL * span - trapezoid(ref[s], x)) for s in range(5)]
    assert [alc[SAAL].per_seed[(0, s)] for s in range(5)] == pytest.approx(expected)
    assert 0.0 < alc[SAAL].mean < 1.0
    assert alc[SCRATCH].mean < 0.0
    assert alc[SAAL].n_paired == 5 and alc[SAAL].n == 5
    assert alc[REF].mean_score == pytest.approx(np.mean([trapezoid(ref[s], x) / span for s in range(5)]))


def test_normalised_alc_uses_the_reference_mean_curve_for_an_unpaired_seed():
    rows, ref = synthetic_rows()
    rows += [_row(SAAL, 9, r, int(b), float(BASE[r] + 0.05)) for r, b in enumerate(BUDGETS)]
    alc = {a.cell: a for a in normalised_alc(results_from_rows(rows), REF)}
    x = np.log2(BUDGETS)
    span = x[-1] - x[0]
    assert alc[SAAL].per_seed[(0, 9)] == pytest.approx(0.05 * span / (FULL * span - trapezoid(BASE, x)))
    assert alc[SAAL].n == 6 and alc[SAAL].n_paired == 5


def test_budget_to_95_percent_of_full(table):
    results, _ = table
    plain = {t.cell: t for t in budget_to_fraction_of_full(results)}
    assert plain[SAAL].target == pytest.approx(0.95 * FULL)
    assert plain[SAAL].budget == 40  # mean curve 0.65, 0.75, 0.81, 0.85 against 0.8075
    assert plain[ORACLE].budget == 10
    assert plain[REF].budget is None  # 0.80 at best
    assert plain[REF].best_mean == pytest.approx(0.80) and plain[REF].best_budget == 80
    interp = {t.cell: t for t in budget_to_fraction_of_full(results, interpolate=True)}
    assert interp[SAAL].budget == pytest.approx(20 * 2 ** ((0.8075 - 0.75) / (0.81 - 0.75)))
    assert interp[ORACLE].budget == 10


def test_paired_differences_and_win_counts():
    ref = [0.70, 0.72, 0.68, 0.71, 0.69]
    diff = [0.02, -0.01, 0.03, 0.04, 0.0]
    rows = [_row(REF, s, 0, 10, v) for s, v in enumerate(ref)]
    rows += [_row(SAAL, s, 0, 10, v + d) for s, (v, d) in enumerate(zip(ref, diff))]
    (test,) = paired_tests(results_from_rows(rows), REF)
    ours = np.array(ref) + np.array(diff)
    actual = ours - np.array(ref)
    assert (test.cell, test.reference, test.n_labeled, test.n_pairs, test.wins) == (SAAL, REF, 10, 5, 3)
    assert test.mean_diff == pytest.approx(actual.mean())
    assert test.std_diff == pytest.approx(actual.std(ddof=1))
    assert test.p_ttest == pytest.approx(ttest_rel(ours, ref).pvalue)
    assert test.p_wilcoxon == pytest.approx(wilcoxon(np.where(np.abs(actual) < 1e-12, 0, actual)).pvalue)
    assert "4 non-zero pairs" in test.note


def _effect_table(n_seeds: int, effect: float) -> list:
    rng = np.random.default_rng(1)
    ref = 0.6 + rng.normal(0, 0.02, n_seeds)
    ours = ref + effect + rng.uniform(0.0, 0.01, n_seeds)
    rows = [_row(REF, s, 0, 10, float(v)) for s, v in enumerate(ref)]
    rows += [_row(SAAL, s, 0, 10, float(v)) for s, v in enumerate(ours)]
    return paired_tests(results_from_rows(rows), REF)


def test_wilcoxon_detects_a_consistent_large_effect_over_8_seeds():
    (test,) = _effect_table(8, 0.05)
    assert test.wins == 8
    assert test.p_wilcoxon < 0.05 and test.p_ttest < 0.05
    assert test.note == ""


def test_small_or_degenerate_samples_are_handled():
    (five,) = _effect_table(5, 0.05)
    assert five.p_wilcoxon == pytest.approx(0.0625)  # the smallest exact two-sided p with 5 pairs
    assert "Wilcoxon p >= 0.0625" in five.note
    tied = [_row(REF, s, 0, 10, 0.5) for s in range(6)] + [_row(SAAL, s, 0, 10, 0.5) for s in range(6)]
    (same,) = paired_tests(results_from_rows(tied), REF)
    assert math.isnan(same.p_wilcoxon) and math.isnan(same.p_ttest) and same.note == "identical in every seed"
    (one,) = _effect_table(1, 0.05)
    assert math.isnan(one.p_wilcoxon) and one.note == "fewer than 2 paired seeds"


def test_default_reference_prefers_random_ssl(table):
    results, _ = table
    assert default_reference(results) == REF
    rows = [r for r in synthetic_rows()[0] if r["cell"] != REF]
    assert default_reference(results_from_rows(rows)) == SCRATCH
    rows = [r for r in rows if r["cell"] != SCRATCH]
    assert default_reference(results_from_rows(rows)) is None


# ------------------------------------------------------------------------------------------ summary.md
def test_summary_md_has_all_tables_and_cells(tmp_path, table):
    results, _ = table
    summary = write_summary_md(tmp_path / "summary.md", results)
    md = (tmp_path / "summary.md").read_text()
    for header in ["## Findings", "## Dice (%) per cell and budget", "## Normalised area under the learning curve",
                   "## Labeled images needed to reach 95% of full supervision",
                   f"## Paired differences vs {REF}", "| cell | seeds | 10 | 20 | 40 | 80 |"]:
        assert header in md
    for cell in results.cells:
        assert f"| {cell}" in md
    assert f"| {REF} (ref) |" in md
    assert "60.0 ±" in md  # the reference's Dice at 10 labels, as a percentage with one decimal
    assert "| oracle/ssl/none | 10 |" in md  # reaches 95% of full at the first budget
    assert summary.reference == REF and summary.full.mean == pytest.approx(FULL)


def test_statements_do_not_overclaim(table):
    results, _ = table
    text = "\n".join(summarize(results).statements)
    assert f"{SAAL} is ahead of {REF} at 10 labels by +5.0 ± 0.0 Dice points (5/5 seeds better" in text
    assert "not significant at the 0.05 level" in text
    assert f"{NOISY} is within noise of {REF} at 10 labels" in text
    assert "beats" not in text
    assert "with fewer than 6 paired seeds the Wilcoxon test cannot reach p < 0.05" in text
    rows = [r for r in synthetic_rows(8)[0] if r["cell"] in (REF, SAAL, "full")]
    rng = np.random.default_rng(2)
    for r in rows:  # per-seed jitter so that the 8 differences are not all equal
        if r["cell"] == SAAL:
            r["dice"] += float(rng.uniform(0, 0.01))
    eight = "\n".join(summarize(results_from_rows(rows)).statements)
    assert f"{SAAL} beats {REF} at 10 labels by +5." in eight and "8/8 seeds better" in eight


def test_unknown_reference_is_a_user_error(table):
    results, _ = table
    with pytest.raises(SaalError, match="reference cell 'nope'"):
        summarize(results, reference="nope")


# -------------------------------------------------------------------------------------------------- plots
def _coloured_fraction(png: Path) -> float:
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    return float(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).mean())


def test_learning_curves_png(tmp_path, table):
    results, _ = table
    png = plot_learning_curves(tmp_path / "curves.png", results)
    assert png.stat().st_size > 10_000
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 500 and im.height > 400
    assert _coloured_fraction(png) > 0.001  # the curves are drawn in colour
    with pytest.raises(SaalError, match="unknown cell 'nope'"):
        plot_learning_curves(tmp_path / "x.png", results, cells=["nope"])


def test_cell_colours_do_not_depend_on_table_order():
    assert cell_colors(["b", "a", "c"]) == cell_colors(["c", "b", "a"])
    assert len(set(cell_colors([f"s{i}" for i in range(12)]).values())) == 12


def test_score_axis_does_not_magnify_noise():
    assert score_ylim([88.0, 96.0]) == (50.0, 100.0)  # not 88-96: a 2-point wobble stays small
    assert score_ylim([35.5, 90.0]) == (30.0, 100.0)
    assert score_ylim([float("nan")]) == (50.0, 100.0)


def test_round_curve_draws_dice_and_hd95_panels(tmp_path):
    rounds = [{"n_labeled": 20, "dice": 0.7, "hd95": 9.0}, {"n_labeled": 10, "dice": 0.6, "hd95": 12.0}]
    both = plot_round_curve(tmp_path / "run.png", rounds, title="t")
    dice_only = plot_round_curve(tmp_path / "dice.png", [{"n_labeled": 10, "dice": 0.6}], title="t")
    with Image.open(both) as a, Image.open(dice_only) as b:
        assert a.width > 1.4 * b.width and a.height == b.height  # a second panel for HD95
    assert _coloured_fraction(both) > 0.001  # the curve itself, in colour
    with pytest.raises(SaalError, match="'n_labeled' and 'dice'"):
        plot_round_curve(tmp_path / "bad.png", [{"n_labeled": "ten", "dice": 0.5}], title="t")
    with pytest.raises(SaalError, match="no round with a test Dice"):
        plot_round_curve(tmp_path / "bad.png", [{"n_labeled": 10}], title="t")


# ------------------------------------------------------------------------------------------- HTML report
@pytest.fixture(scope="module")
def report(tmp_path_factory, table):
    results, _ = table
    folder = tmp_path_factory.mktemp("report")
    summary = write_summary_md(folder / "summary.md", results)
    curves = plot_learning_curves(folder / "curves.png", results)
    sheet = plot_round_curve(folder / "sheet.png", [{"n_labeled": 10, "dice": 0.6}], title="t")
    findings, tables = summary_sections(summary)
    sections = [findings, html.figure("learning curves", curves), tables,
                html.gallery("Images selected for annotation", [("cluster 0-9", sheet)]),
                html.gallery("Prediction overlays", [("best: img_1 (Dice 91.0)", sheet),
                                                     ("worst: img_2 (Dice 40.0)", sheet)])]
    html_path = html.write_page(folder / "report.html", "saal experiment report", sections)
    return html_path, curves, sheet, folder


def test_html_report_is_self_contained(report):
    html_path, curves, _, _ = report
    text = html_path.read_text()
    assert 'src="http' not in text and "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text and "@import" not in text
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(uris) == 4 and len(re.findall(r"<img ", text)) == 4
    assert base64.b64decode(uris[0]) == curves.read_bytes()  # the learning curves, first figure
    assert text.count("<table>") == 6  # Dice, IoU, HD95, ALC, budget-to-95%, paired
    assert "Prediction overlays" in text and "worst: img_2 (Dice 40.0)" in text
    assert f"<td>{REF} (ref)</td>" in text
    assert text.index("Findings") < text.index("<img") < text.index("<table>")  # findings above the figure


def test_tables_render_the_same_cells_in_markdown_and_html(table):
    results, _ = table
    for t in summarize(results).tables():
        md_cells = [c.strip().replace("\\|", "|") for line in t.to_markdown().splitlines()[2:]
                    for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
        html_cells = [std_html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", t.to_html())]
        assert len(md_cells) == len(t.rows) * len(t.header) and md_cells == html_cells
    escaped = html.Table("T", ["a"], [["<script> | `c`"]]).to_html()
    assert "&lt;script&gt; | <code>c</code>" in escaped


def test_missing_or_bad_image_is_a_user_error(tmp_path):
    with pytest.raises(SaalError, match="cannot read image"):
        html.figure("x", tmp_path / "none.png")
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(SaalError, match="not a PNG or JPEG"):
        html.gallery("overlays", [("x", tmp_path / "x.png")])


def _render_script():
    spec = importlib.util.spec_from_file_location("check_report_render", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report, tmp_path):
    script = _render_script()
    chromium = script.find_chromium()
    if chromium is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium) to render the HTML report")
    html_path = report[0]
    shot = tmp_path / "shot.png"
    script.render(html_path, shot, chromium)
    stats = script.screenshot_stats(shot)
    assert (stats["width"], stats["height"]) == (1200, 1600)
    assert stats["variance"] > 100  # text, tables and a figure: far from a blank page
    assert stats["coloured_fraction"] > 0.001  # the embedded learning-curve PNG was decoded and drawn
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert script.main([str(blank), "--chromium", chromium]) == 1  # the blank check can fail
    assert script.main([str(html_path), "--chromium", chromium]) == 0


def test_summary_without_reference_or_full_supervision(tmp_path):
    rows = [r for r in synthetic_rows()[0] if r["cell"] in (SAAL, NOISY)]
    summary = write_summary_md(tmp_path / "summary.md", results_from_rows(rows))
    md = (tmp_path / "summary.md").read_text()
    assert summary.reference is None and summary.full is None and summary.paired == [] and summary.alc == []
    assert "no paired comparison was made" in md
    assert "Normalised area" not in md and "Paired differences" not in md
    assert "| saal/ssl/representative | no full-supervision rows | 85.0 at 80 |" in md
