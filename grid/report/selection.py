"""λ chosen on the validation split, never on the test rows; the other λ shown as sensitivity;
last-epoch against best-validation numbers.

The rule (one place): for each (dataset, method, training ε) of a method with λ, the λ whose
trials have the highest mean over seeds of ``val_pgd`` (PGD-10 accuracy on the validation split
at the training ε, ``er_core.validation``) at the epoch each trial evaluated; equal means go to
the smaller λ (the weaker regulariser). A group is chosen only when every one of its trials has
a validation reading. The report's headline sections then show only the chosen λ of such a
method (:func:`headline_lambdas`); every λ stays in the sensitivity table of
:func:`selection_section`, beside its test robust accuracy, which is shown and never used to
choose. Without a validation split nothing is chosen and every λ is shown: choosing the best λ
on the evaluation subset would inflate the reported robustness by the best-of-k effect.
"""

from __future__ import annotations

import json

import pandas as pd

from .formatting import markdown_table, num
from .names import dataset_name, method_name

GROUP = ["dataset", "method", "train_eps"]


def _epoch_entry(losses: list, epoch: int) -> dict:
    """The per-epoch record of ``epoch`` (1-based) in a trial's losses, else the last one."""
    for entry in losses:
        if isinstance(entry, dict) and entry.get("epoch") == epoch:
            return entry
    return losses[-1] if losses and isinstance(losses[-1], dict) else {}


def validation_scores(trials_df: pd.DataFrame | None) -> pd.DataFrame:
    """Per trial: ``val_pgd``/``val_clean`` at the evaluated epoch, at the last epoch, and the best
    ``val_pgd`` with its epoch (NaN where the trial had no validation split)."""
    columns = ["trial_id", *GROUP, "lam", "seed", "evaluated_epoch", "epochs", "val_pgd", "val_clean",
               "last_val_pgd", "best_val_pgd", "best_epoch"]
    if trials_df is None or trials_df.empty or "losses_json" not in trials_df.columns:
        return pd.DataFrame(columns=columns)
    rows = []
    for t in trials_df.to_dict("records"):
        losses = json.loads(t["losses_json"]) if isinstance(t.get("losses_json"), str) else []
        evaluated = int(t.get("evaluated_epoch") or t["epochs"]) if pd.notna(t.get("evaluated_epoch")) else t["epochs"]
        at = _epoch_entry(losses, evaluated)
        readings = [(e.get("epoch"), e["val_pgd"]) for e in losses if isinstance(e, dict) and "val_pgd" in e]
        best = max(readings, key=lambda r: r[1], default=(None, float("nan")))
        rows.append({"trial_id": t["trial_id"], "dataset": t["dataset"], "method": t["method"],
                     "train_eps": t["train_eps"], "lam": t["lam"], "seed": t["seed"], "evaluated_epoch": evaluated,
                     "epochs": t["epochs"], "val_pgd": at.get("val_pgd", float("nan")),
                     "val_clean": at.get("val_clean", float("nan")),
                     "last_val_pgd": readings[-1][1] if readings else float("nan"),
                     "best_val_pgd": best[1], "best_epoch": best[0]})
    return pd.DataFrame(rows, columns=columns)


def chosen_lambdas(trials_df: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (dataset, method, train ε, λ) of the methods with λ: mean/std of ``val_pgd``
    over seeds, ``seeds``, and ``chosen`` (True for the group's λ by the rule above; False for
    the others; all False where the group lacks a validation reading)."""
    scores = validation_scores(trials_df)
    scores = scores[scores["lam"].notna()]
    columns = [*GROUP, "lam", "val_pgd", "val_std", "seeds", "chosen"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    per_lam = (scores.groupby([*GROUP, "lam"], dropna=False, sort=True)
               .agg(val_pgd=("val_pgd", "mean"), val_std=("val_pgd", "std"), seeds=("seed", "nunique"),
                    complete=("val_pgd", lambda s: bool(s.notna().all())))
               .reset_index())
    per_lam["chosen"] = False
    for _, group in per_lam.groupby(GROUP, dropna=False, sort=False):
        if not group["complete"].all():
            continue
        # Rounded so that equal shares averaged in another order still tie (0.64+0.56 vs 0.7+0.5).
        ranked = group.assign(_score=group["val_pgd"].round(9)).sort_values(["_score", "lam"], ascending=[False, True])
        per_lam.loc[ranked.index[0], "chosen"] = True
    return per_lam[columns]


def headline_lambdas(df: pd.DataFrame, choice: pd.DataFrame) -> pd.DataFrame:
    """``df`` (example or trial rows) without the non-chosen λ of every group that has a choice."""
    if df is None or df.empty or choice.empty or not choice["chosen"].any():
        return df
    decided = choice[choice["chosen"]]
    drop = pd.Series(False, index=df.index)
    for row in decided.itertuples(index=False):
        same = (df["dataset"] == row.dataset) & (df["method"] == row.method)
        same &= df["train_eps"].isna() if pd.isna(row.train_eps) else (df["train_eps"] == row.train_eps)
        drop |= same & (df["lam"] != row.lam)
    return df[~drop]


def selection_section(choice: pd.DataFrame, trials_df: pd.DataFrame | None, acc: pd.DataFrame | None,
                      paper_eps) -> list[str]:
    """The report's "λ chosen on validation" section: each λ's validation reading, the choice,
    and (as sensitivity, not used to choose) the test robust accuracy at the dataset's paper ε."""
    out = ["## λ chosen on validation", "",
           "Per (dataset, method, training ε), the λ with the highest mean PGD-10 accuracy on the validation split "
           "(training images no trial trained on) at the evaluated epoch; equal means go to the smaller λ. The "
           "headline tables above show that λ only; the test numbers here are sensitivity, never used to choose.", ""]
    if choice.empty:
        return out + ["_no method with λ in the rows_", ""]
    if not choice["chosen"].any():
        out += ["_No validation readings: nothing is chosen and every λ is shown above. Choosing the best λ on "
                "these test rows would inflate the result (best-of-k); set `validation_n` in the spec._", ""]
    lines = []
    for r in choice.itertuples(index=False):
        test = _test_cell(acc, r, paper_eps(r.dataset))
        val = "–" if pd.isna(r.val_pgd) else (f"{100 * r.val_pgd:.1f}" + ("" if pd.isna(r.val_std) else
                                                                             f" ± {100 * r.val_std:.1f}"))
        lines.append([dataset_name(r.dataset), method_name(r.method), num(r.train_eps) if pd.notna(r.train_eps) else "–",
                      num(r.lam), val, str(int(r.seeds)), test, "**chosen**" if r.chosen else ""])
    out += [markdown_table(["dataset", "method", "train ε", "λ", "validation PGD-10 %", "seeds",
                            "test robust % at paper ε (sensitivity)", ""], lines), ""]
    return out + early_stopping_lines(trials_df)


def _test_cell(acc: pd.DataFrame | None, r, eps) -> str:
    if acc is None or acc.empty or eps is None:
        return "–"
    from .paper_values import EPS_MATCH

    same = acc[(acc["dataset"] == r.dataset) & (acc["method"] == r.method) & (acc["lam"] == r.lam)
               & ((acc["eps"] - eps).abs() <= EPS_MATCH)]
    if pd.notna(r.train_eps):
        same = same[same["train_eps"] == r.train_eps]
    cells = [f"{a} {100 * v:.1f}" for a, v in zip(same["attack"], same["robust_accuracy"])]
    return "; ".join(cells) or "–"


def early_stopping_lines(trials_df: pd.DataFrame | None) -> list[str]:
    """Last-epoch against best-validation readings per trial configuration (Rice et al.'s robust
    overfitting shows as a best epoch before the last with a higher validation PGD accuracy)."""
    scores = validation_scores(trials_df)
    scores = scores[scores["best_val_pgd"].notna()]
    out = ["### Last epoch and best validation epoch", ""]
    if scores.empty:
        return out + ["_no validation readings_", ""]
    lines = []
    keys = [*GROUP, "lam"]
    for key, g in scores.groupby(keys, dropna=False, sort=True):
        dataset, method, train_eps, lam = key
        lines.append([dataset_name(dataset), method_name(method), num(train_eps) if pd.notna(train_eps) else "–",
                      num(lam) if pd.notna(lam) else "–", f"{100 * g['last_val_pgd'].mean():.1f}",
                      f"{100 * g['best_val_pgd'].mean():.1f}", ", ".join(str(int(e)) for e in g["best_epoch"]),
                      ", ".join(str(int(e)) for e in g["evaluated_epoch"]), str(len(g))])
    return out + [markdown_table(["dataset", "method", "train ε", "λ", "last-epoch val PGD-10 %",
                                  "best val PGD-10 %", "best epoch(s)", "evaluated epoch(s)", "runs"], lines), ""]


__all__ = ["chosen_lambdas", "headline_lambdas", "selection_section", "validation_scores"]
