"""The report's closing section: every setting behind its numbers, read from the rows themselves.

Each example row carries its fingerprint (``attack_config``, ``eval_subset``,
``library_versions``, ``code_version``) and its trial's settings (``seed``, ``epochs``,
``train_eps``, ``lam``); trial rows add the device. Nothing here is read from the spec, so the
section describes what was actually run, including a store that mixes versions (each distinct
value is listed, with how many rows carry it).
"""

from __future__ import annotations

import pandas as pd

from grid.store.rows import present

from .formatting import json_or_text, markdown_table, num
from .names import dataset_name, method_name


def settings_section(ctx) -> list[str]:
    """Markdown lines of the settings section (``ctx``: :class:`grid.report.markdown.ReportContext`)."""
    df = ctx.df
    out = ["## Settings", ""]
    if df.empty:
        return out + ["_no rows_", ""]
    out += ["### Attacks", "", attack_settings(df), ""]
    out += ["### Trials (training settings, seeds)", "", training_settings(df), ""]
    if ctx.trials_df is not None and not ctx.trials_df.empty and "recipe" in ctx.trials_df.columns:
        out += ["### Training recipes (er_core.recipes)", "", recipe_settings(ctx.trials_df), ""]
    if ctx.trials_df is not None and not ctx.trials_df.empty and "device" in ctx.trials_df.columns:
        devices = ctx.trials_df["device"].value_counts()
        out += ["### Devices", "", *[f"- {device}: {count} trial(s)" for device, count in devices.items()], ""]
    out += ["### Versions", ""]
    out += [f"- code version {value}: {count} row(s)" for value, count in _counts(df, "code_version")]
    for value, count in _counts(df, "library_versions"):
        out.append(f"- libraries {_libraries(value)}: {count} row(s)")
    return out + [""]


def attack_settings(df: pd.DataFrame) -> str:
    """One row per (dataset, attack, configuration, evaluation subset): the ε values it ran at,
    trials, rows. The configuration is the stored one without its ε (that has its own column), so
    a sweep over five ε is one row, and two settings of one attack (PGD-40 and a PGD probe, or a
    second step count) are two."""
    if "attack_config" not in df.columns:
        df = df.assign(attack_config="")
    if "eval_subset" not in df.columns:
        df = df.assign(eval_subset="")
    # Each distinct stored config is decoded once (a full grid holds millions of rows, few configs).
    options = {config: _options(config) for config in df["attack_config"].dropna().unique()}
    df = df.assign(_options=df["attack_config"].map(options).fillna("–"))
    rows = []
    keys = ["dataset", "attack", "_options", "eval_subset"]
    for (dataset, attack, shown, subset), group in df.groupby(keys, sort=True, dropna=False):
        eps = ", ".join(num(e) for e in sorted(group["eps"].unique()))
        rows.append([dataset_name(dataset), attack, eps, shown or "–", str(subset or "–"),
                     str(group["trial_id"].nunique()), str(len(group))])
    return markdown_table(["dataset", "attack", "ε", "configuration", "evaluation subset", "trials", "rows"], rows)


def training_settings(df: pd.DataFrame) -> str:
    """One row per (dataset, method, train ε, λ): epochs, seeds, trials."""
    keys = ["dataset", "method", "train_eps", "lam"]
    rows = []
    for key, group in df.groupby(keys, sort=True, dropna=False):
        dataset, method, train_eps, lam = key
        rows.append([dataset_name(dataset), method_name(method),
                     num(train_eps) if present(train_eps) else "–", num(lam) if present(lam) else "–",
                     ", ".join(str(int(e)) for e in sorted(group["epochs"].unique())),
                     ", ".join(str(int(s)) for s in sorted(group["seed"].unique())),
                     str(group["trial_id"].nunique())])
    return markdown_table(["dataset", "method", "train ε", "λ", "epochs", "seeds", "trials"], rows)


RECIPE_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "lr_schedule", "augment", "crop_padding")


def recipe_settings(trials_df: pd.DataFrame) -> str:
    """One row per (dataset, method, recipe and its resolved settings, validation split, evaluated
    checkpoint): what every trial trained with, read from its trial row."""
    rows = {}
    for t in trials_df.to_dict("records"):
        hp = json_or_text(t.get("hyperparams_json") or "{}")
        hp = hp if isinstance(hp, dict) else {}
        settings = ", ".join(f"{k}={hp[k]}" for k in RECIPE_KEYS if k in hp) or "–"
        key = (dataset_name(t["dataset"]), method_name(t["method"]), str(t.get("recipe") or "–"), settings,
               str(t.get("validation_n", "–")), str(t.get("evaluate") or "–"))
        rows[key] = rows.get(key, 0) + 1
    return markdown_table(["dataset", "method", "recipe", "settings", "validation images", "evaluated", "trials"],
                          [[*key, str(count)] for key, count in sorted(rows.items())])


def _options(config_json: str) -> str:
    """An attack's stored config as ``key=value`` pairs, without the ε (shown in its own column)."""
    config = json_or_text(config_json)
    if not isinstance(config, dict):
        return str(config)
    return ", ".join(f"{k}={v}" for k, v in sorted(config.items()) if k not in ("eps", "attack"))


def _counts(df: pd.DataFrame, column: str) -> list[tuple]:
    if column not in df.columns:
        return []
    return list(df[column].dropna().value_counts().sort_index().items())


def _libraries(value: str) -> str:
    versions = json_or_text(value)
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) if isinstance(versions, dict) else str(versions)
