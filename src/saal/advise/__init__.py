"""How many more labels? The label-budget advisor behind ``saal advise`` and the run report's advice.

* :mod:`.curve` -- Dice against labels as an inverse power law, fitted under bounds, with a test-image bootstrap;
* :mod:`.agreement` -- the label-free stopping signal: agreement of consecutive rounds on the stop set
  (:mod:`saal.active.stopset` saves the predictions);
* :mod:`.advice` -- forecasts at the next budgets, the rule for "more labels are likely to pay", one sentence;
* :mod:`.effort` -- per round, how much of the previous model's proposals the annotators changed.
"""

from .advice import ADVICE_FILE, Advice, Estimate, advice_table, advise_loop, advise_rounds, next_budgets, write_advice
from .agreement import RoundAgreement, agreement_series, mask_dice
from .curve import Curve, fit_curve, fit_many, power_law
from .effort import effort_rows, effort_table

__all__ = [
    "Advice", "Estimate", "advise_rounds", "advise_loop", "advice_table", "next_budgets", "write_advice", "ADVICE_FILE",
    "RoundAgreement", "agreement_series", "mask_dice", "Curve", "fit_curve", "fit_many", "power_law",
    "effort_rows", "effort_table",
]
