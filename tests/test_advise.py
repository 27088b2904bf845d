"""The label-budget advisor: the curve fit, its bootstrap, the stop set and its agreement, the sentence, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from saal.active.stopset import STOPSET_FILE, draw_stop_set, stop_set
from saal.advise import advise_loop, advise_rounds, agreement_series, fit_curve, fit_many, mask_dice, next_budgets
from saal.advise.advice import PAYS_PER_DOUBLING, VERDICTS
from saal.advise.curve import C_MAX, C_MIN, power_law
from saal.cli.main import main
from saal.config import get_preset
from saal.errors import SaalError
from saal.io import write_csv, write_json, write_npy

N = np.array([10, 20, 40, 80, 160])
TINY = get_preset("demo").with_overrides(
    name="tiny", image_size=32, synth_n=48, pool_size=36, test_size=12, ssl_epochs=1, seg_steps=3,
    seg_batch=4, budgets=(4, 8, 12), n_clusters=3)


# ------------------------------------------------------------------------------------------------ the curve
@pytest.mark.parametrize("a, b, c", [(0.85, 0.6, 0.7), (0.95, 2.0, 1.5), (0.7, 0.3, 0.3)])
def test_fit_recovers_known_parameters(a, b, c):
    for n in (N, N[:3]):
        curve = fit_curve(n, power_law(n, a, b, c))
        assert curve.c == pytest.approx(c, abs=0.011)
        assert curve.a == pytest.approx(a, abs=0.01)
        assert np.abs(curve(n) - power_law(n, a, b, c)).max() < 2e-3


def test_fit_many_agrees_with_single_fits():
    rng = np.random.default_rng(0)
    dice = np.clip(power_law(N, 0.9, 0.8, 0.6) + rng.normal(0, 0.02, (20, len(N))), 0, 1)
    a, b, c = fit_many(N, dice)
    for i in range(len(dice)):
        single = fit_curve(N, dice[i])
        assert (single.a, single.b, single.c) == (a[i], b[i], c[i])


def test_forecasts_are_monotone_and_at_most_one():
    rng = np.random.default_rng(1)
    dice = rng.uniform(0.3, 1.0, (500, 3))  # noisy rounds: falling, rising, flat, near 1
    a, b, c = fit_many(N[:3], dice)
    assert np.all(a <= 1) and np.all(b >= 0) and np.all((c >= C_MIN) & (c <= C_MAX))
    grid = np.geomspace(10, 10_000, 50)
    forecasts = power_law(grid[None, :], a[:, None], b[:, None], c[:, None])
    assert np.all(np.diff(forecasts, axis=1) >= -1e-12) and np.all(forecasts <= 1)


def test_a_curve_needs_three_label_counts():
    with pytest.raises(SaalError, match="at least 3"):
        fit_curve([10, 20, 20], [0.5, 0.6, 0.6])


def _per_image(n, seed=0, test=80):
    """Per-test-image Dice of rounds that follow a power law: image difficulty + round noise, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 0.1, test)
    return np.clip(power_law(np.asarray(n)[:, None], 0.85, 0.6, 0.7) + difficulty + rng.normal(0, 0.05,
                                                                                                  (len(n), test)), 0, 1)


def test_bootstrap_interval_contains_the_point_forecast():
    per_image = _per_image(N[:3])
    advice = advise_rounds(N[:3], per_image.mean(1), [80, 160], per_image=per_image, n_boot=400)
    assert list(advice.forecasts) == [80, 160]
    for f in [*advice.forecasts.values(), advice.gain_per_doubling]:
        assert f.low <= f.value <= f.high
    assert advice.forecasts[80].value <= advice.forecasts[160].value <= 1
    again = advise_rounds(N[:3], per_image.mean(1), [80, 160], per_image=per_image, n_boot=400)
    assert again == advice  # seeded


# --------------------------------------------------------------------------------------- stop set, agreement
def test_mask_dice_of_identical_disjoint_and_empty_masks():
    a = np.zeros((3, 8, 8), np.uint8)
    a[0, :4] = 1
    a[1, 2:5, 2:5] = 1
    b = a.copy()
    assert np.allclose(mask_dice(a, b), 1)
    disjoint = np.zeros_like(a)
    disjoint[0, 4:] = 1
    disjoint[1, :2] = 1
    assert np.allclose(mask_dice(a[:2], disjoint[:2]), 0)
    assert mask_dice(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))[0] == 1  # both empty: they agree


def test_stop_set_is_fixed_per_seed_and_drawn_from_the_pool(tmp_path):
    pool = [f"img{i:03d}" for i in range(200)]
    first = draw_stop_set(pool, seed=3)
    assert first == draw_stop_set(pool, seed=3) and first != draw_stop_set(pool, seed=4)
    assert len(first) == len(set(first)) == 64 and set(first) <= set(pool)
    assert first == sorted(first, key=pool.index)
    assert draw_stop_set(pool[:10], seed=3) == pool[:10]  # a small pool is all stop set
    assert stop_set(tmp_path, pool, seed=3) == first  # written on first use ...
    assert stop_set(tmp_path, pool[::-1], seed=9) == first  # ... and read back, whatever is asked later


def _loop_dir(tmp_path: Path, dice: list[float | None], *, stop: bool = True) -> Path:
    """A loop folder by hand: rounds of 10, 20, 40 ... labels, per-image evaluations, stop-set predictions."""
    loop = tmp_path / "active"
    stop_ids = [f"s{i}" for i in range(6)]
    per_image = _per_image([10 * 2 ** r for r in range(len(dice))], test=20)
    records = []
    for r, d in enumerate(dice):
        n = 10 * 2 ** r
        record = {"round": r, "n_labeled": n}
        if d is not None:
            record["dice"] = float(per_image[r].mean())
            write_csv(loop / "eval" / f"round_{r}.csv",
                      [{"image_id": f"t{j}", "dice": v} for j, v in enumerate(per_image[r])], ["image_id", "dice"])
        records.append(record)
        labeled = [f"p{j}" for j in range(n)] + (["s0"] if r >= 1 else [])  # s0 is labeled from round 1 on
        write_csv(loop / f"labeled_round_{r}.csv", [{"image_id": k} for k in labeled], ["image_id"])
        if stop:
            masks = np.zeros((6, 8, 8), np.uint8)
            masks[:, :4] = 1
            masks[0] = r % 2  # the labeled stop image flips every round: it must not count
            masks[5, :, : 4 + min(r, 2)] = 1  # one image still changes, less and less
            write_npy(loop / "stopset" / f"round_{r}.npy", masks)
    if stop:
        write_csv(loop / STOPSET_FILE, [{"image_id": k} for k in stop_ids], ["image_id"])
    (loop / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_json(tmp_path / "run.json", {"source": "embedded", "preset": TINY.with_overrides(
        budgets=(10, 20, 40, 80, 160)).to_dict(), "seed": 0})
    return loop


def test_agreement_leaves_labeled_stop_images_out(tmp_path):
    loop = _loop_dir(tmp_path, [0.7, 0.75, 0.78, 0.8])
    series = agreement_series(loop, [json.loads(x) for x in (loop / "rounds.jsonl").read_text().splitlines()])
    assert [s.round for s in series] == [1, 2, 3]
    assert all(s.n_images == 5 for s in series)  # s0, labeled from round 1, is left out
    assert series[-1].agreement == 1.0 and series[0].agreement < series[1].agreement < 1.0
    advice = advise_loop(loop, (10, 20, 40, 80, 160))
    assert advice.trend == "rising" and "agree 100.0 % with the previous round's (rising)" in advice.sentence


# ------------------------------------------------------------------------------------------- the advice
def test_next_budgets_follow_the_plan_then_double():
    assert next_budgets((10, 20, 40, 80, 160), 40) == [80, 160]
    assert next_budgets((10, 20, 40, 80), 40) == [80, 160]
    assert next_budgets((10, 20, 40), 40) == [80, 160]
    assert next_budgets((10, 20), 25) == [50, 100]


# The verdict is about doubling the current labels, 40 -> 80 here: rounds at 10, 20, 40 labels whose test Dice lie on
# a power law built to gain a chosen amount over that doubling, so the right verdict is known in advance.
N3 = N[:3]


def _law_gaining(gain, c, plateau=0.75):
    """``(a, b, c)`` of the power law with plateau ``a`` that gains ``gain`` from 40 to 80 labels."""
    return plateau, gain / (40.0 ** -c - 80.0 ** -c), c


def _rounds_gaining(gain, c, scatter, *, test=80, seed=0):
    """Per-image Dice ``(3, test)`` whose round means lie exactly on :func:`_law_gaining`'s curve.

    ``scatter``: each image's round-to-round noise (zero mean per round), which is what the bootstrap interval sees;
    image difficulty (the same every round, zero mean) barely moves the fitted gain.
    """
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 0.03, test)
    noise = rng.normal(0, scatter, (len(N3), test))
    per_image = (power_law(N3[:, None], *_law_gaining(gain, c)) + (difficulty - difficulty.mean())
                 + (noise - noise.mean(axis=1, keepdims=True)))
    assert 0 <= per_image.min() and per_image.max() <= 1
    return per_image


def _advise(per_image, budgets=(80, 160)):
    return advise_rounds(N3, per_image.mean(axis=1), list(budgets), per_image=per_image, n_boot=400)


def test_a_curve_still_rising_steeply_pays():
    advice = _advise(_rounds_gaining(0.07, 0.5, scatter=0.02))  # +7 Dice points per doubling
    gain = advice.gain_per_doubling
    assert gain.value == pytest.approx(0.07, abs=1e-6)  # the fit recovers the curve the rounds lie on
    assert gain.low >= PAYS_PER_DOUBLING  # even the pessimistic end gains a point
    assert advice.verdict == "pays" and "likely worth it" in advice.sentence
    assert advice.sentence.startswith("With 40 labels the test Dice is")


def test_a_flat_curve_does_not_pay():
    advice = _advise(_rounds_gaining(0.002, 1.0, scatter=0.02))  # at its plateau: +0.2 points per doubling
    gain = advice.gain_per_doubling
    assert gain.value == pytest.approx(0.002, abs=1e-6)
    assert gain.high < PAYS_PER_DOUBLING  # even the optimistic end gains less than a point
    assert advice.verdict == "does not pay" and "likely not worth it" in advice.sentence


@pytest.mark.parametrize("gain, point_verdict", [(0.015, "pays"), (0.007, "does not pay")])
def test_an_interval_across_one_point_is_uncertain_whichever_side_the_forecast_is(gain, point_verdict):
    """Noisy test Dice (few or scattered test images): the interval straddles one point, so neither claim is made."""
    per_image = _rounds_gaining(gain, 0.5, scatter=0.07)
    advice = _advise(per_image)
    assert advice.gain_per_doubling.value == pytest.approx(gain, abs=1e-6)
    assert advice.gain_per_doubling.low < PAYS_PER_DOUBLING <= advice.gain_per_doubling.high
    assert advice.verdict == "uncertain" and "uncertain whether it pays" in advice.sentence
    # the same round means without per-image scores (no interval): the point forecast alone decides
    assert advise_rounds(N3, per_image.mean(axis=1), [80, 160]).verdict == point_verdict


@pytest.mark.parametrize("gain, verdict", [(0.0105, "pays"), (0.0095, "does not pay"), (0.05, "pays"),
                                           (0.001, "does not pay")])
@pytest.mark.parametrize("budgets", [(80, 160), (45, 50)])
def test_without_an_interval_one_point_per_doubling_decides(gain, verdict, budgets):
    """Just above or below one point per doubling of the current labels, whichever budgets the table forecasts."""
    advice = advise_rounds(N3, power_law(N3, *_law_gaining(gain, 0.5)), list(budgets))
    assert advice.gain_per_doubling.low is None and advice.gain_per_doubling.value == pytest.approx(gain, abs=1e-6)
    assert advice.verdict == verdict and VERDICTS[verdict] in advice.sentence
    assert list(advice.forecasts) == list(budgets)


def test_too_few_rounds_or_no_test_masks_say_so():
    one = advise_rounds([10], [0.7], [20, 40])
    assert one.curve is None and "one round only" in one.sentence and "unavailable (one round only)" in one.sentence
    two = advise_rounds([10, 20], [0.7, 0.75], [40, 80])
    assert two.curve is None and "two rounds only" in two.sentence and "+5.0 since 10 labels" in two.sentence
    blind = advise_rounds([10, 20, 40], [None] * 3, [80, 160])
    assert blind.curve is None and "No test split with masks" in blind.sentence
    with pytest.raises(SaalError, match="saal train"):
        advise_rounds([], [], [10])


# ----------------------------------------------------------------------------------------------- the CLI
def test_advise_cli_prints_the_table_and_sentence_and_writes_json(tmp_path, capsys):
    _loop_dir(tmp_path, [0.7, 0.75, 0.78], stop=False)
    assert main(["advise", "--run", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| 80 |" in out and "the fitted curve" in out and "predate stop-set predictions" in out
    saved = json.loads((tmp_path / "active" / "advice.json").read_text())
    assert saved["n_labeled"] == 40 and [f["n_labeled"] for f in saved["forecasts"]] == [80, 160]
    # the rounds' curve gains 1.7 points from 40 to 80 labels, but 20 noisy test images leave the fit unsure
    gain = saved["gain_per_doubling"]
    assert gain["low"] < PAYS_PER_DOUBLING <= gain["high"]
    assert saved["sentence"] in out and saved["verdict"] == "uncertain" and "uncertain whether it pays" in out


def test_advise_cli_without_rounds_says_train_first(tmp_path, capsys):
    write_json(tmp_path / "run.json", {"source": "embedded", "preset": TINY.to_dict(), "seed": 0})
    assert main(["advise", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run 'saal train' first" in err
    assert main(["advise", "--run", str(tmp_path / "nothing")]) == 2
    assert "not a saal run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_run_saves_stop_predictions_and_reports_the_advice(tmp_path, capsys):
    from saal.pipeline import run_all
    from saal.workspace import open_workspace

    ws = open_workspace(tmp_path / "run", preset=TINY, progress=False)
    run_all(ws, progress=False)
    loop = tmp_path / "run" / "active"
    stops = [np.load(loop / "stopset" / f"round_{r}.npy") for r in range(3)]
    assert all(s.dtype == np.uint8 and s.shape == (len(ws.pool), 32, 32) and set(np.unique(s)) <= {0, 1}
               for s in stops)  # a 36-image pool: every image is a stop image
    assert "How many more labels?" in (tmp_path / "run" / "report.html").read_text()
    assert main(["advise", "--run", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "With 12 labels the test Dice is" in out and "unlabeled images agree" in out


# ------------------------------------------------------------------------------------- cross-validation
def test_crossval_plan_holds_each_image_out_once_per_size_with_nested_training_sets():
    from saal.advise.crossval import crossval_plan, crossval_sizes

    n = 20
    plan = crossval_plan(n, folds=3, seed=1)
    sizes = crossval_sizes(n, 3)
    assert sizes == [3, 6, 13] and len(plan) == 9
    for s in range(3):
        held = np.concatenate([f.held_out for f in plan if f.size_index == s])
        assert sorted(held.tolist()) == list(range(n))  # every labeled image scored once per size
    for fold in range(3):
        fits = sorted((f for f in plan if f.fold == fold), key=lambda f: f.size_index)
        assert [len(f.train) for f in fits] == sizes
        assert all(not set(f.train) & set(f.held_out) for f in fits)  # never scored by a model that saw it
        assert set(fits[0].train) <= set(fits[1].train) <= set(fits[2].train)  # nested
    again = crossval_plan(n, folds=3, seed=1)
    assert all(np.array_equal(a.train, b.train) and np.array_equal(a.held_out, b.held_out)
               for a, b in zip(plan, again))
    with pytest.raises(SaalError, match="too few"):
        crossval_sizes(5, 3)


def test_crossval_points_give_the_curve_and_the_sentence_says_so(tmp_path):
    from saal.advise.crossval import crossval_dice

    truth = (0.9, 0.5, 0.6)
    seen = []

    def score(train, held_out):  # a model trained on m images scores power_law(m) on every image it did not see
        seen.append((len(train), set(train.tolist()) & set(held_out.tolist())))
        return np.full(len(held_out), power_law(len(train), *truth))

    sizes, per_image = crossval_dice(score, 40, folds=4, seed=0)
    assert sizes.tolist() == [7, 15, 30] and per_image.shape == (3, 40) and not np.isnan(per_image).any()
    assert all(not overlap for _, overlap in seen)
    loop = tmp_path / "active"
    loop.mkdir()
    (loop / "rounds.jsonl").write_text(json.dumps({"round": 0, "n_labeled": 40}) + "\n")  # no test Dice
    advice = advise_loop(loop, (40, 80, 160), crossval=(sizes, per_image))
    assert advice.source == "cross-validation" and advice.n_labeled == 40 and advice.dice is None
    assert advice.forecasts[80].value == pytest.approx(power_law(80, *truth), abs=2e-3)
    assert advice.sentence.startswith("No test masks: cross-validated on the 40 labeled images")
    gain = 100 * (power_law(80, *truth) - power_law(40, *truth))
    assert f"the curve expects {gain:+.1f} at 80" in advice.sentence and "not a test Dice" in advice.sentence
    assert advise_loop(loop, (40, 80, 160)).curve is None  # without it: the stopping signal only


@pytest.mark.slow
def test_advise_cross_validates_a_run_without_test_masks_and_caches_it(tmp_path, capsys):
    from saal.data.synth import write_isic_layout
    from saal.io import read_csv
    from saal.workspace import open_workspace

    synth, data = tmp_path / "synth", tmp_path / "unlabeled"
    write_isic_layout(synth, n=30, size=48, seed=3)
    (data / "images").mkdir(parents=True)
    for p in synth.rglob("ISIC_*.jpg"):
        (data / "images" / p.name).write_bytes(p.read_bytes())
    run = tmp_path / "run"
    ws = open_workspace(run, data=data, preset=TINY.with_overrides(pool_size=None), progress=False)
    assert ws.test is None
    r = str(run)
    assert main(["select", "--run", r, "--budget", "12", "-q"]) == 0
    assert main(["query", "--run", r, "-q"]) == 0
    batch = run / "annotate/round_0"
    for row in read_csv(batch / "manifest.csv"):  # the annotator draws the synthetic truth
        truth = next(synth.rglob(f"{row['image_id']}_segmentation.png"))
        (batch / "masks" / truth.name).write_bytes(truth.read_bytes())
    assert main(["annotate", "import", str(batch), "--run", r, "-q"]) == 0
    assert main(["train", "--run", r, "-q"]) == 0
    capsys.readouterr()
    assert main(["advise", "--run", r, "--steps", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "No test masks: cross-validated on the 12 labeled images" in out and "cross-validated Dice" in out
    cache = run / "active/crossval_round_0.json"
    saved = json.loads(cache.read_text())
    assert saved["sizes"] == [2, 4, 8] and np.array(saved["per_image"]).shape == (3, 12)
    stamp = cache.stat().st_mtime_ns
    assert main(["advise", "--run", r, "--steps", "2", "-q"]) == 0  # the same round: from the cache
    assert cache.stat().st_mtime_ns == stamp and capsys.readouterr().out == out
    assert main(["advise", "--run", r, "--crossval", "0", "-q"]) == 0
    assert "only the label-free signal" in capsys.readouterr().out
