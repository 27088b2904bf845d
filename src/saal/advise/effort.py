"""What the pre-annotations saved: per round, how much of the previous model's proposals the masks changed.

A team lead deciding whether to keep labeling weighs Dice gained against annotator time; the time an image costs
falls as the proposals improve. Each round's record holds the effort fields of :mod:`saal.active.effort` (the
simulated loop measures them against the data's masks, ``saal train`` against the imported ones); this module
lists them for ``saal advise`` and ``advice.json``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..render.html import Table


def effort_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rounds whose record measured the effort: round, labels, and the proposals' Dice and changed pixels."""
    return [{"round": r["round"], "n_labeled": r["n_labeled"], "images": r["effort_n"], "dice": r["effort_dice"],
             "changed": r["effort_changed"], "changed_median": r["effort_changed_median"]}
            for r in records if r.get("effort_changed") is not None]


def effort_table(rows: Sequence[Mapping[str, Any]]) -> Table | None:
    """The table of :func:`effort_rows` (None when no round measured it)."""
    if not rows:
        return None
    body = [[str(r["round"]), str(r["n_labeled"]), str(r["images"]), f"{100 * r['dice']:.1f}",
             f"{100 * r['changed']:.1f}", f"{100 * r['changed_median']:.1f}"] for r in rows]
    return Table("Annotation effort", ["round", "labels", "images asked", "proposal Dice (%)",
                                       "pixels to change (%)", "median (%)"], body,
                 "How the previous round's model's masks, the pre-annotations of the images this round asked for, "
                 "compare with the masks those images got: their Dice, and the share of each image's pixels an "
                 "annotator changes to turn the proposal into the mask (mean and median over the images; at the "
                 "model's input size). Lower is less work per image.")
