"""The report's view of the sanity flags: the "Sanity checks" section, the headline tables
without ``collapsed`` trials, and the flags column of ``er-grid query``."""

from __future__ import annotations

from grid.store.flags import collapsed_trials, flag_names

from .formatting import markdown_table


def sanity_section(flags_df, not_checked=None) -> list[str]:
    """The report's "Sanity checks" section: each flagged trial with its evidence, then every
    check that could not judge some trials, and why (``not_checked``: ``grid.store.flags.
    not_checked_frame``), so no flag is silently unavailable."""
    out = ["## Sanity checks", "",
           "Flags after Carlini et al. 2019, *On Evaluating Adversarial Robustness*, and Athalye et al. 2018 "
           "(thresholds and their reasons in `er_core/sanity/`). Trials flagged `collapsed` are left out of every "
           "table below.", ""]
    if flags_df.empty:
        out += ["No trial flagged.", ""]
    else:
        rows = [[r.dataset, r.method, r.trial_id, f"`{r.flag}`", r.evidence.replace("|", "/")]
                for r in flags_df.sort_values(["dataset", "method", "trial_id", "flag"]).itertuples(index=False)]
        out += [markdown_table(["dataset", "method", "trial", "flag", "evidence"], rows), ""]
    if not_checked is not None and not not_checked.empty:
        out += ["Not checked (the plan or the method lacks what the check needs):", "",
                markdown_table(["check", "trials", "why"],
                               [[f"`{r.flag}`", str(r.trials), r.reason] for r in not_checked.itertuples(index=False)]),
                ""]
    return out


def headline_rows(df, flags_df):
    """``df`` without the rows of trials flagged ``collapsed`` (they stay listed in the sanity section)."""
    gone = collapsed_trials(flags_df)
    return df[~df["trial_id"].isin(gone)] if gone else df


def add_flags_column(table, df, flags_df):
    """``table`` (rows of ``grid.report.metrics.robust_accuracy`` over ``df``) plus ``flags``: the union of
    the flags of the trials behind each row ('' when none)."""
    names = flag_names(flags_df)
    keys = [c for c in ("experiment", "dataset", "method", "train_eps", "lam", "seed", "epochs")
            if c in table.columns and c in df.columns]
    per_trial = df.drop_duplicates("trial_id")[["trial_id", *keys]]
    if not keys:
        union = ",".join(sorted({n for t in per_trial["trial_id"] for n in names.get(t, "").split(",") if n}))
        return table.assign(flags=union)
    per_trial = per_trial.assign(_flags=per_trial["trial_id"].map(lambda t: names.get(t, "")))
    grouped = per_trial.groupby(keys, dropna=False)["_flags"].agg(
        lambda s: ",".join(sorted({n for v in s for n in v.split(",") if n}))).rename("flags").reset_index()
    return table.merge(grouped, on=keys, how="left").assign(flags=lambda t: t["flags"].fillna(""))


__all__ = ["add_flags_column", "headline_rows", "sanity_section"]
