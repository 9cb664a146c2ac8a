"""Robust-accuracy queries that cannot mislead: no silent pooling, every cell with its n.

:func:`query_table` is what ``er-grid query`` prints. It refuses a grouping that would average
over values a reader would take for one number:

- ``attack``, ``eps`` and ``dataset`` must be in ``by`` whenever the selected rows hold more
  than one value of them (filter with ``--attack``/``--eps``/``--dataset`` to keep one value
  instead). One :class:`PoolingError` names every missing key and the values it would pool.
  Erroring was chosen over printing the pooled dimensions next to the result: a pooled number
  in a CSV file loses any printed caveat the moment it is copied.
- A dimension left out of ``by`` because it holds one value is still a column of every row.
- Training settings (``train_eps``, ``lam``) are never pooled (``grid.report`` adds them to
  every grouping), and neither are threat models (``norm``: an ℓ2 and an ℓ∞ worst case at the
  same ε value) or experiments (two specs in one store): both are added here when the rows hold
  several.

Each result row carries ``n`` (examples behind it, over all runs), ``n_planned`` (what the
evaluation plan asked for: ``eval_n`` of each trial, read from the rows' ``eval_subset``
fingerprint) and ``complete`` (``n == n_planned``); a ``worst_case`` row carries ``attacks``,
the attacks it is the per-example worst case over.

A planned trial with no rows at all (its commit record deleted, or never written) has no row to
mark incomplete: :func:`planned_without_results` names those trials from the experiment's
spec record, for ``query`` (on stderr) and ``report`` (a line of the document, through
:data:`WITHOUT_RESULTS`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd

from .metrics import WORST_CASE, robust_accuracy

# Dimensions a robust-accuracy number depends on and that a reader must see in its row.
MUST_GROUP = ("dataset", "attack", "eps")
# Dimensions added to the grouping (rather than refused) when the rows hold several values.
SEPARATED = ("experiment", "norm")


# Query filters that are fields of a trial (the others, attack and ε, select rows within one).
TRIAL_FILTERS = ("experiment", "dataset", "method")
# Key of the example rows' DataFrame.attrs naming the planned trials without rows: set where the
# plan is known (er-grid report), read by the report's markdown (grid.report.markdown).
WITHOUT_RESULTS = "planned_trials_without_results"
MAX_NAMED = 20  # trial names in one line; the count is always whole


def planned_without_results(path: str, filters: Optional[dict] = None) -> list[str]:
    """Names of the planned trials of the experiment at ``path`` (those matching the trial
    fields among ``filters``) without any committed evaluation row; empty where ``path`` holds
    no plan (a results folder without ``grid_spec.json``). A damaged spec record is a GridError."""
    from grid.experiment.status import trials_without_results

    kept = {k: v for k, v in (filters or {}).items() if k in TRIAL_FILTERS and v}
    return trials_without_results(path, **kept) or []


def no_results_line(names: Sequence[str]) -> str:
    """``"3 planned trials have no results: a, b, c"`` (at most :data:`MAX_NAMED` names)."""
    shown = ", ".join(names[:MAX_NAMED]) + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")
    many = len(names) != 1
    return f"{len(names)} planned trial{'s' if many else ''} {'have' if many else 'has'} no results: {shown}"


def no_results_section(names: Sequence[str]) -> list[str]:
    """The report's markdown lines naming the planned trials without rows (none when there are none)."""
    return [f"**{no_results_line(list(names))}** (`er-grid status` shows them; `er-grid resume` runs them).", ""] \
        if names else []


class PoolingError(ValueError):
    """A grouping that would average over attacks, ε or datasets (names the missing keys)."""


def pooled_dimensions(df: pd.DataFrame, by: Sequence[str]) -> dict[str, list]:
    """``{column: values}`` for each of :data:`MUST_GROUP` missing from ``by`` with several values in ``df``."""
    pooled = {}
    for column in MUST_GROUP:
        if column in by or column not in df.columns:
            continue
        values = sorted(df[column].dropna().unique().tolist(), key=str)
        if len(values) > 1:
            pooled[column] = values
    return pooled


def check_grouping(df: pd.DataFrame, by: Sequence[str]) -> None:
    """Raise :class:`PoolingError` when grouping ``df`` by ``by`` would pool attacks, ε or datasets."""
    pooled = pooled_dimensions(df, by)
    if pooled:
        detail = "; ".join(f"{column} ({', '.join(_short(v) for v in values)})"
                           for column, values in pooled.items())
        raise PoolingError(
            f"--by {','.join(by)} would average over {detail}: add {', '.join(pooled)} to --by, "
            f"or keep one value with --{' / --'.join(pooled)}"
        )


def query_table(df: pd.DataFrame, by: Sequence[str], worst_case: bool = True) -> pd.DataFrame:
    """Robust accuracy per group (see the module docstring), with ``n``, ``n_planned``, ``complete``, ``attacks``.

    df: example rows (``grid.store.load``); by: grouping columns. Raises :class:`PoolingError`
    before any aggregation when the grouping would pool attacks, ε or datasets.
    """
    by = list(by)
    check_grouping(df, by)
    keys = by + [c for c in SEPARATED if c not in by and c in df.columns and df[c].nunique(dropna=False) > 1]
    table = robust_accuracy(df, by=keys, worst_case=worst_case)
    # A dimension left out of --by has one value here (checked above): still name it in every
    # row, so a copied row says which attack, ε and dataset it is.
    for position, column in enumerate(c for c in MUST_GROUP if c not in keys and c in df.columns):
        table.insert(position, column, df[column].iloc[0] if len(df) else None)
    table = with_completeness(table)
    if "attack" in table.columns:
        table["attacks"] = attacks_covered(df, table, keys)
    return table


def with_completeness(table: pd.DataFrame) -> pd.DataFrame:
    """``complete`` = ``n == n_planned`` (NA where the plan is unknown: rows without ``eval_subset``)."""
    table = table.copy()
    if "n_planned" not in table.columns:
        table["n_planned"] = pd.NA
    planned = pd.to_numeric(table["n_planned"], errors="coerce")
    table["complete"] = (table["n"] >= planned).where(planned.notna(), pd.NA).astype("boolean")
    return table


def attacks_covered(df: pd.DataFrame, table: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """Per table row: its attack, or for a ``worst_case`` row the attacks of its group (comma-separated).

    The group is the row's keys without ``attack`` (and its threat model, where the row has
    one: a worst case never spans ℓ2 and ℓ∞), over the trials of the row's configuration.
    """
    group = [k for k in keys if k != "attack"]
    group += [c for c in ("norm", "train_eps", "lam") if c not in group and c in df.columns and c in table.columns]
    real = df[df["attack"] != WORST_CASE]
    covered = real.groupby(group, dropna=False)["attack"].agg(lambda s: ",".join(sorted(set(s))))
    # NaN keys (λ of a method without λ) never compare equal: normalise them for the lookup.
    lookup = {_key(index if isinstance(index, tuple) else (index,)): value for index, value in covered.items()}
    return [row.attack if row.attack != WORST_CASE else lookup.get(_key(tuple(getattr(row, k) for k in group)), "")
            for row in table.itertuples(index=False)]


def _key(values: tuple) -> tuple:
    return tuple(None if _missing(v) else v for v in values)


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
