"""The fidelity job's table read back from the store, in the Ray-free runner's format.

``jobs/fidelity.py`` runs its grid through Ray Tune and then prints :func:`fidelity_table`;
``jobs/fidelity.py --no-ray`` runs the same trials through ``er_core.fidelity_run`` and prints
``er_core.fidelity_run.format_table`` of its own summaries: one table, two ways to fill it.
"""

from __future__ import annotations

import json

from er_core.sanity import final_loss
from grid.store import flag_names, flags_from_frames, load, load_notes, load_trials


def summaries_from_store(root, experiment: str) -> list[dict]:
    """One summary per stored trial of ``experiment``, with the keys ``format_table`` reads."""
    # The Ray-free runner's table helpers live beside its trial loop, which loads torch.
    from er_core.fidelity_run import column_name, trial_label

    df = load(root, experiment=experiment)
    trials = load_trials(root, experiment=experiment)
    names = flag_names(flags_from_frames(df, trials, load_notes(root, experiment=experiment)))
    robust = df.assign(_robust=df["correct_clean"].astype(bool) & df["correct_adv"].astype(bool))
    accuracy = robust.groupby(["trial_id", "attack", "eps"])["_robust"].mean()
    out = []
    for t in trials.sort_values(["dataset", "method", "seed"]).to_dict("records"):
        losses = json.loads(t["losses_json"])
        final = final_loss(losses)
        mine = accuracy.loc[t["trial_id"]] if t["trial_id"] in accuracy.index.get_level_values(0) else {}
        out.append({
            **{k: _plain(t[k]) for k in ("dataset", "method", "train_eps", "lam", "seed", "epochs")},
            "label": trial_label({k: _plain(t[k]) for k in ("dataset", "method", "train_eps", "lam", "seed")}),
            "clean_accuracy": float(t["clean_accuracy"]),
            "accuracy": {column_name(a, e): float(v) for (a, e), v in dict(mine).items()},
            "final_loss": None if final is None else final[1], "flags": names.get(t["trial_id"], "").split(",")
            if t["trial_id"] in names else [], "wall_seconds": float(t["wall_seconds"]),
        })
    return out


def fidelity_table(root, experiment: str) -> str:
    """The markdown table of ``er_core.fidelity_run.format_table`` for a finished grid run."""
    from er_core.fidelity_run import format_table

    return format_table(summaries_from_store(root, experiment))


def _plain(value):
    """pandas' NaN (no λ / no training ε) back to None; numpy scalars to Python ones."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value
