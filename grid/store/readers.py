"""Every reader of every table of the results store, all through one path convention
(:func:`~grid.store.open_results`: an experiment folder, its ``results`` folder, a URI of
either, or a ResultStore; a folder with neither is one clear error).

``filters``: column=value (equality; ``None`` matches nulls) or column=[values] (any of).
``damaged``: "raise" (default: :class:`~grid.store.manifest.DamagedStore` naming each damaged
committed file) or "skip" (leave them out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import pandas as pd

from .layout import CODES_DIR, DETECTION_DIR, NOTES_DIR, SANITY_DIR
from .locate import open_results
from .results_store import ResultStore
from .schemas import CODES_SCHEMA, DETECTION_SCHEMA, NOTES_SCHEMA, SANITY_SCHEMA

RootLike = Union[str, Path, ResultStore]


def load(root: RootLike, damaged: str = "raise", columns: Optional[list] = None, categorical: bool = False,
         **filters) -> pd.DataFrame:
    """All committed example rows under ``root`` as a pandas DataFrame (columns of ``ROW_SCHEMA``,
    or those named in ``columns``: only they are decoded). ``categorical``: string columns as
    pandas categoricals with sorted categories (a tenth of the memory on a large grid; groups and
    sorts as the strings do)."""
    return open_results(root).load(damaged=damaged, columns=columns, categorical=categorical, **filters)


def load_trials(root: RootLike, damaged: str = "raise", **filters) -> pd.DataFrame:
    """All committed trial rows under ``root`` (columns of ``TRIAL_SCHEMA``)."""
    return open_results(root).load_trials(damaged=damaged, **filters)


def load_detection(root: RootLike, damaged: str = "raise", **filters) -> pd.DataFrame:
    """Detection rows under ``root`` (columns of ``DETECTION_SCHEMA``)."""
    return open_results(root).load_table(DETECTION_DIR, DETECTION_SCHEMA, filters, damaged=damaged)


def load_codes(root: RootLike, damaged: str = "raise", **filters) -> pd.DataFrame:
    """Code rows under ``root`` (columns of ``CODES_SCHEMA``: z of the evaluation subset,
    natural and under PGD, the t-SNE figures' input)."""
    return open_results(root).load_table(CODES_DIR, CODES_SCHEMA, filters, damaged=damaged)


def load_flags(root: RootLike, damaged: str = "raise", **filters) -> pd.DataFrame:
    """Stored sanity-flag rows under ``root`` (columns of ``SANITY_SCHEMA``)."""
    return open_results(root).load_table(SANITY_DIR, SANITY_SCHEMA, filters, damaged=damaged)


def load_notes(root: RootLike, damaged: str = "raise", **filters) -> pd.DataFrame:
    """What attacks' own libraries warned of, per evaluation batch (columns of ``NOTES_SCHEMA``)."""
    return open_results(root).load_table(NOTES_DIR, NOTES_SCHEMA, filters, damaged=damaged)


__all__ = ["load", "load_codes", "load_detection", "load_flags", "load_notes", "load_trials"]
