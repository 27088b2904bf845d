"""The cold-start registry: one name per cold-start strategy, looked up by the CLI, the loop and experiments.

* :func:`get_cold_start` builds a strategy from explicit options (an unknown
  option is an error naming the ones that exist);
* :func:`make_cold_start` builds it as a run configures it: a run-wide setting
  (``n_clusters``) goes to the strategies whose constructor takes it, so no
  caller needs to know which strategy clusters.
"""

from __future__ import annotations

import inspect

from saal.errors import SelectionError
from saal.selection.base import ColdStartStrategy
from saal.selection.cluster import SaalStrategy, SaalTypicalStrategy
from saal.selection.kcenter import KCenterStrategy
from saal.selection.probcover import ProbCoverStrategy
from saal.selection.typiclust import TypiclustStrategy
from saal.selection.uniform import RandomStrategy

COLD_STARTS: dict[str, type[ColdStartStrategy]] = {
    "saal": SaalStrategy,
    "saal-typical": SaalTypicalStrategy,
    "random": RandomStrategy,
    "kcenter": KCenterStrategy,
    "typiclust": TypiclustStrategy,
    "probcover": ProbCoverStrategy,
}


def _lookup(name: str) -> type[ColdStartStrategy]:
    cls = COLD_STARTS.get(name)
    if cls is None:
        raise SelectionError(f"unknown cold start {name!r}; choose from {', '.join(COLD_STARTS)}")
    return cls


def _options(cls: type[ColdStartStrategy]) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]


def get_cold_start(name: str, **params) -> ColdStartStrategy:
    """An instance of the cold start called ``name`` with ``params`` (unknown names/options are one-line errors)."""
    cls = _lookup(name)
    accepted = _options(cls)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        options = ", ".join(accepted) or "none"
        raise SelectionError(f"cold start {name!r} has no option {unknown[0]!r} (options: {options})")
    return cls(**params)


def make_cold_start(name: str, *, n_clusters: int | None = None) -> ColdStartStrategy:
    """The cold start ``name`` with the run's settings: ``n_clusters`` for the strategies that take it."""
    cls = _lookup(name)
    settings = {"n_clusters": n_clusters}
    return cls(**{k: v for k, v in settings.items() if v is not None and k in _options(cls)})
