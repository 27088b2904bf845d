"""Data: load a user's folder (ISIC 2016/2017/2018, images/ + masks/, unlabeled images) into
:class:`LesionData`, cache the preprocessed arrays, split pool/test, and inspect a folder.

The main entry points are :func:`load_dataset`, :func:`make_split` / :func:`save_split` /
:func:`load_split` and :func:`inspect_dataset`.
"""

from .dataset import LesionData
from .inspect import InspectReport, contact_sheet, inspect_dataset
from .loader import LoadResult, load_dataset
from .splits import Split, apply_split, load_split, make_split, save_split

__all__ = [
    "LesionData", "LoadResult", "load_dataset", "Split", "make_split", "save_split", "load_split",
    "apply_split", "InspectReport", "inspect_dataset", "contact_sheet",
]
