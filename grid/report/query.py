"""Robust-accuracy queries that cannot mislead: no silent pooling, every cell with its n.

:func:`query_table` is what ``er-grid query`` prints; ``er-grid query`` computes it with
:func:`query_store`, which reads the store a few whole trials at a time and keeps only per-trial
counts (:class:`QueryParts`), so its memory does not grow with the store. It refuses a grouping
that would average over values a reader would take for one number:

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

from typing import Iterable, Optional, Sequence

import pandas as pd

from .metrics import TRIAL_COLUMNS, WORST_CASE, runs_accuracy, trial_accuracy

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
    check_grouping(df, by)
    return QueryParts(by, worst_case).add(df).table()


class QueryParts:
    """:func:`query_table` over example rows that come a few whole trials at a time
    (``grid.store.read.committed_chunks``): each part is reduced to per-trial counts at once,
    so only those are held. Trials are never split between parts."""

    def __init__(self, by: Sequence[str], worst_case: bool = True):
        self.by, self.worst_case = list(by), worst_case
        self.parts: list[pd.DataFrame] = []
        self.trial_parts: list[pd.DataFrame] = []
        self.columns: list = []

    def add(self, rows: pd.DataFrame) -> "QueryParts":
        # Every dimension a row could be grouped by is kept per trial: those left out of --by
        # hold one value (or the grouping is refused), so grouping the trials without them
        # gives the same cells.
        wide = self.by + [c for c in (*SEPARATED, *MUST_GROUP) if c not in self.by and c in rows.columns]
        self.columns = list(rows.columns)
        self.parts.append(_plain(trial_accuracy(rows, wide, self.worst_case and "attack" in self.by)))
        self.trial_parts.append(_plain(rows.drop_duplicates("trial_id")[
            ["trial_id", *[c for c in TRIAL_COLUMNS if c in rows.columns]]]))
        return self

    def trials(self) -> pd.DataFrame:
        """One row per trial read: its id and settings (what ``add_flags_column`` needs)."""
        return pd.concat(self.trial_parts, ignore_index=True) if self.trial_parts else pd.DataFrame(columns=["trial_id"])

    def per_trial(self) -> pd.DataFrame:
        parts = [p for p in self.parts if not p.empty]
        return pd.concat(parts, ignore_index=True) if parts else (self.parts[0] if self.parts else pd.DataFrame())

    def table(self) -> pd.DataFrame:
        """The query's table; PoolingError where ``by`` would pool attacks, ε or datasets."""
        trials = self.per_trial()
        check_grouping(trials, self.by)
        keys = self.by + [c for c in SEPARATED
                          if c not in self.by and c in trials.columns and trials[c].nunique(dropna=False) > 1]
        table = runs_accuracy(trials, keys, self.columns)
        # A dimension left out of --by has one value here (checked above): still name it in every
        # row, so a copied row says which attack, ε and dataset it is.
        for position, column in enumerate(c for c in MUST_GROUP if c not in keys and c in trials.columns):
            table.insert(position, column, trials[column].iloc[0] if len(trials) else None)
        table = with_completeness(table)
        if "attack" in table.columns:
            table["attacks"] = attacks_covered(trials, table, keys)
        return table


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with categorical columns (rows read with their strings as categories, which
    group fast) back to their values' own type, so that parts read apart concatenate alike."""
    categorical = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    return frame.astype({c: frame[c].cat.categories.dtype for c in categorical}) if categorical else frame


def query_chunks(chunks: Iterable[pd.DataFrame], by: Sequence[str], worst_case: bool = True) -> QueryParts:
    """:class:`QueryParts` of every chunk of example rows (whole trials each)."""
    parts = QueryParts(by, worst_case)
    for rows in chunks:
        parts.add(rows)
    return parts


# The example columns the query reads (with the --by columns): only these are decoded.
QUERY_COLUMNS = ("experiment", "trial_id", "dataset", "method", "train_eps", "lam", "seed", "epochs", "attack",
                 "norm", "eps", "sample_idx", "correct_clean", "correct_adv", "eval_subset")


def query_store(store, by: Sequence[str], worst_case: bool = True, damaged: str = "raise",
                filters: Optional[dict] = None) -> QueryParts:
    """:class:`QueryParts` of the committed example rows of ``store`` (a ``grid.store.ResultStore``)
    matching ``filters``, read a few trials at a time: memory holds one chunk of rows
    (``grid.store.read.CHUNK_ROWS``) and the per-trial counts, whatever the store's size."""
    from grid.store import EXAMPLES_DIR, ROW_SCHEMA, UNIQUE_KEYS
    from grid.store.read import committed_chunks

    columns = list(dict.fromkeys([*QUERY_COLUMNS, *by]))
    chunks = committed_chunks(store, EXAMPLES_DIR, ROW_SCHEMA, dict(filters or {}), damaged,
                              UNIQUE_KEYS[EXAMPLES_DIR], columns)
    # Strings as categories: the per-trial grouping then factorises codes, not strings.
    return query_chunks((chunk.to_pandas(strings_to_categorical=True) for chunk in chunks), by, worst_case)


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
