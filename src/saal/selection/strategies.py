"""The strategy registry: one name per cold-start strategy, looked up by the CLI and experiments."""

from __future__ import annotations

import inspect

from saal.errors import SelectionError
from saal.selection.base import ColdStartStrategy
from saal.selection.cluster import SaalStrategy
from saal.selection.kcenter import KCenterStrategy
from saal.selection.probcover import ProbCoverStrategy
from saal.selection.typiclust import TypiclustStrategy
from saal.selection.uniform import RandomStrategy

STRATEGIES: dict[str, type[ColdStartStrategy]] = {
    "saal": SaalStrategy,
    "random": RandomStrategy,
    "kcenter": KCenterStrategy,
    "typiclust": TypiclustStrategy,
    "probcover": ProbCoverStrategy,
}


def get_strategy(name: str, **params) -> ColdStartStrategy:
    """An instance of the strategy called ``name`` with ``params`` (unknown names/options are one-line errors)."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise SelectionError(f"unknown selection strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        options = ", ".join(accepted) or "none"
        raise SelectionError(f"strategy {name!r} has no option {unknown[0]!r} (options: {options})")
    return cls(**params)
