"""Display names and order of methods and datasets in the report's tables and figures.

Names come from the registries: a method's ``display_name`` (``er_core.methods``), a dataset's
``display_name`` (``er_core.dataset_info.INFO``). Order:

- methods: the registry's order, which is the paper's (rows of its tables, lines of its figures);
- datasets: the paper's datasets (those of its Tables 1 and 3, :data:`grid.report.paper_values.PAPER_VALUES`)
  in the registry's order, then the registry's other datasets (``digits``, the small demo set)
  in its order;
- a name neither registry knows keeps its registry name as display name and sorts after all of
  these, alphabetically.
"""

from __future__ import annotations

from functools import lru_cache

from er_core.dataset_info import INFO

from .paper_values import PAPER_VALUES


@lru_cache(maxsize=1)
def _methods() -> dict:
    # Imported on first use: the method registry loads torch, which the report's tables (and
    # ``grid.report.query``, which imports them) do not otherwise need.
    from er_core.methods import METHODS

    return METHODS


def method_name(method: str) -> str:
    """The paper's display name of a registry method name (``"er_minus"`` → ``"ER-Classifier−"``)."""
    methods = _methods()
    return methods[method].display_name if method in methods else method


def dataset_name(dataset: str) -> str:
    """The paper's display name of a registry dataset name (``"tiny_imagenet"`` → ``"Tiny ImageNet"``)."""
    return INFO[dataset].display_name if dataset in INFO else dataset


def method_rank(method: str) -> tuple:
    """Sort key of a method: the registry's (the paper's) order, unknown names after, alphabetically."""
    names = list(_methods())
    return (names.index(method), "") if method in names else (len(names), method)


_PAPER_DATASETS = {v.dataset for v in PAPER_VALUES}
# The paper's datasets, then the others; each group in the registry's order (sorted is stable).
DATASET_ORDER: tuple[str, ...] = tuple(sorted(INFO, key=lambda d: d not in _PAPER_DATASETS))


def dataset_rank(dataset: str) -> tuple:
    """Sort key of a dataset (see the module docstring), unknown names after, alphabetically."""
    names = DATASET_ORDER
    return (names.index(dataset), "") if dataset in names else (len(names), dataset)
