"""The advice: the curve's forecast at the next budgets, the stopping signal, and one plain sentence for a team lead.

The rule behind the sentence (:data:`PAYS_PER_DOUBLING`): labeling is *likely worth it* when even the pessimistic
end of the interval (10 %) of the curve's gain from doubling the current labels is at least one Dice point,
*likely not worth it* when even the optimistic end (90 %) is below one point, and *uncertain* in between. One
point per doubling is where a curve is close to its plateau: the rest of the way up is then at most a few points
for the price of labeling several times as many images again. Without a bootstrap (no per-image scores) the
point estimate alone decides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import SaalError
from ..io import read_csv, read_jsonl, write_json
from ..render.html import Table
from .agreement import RoundAgreement, agreement_series, trend
from .curve import MIN_POINTS, Curve, bootstrap_means, fit_curve, fit_many, power_law
from .effort import effort_rows

#: A doubling of the labels that is expected to add less than this (a Dice fraction: one point) does not pay.
PAYS_PER_DOUBLING = 0.01
#: Quantiles of the bootstrap interval.
INTERVAL = (0.10, 0.90)
N_BOOT = 1000
ADVICE_FILE = "advice.json"
RULE = ("likely worth it when the 10 % end of the curve's expected gain from doubling the labels is at least "
        "1 Dice point, likely not worth it when its 90 % end is below 1 point, uncertain otherwise")
VERDICTS = {"pays": "likely worth it", "does not pay": "likely not worth it", "uncertain": "uncertain whether it pays"}


@dataclass(frozen=True)
class Estimate:
    """A Dice value (a fraction) with its bootstrap interval (None without per-image scores)."""

    value: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Advice:
    """What ``saal advise`` says about one run (Dice as fractions; rendered in points)."""

    n_labeled: int
    measured: list[tuple[int, float | None]]          # (labels, Dice or None) of every round used, or of every
                                                      # cross-validation size
    curve: Curve | None = None
    forecasts: dict[int, Estimate] = field(default_factory=dict)   # labels -> expected Dice
    gain_per_doubling: Estimate | None = None
    verdict: str | None = None                        # a key of VERDICTS
    agreement: list[RoundAgreement] = field(default_factory=list)
    trend: str | None = None
    why_no_curve: str | None = None
    source: str = "test"                              # where the measured Dice come from: "test", "cross-validation"
    sentence: str = ""
    effort: list[dict[str, Any]] = field(default_factory=list)  # per round: what its proposals left to change

    @property
    def dice(self) -> float | None:
        """The measured test Dice of the latest round (None for a cross-validated curve: no test Dice)."""
        return self.measured[-1][1] if self.measured and self.source == "test" else None

    def to_dict(self) -> dict[str, Any]:
        return {"sentence": self.sentence, "n_labeled": self.n_labeled, "dice": self.dice, "source": self.source,
                "rounds": [{"n_labeled": n, "dice": d, "fitted": None if self.curve is None else float(self.curve(n))}
                           for n, d in self.measured],
                "curve": None if self.curve is None else {"model": "a - b * n**(-c)", **self.curve.to_dict()},
                "forecasts": [{"n_labeled": n, **asdict(e)} for n, e in self.forecasts.items()],
                "interval": list(INTERVAL),
                "gain_per_doubling": None if self.gain_per_doubling is None else asdict(self.gain_per_doubling),
                "verdict": self.verdict, "rule": RULE, "why_no_curve": self.why_no_curve,
                "agreement": [asdict(a) for a in self.agreement], "agreement_trend": self.trend,
                "effort": self.effort}


def next_budgets(planned: Sequence[int], n_labeled: int, count: int = 2) -> list[int]:
    """The next ``count`` planned budgets above ``n_labeled``; doublings of the labels where the plan ends."""
    ahead = sorted(b for b in planned if b > n_labeled)[:count]
    last = ahead[-1] if ahead else n_labeled
    while len(ahead) < count:
        last *= 2
        ahead.append(last)
    return ahead


def _verdict(gain: Estimate) -> str:
    low = gain.value if gain.low is None else gain.low
    high = gain.value if gain.high is None else gain.high
    return "pays" if low >= PAYS_PER_DOUBLING else ("does not pay" if high < PAYS_PER_DOUBLING else "uncertain")


def advise_rounds(n: Sequence[int], dice: Sequence[float | None], budgets: Sequence[int], *,
                  per_image: np.ndarray | None = None, agreement: Sequence[RoundAgreement] = (),
                  n_boot: int = N_BOOT, seed: int = 0, n_labeled: int | None = None, source: str = "test") -> Advice:
    """The advice from rounds with ``n`` labels and test Dice ``dice`` (None: no test masks), forecasting ``budgets``.

    ``per_image`` (``(rounds, test images)``, same order as ``n``) gives the bootstrap interval: ``n_boot``
    resamples of the test images, seeded by ``seed``. With ``source="cross-validation"`` the points are the
    training sizes and held-out Dice of :mod:`.crossval`, and ``n_labeled`` the labels the run has now.
    """
    n = [int(k) for k in n]
    if not n:
        raise SaalError("no round trained yet: run 'saal train' first")
    agreement = list(agreement)
    measured = list(zip(n, dice))
    scored = [(k, d) for k, d in measured if d is not None]
    n_labeled = n[-1] if n_labeled is None else int(n_labeled)
    base = dict(n_labeled=n_labeled, measured=measured, agreement=agreement, trend=trend(agreement), source=source)
    if not scored:
        why = "no test split with masks, so no learning curve: only the label-free signal is available"
    elif len(set(k for k, _ in scored)) < MIN_POINTS:
        why = f"{'one round' if len(scored) == 1 else 'two rounds'} only: a learning curve needs {MIN_POINTS}"
    else:
        why = None
    if why is not None:
        advice = Advice(**base, why_no_curve=why)
        return _with_sentence(advice, n_rounds=len(n))
    k, y = np.array([s[0] for s in scored], dtype=float), np.array([s[1] for s in scored])
    curve = fit_curve(k, y)
    targets = np.array([*budgets, n_labeled, 2 * n_labeled], dtype=float)
    point = curve(targets)
    if per_image is not None:
        a, b, c = fit_many(k, bootstrap_means(per_image, n_boot, seed))
        draws = power_law(targets[None, :], a[:, None], b[:, None], c[:, None])     # (n_boot, targets)
        low, high = np.quantile(draws, INTERVAL, axis=0)
        gains = draws[:, -1] - draws[:, -2]
        gain = Estimate(float(point[-1] - point[-2]), *map(float, np.quantile(gains, INTERVAL)))
        forecasts = {int(t): Estimate(float(p), float(lo), float(hi))
                     for t, p, lo, hi in zip(budgets, point, low, high)}
    else:
        gain = Estimate(float(point[-1] - point[-2]))
        forecasts = {int(t): Estimate(float(p)) for t, p in zip(budgets, point)}
    advice = Advice(**base, curve=curve, forecasts=forecasts, gain_per_doubling=gain, verdict=_verdict(gain))
    return _with_sentence(advice, n_rounds=len(n))


def _pts(x: float) -> str:
    return f"{100 * x:.1f}"


def _with_sentence(advice: Advice, n_rounds: int) -> Advice:
    """``advice`` with its plain sentence (see the module docstring for the rule behind it)."""
    parts = []
    if advice.dice is not None:
        parts.append(f"With {advice.n_labeled} labels the test Dice is {_pts(advice.dice)}")
    elif advice.source == "cross-validation":
        sizes = ", ".join(str(k) for k, _ in advice.measured)
        parts.append(f"No test masks: cross-validated on the {advice.n_labeled} labeled images (models trained on "
                     f"{sizes} of them score the ones they did not see: {_pts(advice.measured[-1][1])} at "
                     f"{advice.measured[-1][0]})")
    if advice.curve is not None and advice.source == "cross-validation":
        # its level is that of the labeled images, which the queries chose (often easier or harder than a random
        # test set: +10 Dice on ISIC in bench_advisor): only the gains are forecast
        now = float(advice.curve(advice.n_labeled))
        gains = " and ".join(f"{100 * (f.value - now):+.1f} at {b}" for b, f in advice.forecasts.items())
        parts.append(f"the curve expects {gains} labels on images like the labeled ones, "
                     f"{VERDICTS[advice.verdict]} (a cross-validated level is not a test Dice)")
    elif advice.curve is not None:
        (b1, f1), *rest = advice.forecasts.items()
        span = "" if f1.low is None else f" ({_pts(f1.low)}-{_pts(f1.high)})"
        later = "".join(f" and {_pts(f.value)} at {b}" for b, f in rest)
        now = float(advice.curve(advice.n_labeled))
        parts.append(f"the fitted curve ({_pts(now)} at {advice.n_labeled}) expects {_pts(f1.value)}{span} at {b1}"
                     f"{later} labels: {100 * (f1.value - now):+.1f} for {b1 - advice.n_labeled} more images, "
                     f"{VERDICTS[advice.verdict]}")
    elif advice.dice is None:
        parts.append("No test split with masks, so no learning curve: only the label-free signal is available")
    else:
        scored = [(k, d) for k, d in advice.measured if d is not None]
        since = (f" ({100 * (scored[-1][1] - scored[-2][1]):+.1f} since {scored[-2][0]} labels)"
                 if len(scored) == 2 else "")
        parts.append(f"{advice.why_no_curve}{since}")
    if advice.agreement:
        last = advice.agreement[-1]
        parts.append(f"predictions on {last.n_images} unlabeled images agree {_pts(last.agreement)} % with the "
                     f"previous round's" + (f" ({advice.trend})" if advice.trend else ""))
    else:
        why = "one round only" if n_rounds < 2 else "the rounds predate stop-set predictions"
        parts.append(f"agreement between rounds unavailable ({why})")
    return replace(advice, sentence="; ".join(parts) + ".")


# ------------------------------------------------------------------------------------------- a loop folder
def per_image_dice(directory: Path, rounds: Sequence[int]) -> np.ndarray | None:
    """``(rounds, test images)`` Dice from ``eval/round_N.csv``, aligned by image id; None if a file is missing."""
    tables = []
    for r in rounds:
        path = Path(directory) / "eval" / f"round_{r}.csv"
        if not path.is_file():
            return None
        tables.append({row["image_id"]: float(row["dice"]) for row in read_csv(path)})
    ids = [k for k in tables[0] if all(k in t for t in tables[1:])]
    return np.array([[t[k] for k in ids] for t in tables]) if ids else None


def advise_loop(directory: Path, planned: Sequence[int] = (), *, max_labels: int | None = None,
                budgets: Sequence[int] | None = None, n_boot: int = N_BOOT, seed: int = 0,
                crossval: tuple[np.ndarray, np.ndarray] | None = None) -> Advice:
    """The advice for an active-learning loop folder (``RUN/active``, or an experiment's cell folder).

    ``planned``: the run's budgets; the forecast is at the next two of them above the current labels, or at
    doublings where the plan ends (``budgets`` instead names the forecast's label counts). ``max_labels`` uses
    only the rounds up to that many labels: what the advisor would have said then. ``crossval``: the
    ``(sizes, per_image)`` of :func:`.crossval.crossval_dice` on the labeled images, used when the rounds have
    no test Dice.
    """
    records = read_jsonl(Path(directory) / "rounds.jsonl")
    records = [r for r in records if max_labels is None or r["n_labeled"] <= max_labels]
    if not records:
        raise SaalError(f"{directory}: no round trained yet: run 'saal train' first")
    dice = [r.get("dice") for r in records]
    scored = [r["round"] for r, d in zip(records, dice) if d is not None]
    per_image = per_image_dice(directory, scored) if len(scored) >= MIN_POINTS else None
    n_labeled = records[-1]["n_labeled"]
    targets = list(budgets) if budgets is not None else next_budgets(planned, n_labeled)
    agreement = agreement_series(directory, records)
    if crossval is not None and not scored:
        sizes, cv_dice = crossval
        advice = advise_rounds(sizes, np.nanmean(cv_dice, axis=1).tolist(), targets, per_image=cv_dice,
                               agreement=agreement, n_boot=n_boot, seed=seed, n_labeled=n_labeled,
                               source="cross-validation")
    else:
        advice = advise_rounds([r["n_labeled"] for r in records], dice, targets, per_image=per_image,
                               agreement=agreement, n_boot=n_boot, seed=seed)
    return replace(advice, effort=effort_rows(records))


def advice_table(advice: Advice) -> Table:
    """One row per round (measured, fitted, agreement with the round before) and per forecast budget."""
    agree = {a.n_labeled: a.agreement for a in advice.agreement}
    rows = [[str(k), "–" if d is None else _pts(d), "–" if advice.curve is None else _pts(float(advice.curve(k))),
             "", _pts(agree[k]) if k in agree else "–"] for k, d in advice.measured]
    for k, f in advice.forecasts.items():
        span = "" if f.low is None else f" ({_pts(f.low)}-{_pts(f.high)})"
        rows.append([str(k), "", "", f"{_pts(f.value)}{span}", ""])
    lo, hi = (int(100 * q) for q in INTERVAL)
    measured = ("cross-validated Dice (training images)" if advice.source == "cross-validation" else "measured Dice")
    what = ("held-out Dice of models trained on that many of the labeled images (cross-validation: no test masks; "
            "the level is that of the images the queries chose, not a test set's: read the gains)"
            if advice.source == "cross-validation" else "test Dice")
    return Table("How many more labels?", ["labels", measured, "fitted", f"forecast ({lo}-{hi} %)",
                                           "agreement (%)"], rows,
                 f"Fitted: an inverse power law a - b n^-c of {what} against labels; the forecast interval "
                 "resamples the scored images (it does not include training noise). Agreement: mean Dice between "
                 "this round's and the previous round's predictions on the unlabeled stop images. Verdict: "
                 + RULE + ".")


def write_advice(directory: Path, advice: Advice) -> Path:
    """``advice.json`` in the loop folder: everything the table and the sentence say, as numbers."""
    return write_json(Path(directory) / ADVICE_FILE, advice.to_dict())
