"""The grid's detection stage: KD, LID, ER1, ER2 on a trained trial, rows to the store.

What a spec asks for (optional field ``detection``, per dataset; validated by
:func:`validate_detection_spec`, defaults in brackets)::

    detection:
      mnist:
        detectors: [kd, lid, er1, er2]          # er_core.detect.DETECTORS
        attacks:                                 # [er_core.detect.PAPER_ATTACKS[dataset]]
          - {attack: fgsm, eps: 0.3}
          - {attack: pgd, eps: 0.3, options: {steps: 40}}
          - {attack: cw_l2, eps: 0.007}          # C&W: eps is the RMS-ℓ2 bound (see er_core.detect)
        n: 10000                                 # [null = whole test set] test examples used
        split_seed: 0                            # [0] set I / set II split (and the n-subset)
        fit_fraction: 0.2                        # [0.2] set I share
        batch_size: 256                          # [256] attack / feature batch size
        overbound: project                       # [project] | drop: C&W examples over the bound
        configs: {kd: {mc_passes: 50}}           # [{}] detector config overrides
        methods: {kd: [none], er1: [er]}         # [DEFAULT_DETECTOR_METHODS] which trials get which detector

Which detectors run on a trial: those whose ``methods`` list holds the trial's method (the
paper puts KD and LID on the undefended network, ER1 and ER2 on the ER-Classifier). KD needs
dropout > 0 in the undefended network (``hyperparams: {none: {dropout: 0.5}}``); the
validator checks it when it is given the spec's hyperparams.

The stage (:func:`run_detection_stage`) crafts every attack on set I and set II against the
trial's model, fits each detector on set I per fit attack, evaluates it on set II per test
attack (every pair: familiar = Table 5, cross = Tables 6–8) and writes one row per (trial,
detector, fit attack, test attack) with the four criteria, the counts and timings.

Storage: one parquet file per (trial, detection plan), written and committed through the
results store (``ResultStore.write_atomic``), ``<results>/detection/experiment=<e>/dataset=<d>/method=<m>/<trial_id>__<plan hash>.parquet``
(Hive partitions as in ``grid.store``). Resumable: a trial whose file is committed and intact is
skipped, so a rerun after a kill adds nothing twice; an uncommitted or damaged file is never
read and is redone. A changed plan hashes to a new file name, so its rows land beside the old ones with
their own ``detection_config``, never mixed into the same file.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Callable, Iterable, Optional

import pyarrow as pa

from .faults import KILL_IN_DETECTION_ENV, kill_if_asked
from .fingerprint import canonical_json, library_versions, short_hash
from .store import UTC_TIMESTAMP, ResultStore, column, open_results, without_partitions, rows_to_table

DETECTION_DIR = "detection"
_SEP = "__"

# The paper's pairing (Section 4.5.1): KD and LID on an undefended net, ER1/ER2 on ER-Classifier.
DEFAULT_DETECTOR_METHODS: dict[str, tuple[str, ...]] = {
    "kd": ("none",),
    "lid": ("none",),
    "er1": ("er", "er_minus", "er_trades"),
    "er2": ("er", "er_minus", "er_trades"),
}

PLAN_KEYS = ("detectors", "attacks", "n", "split_seed", "fit_fraction", "batch_size", "overbound",
             "configs", "methods")
PLAN_DEFAULTS = {"n": None, "split_seed": 0, "fit_fraction": 0.2, "batch_size": 256, "overbound": "project"}


#: One row per (trial, detector, fit attack, test attack).
DETECTION_SCHEMA = pa.schema([
    column("experiment", pa.string()),
    column("dataset", pa.string()),
    column("method", pa.string()),
    column("trial_id", pa.string()),
    column("train_eps", pa.float64(), nullable=True),
    column("lam", pa.float64(), nullable=True),
    column("seed", pa.int64()),
    column("epochs", pa.int64()),
    column("detector", pa.string()),
    column("fit_attack", pa.string()),
    column("fit_eps", pa.float64()),                  # C&W: the RMS-ℓ2 bound
    column("test_attack", pa.string()),
    column("test_eps", pa.float64()),
    column("acc_adv", pa.float64(), nullable=True),   # fractions in [0, 1]; NaN where undefined
    column("acc_nadv", pa.float64(), nullable=True),
    column("acc_cla", pa.float64(), nullable=True),
    column("acc_com", pa.float64(), nullable=True),
    column("n_adv", pa.int64()),
    column("n_nat", pa.int64()),
    column("n_detected", pa.int64()),
    column("n_undetected", pa.int64()),
    column("n_undetected_correct", pa.int64()),
    column("n_natural_flagged", pa.int64()),
    column("fit_seconds", pa.float64()),
    column("score_seconds", pa.float64()),
    column("craft_seconds", pa.float64()),            # crafting the test attack on sets I and II
    column("detector_config", pa.string()),           # canonical JSON of the detector's config
    column("detection_config", pa.string()),          # canonical JSON of the trial's detection plan
    column("checkpoint_hash", pa.string()),
    column("library_versions", pa.string()),
    column("code_version", pa.string()),
    column("created_at", UTC_TIMESTAMP),
])


# --------------------------------------------------------------------------- spec field


def validate_detection_spec(raw, datasets: Iterable[str], methods: Iterable[str],
                            hyperparams: Optional[dict] = None) -> Optional[dict]:
    """Normalise the spec's ``detection`` field; ``ValueError("spec.detection...: ...")`` on errors.

    Returns None for None, else {dataset: plan} with every key of :data:`PLAN_KEYS` filled.
    ``hyperparams`` (spec.hyperparams, method → dict) lets it check KD's dropout.
    """
    if raw is None:
        return None
    from er_core import detect
    from er_core.attacks import ATTACKS
    from er_core.data import info

    datasets, methods = tuple(datasets), tuple(methods)
    if not isinstance(raw, dict) or not raw:
        raise ValueError("spec.detection: expected a dict dataset → {detectors, attacks, ...}")
    out = {}
    for dataset, plan in raw.items():
        where = f"spec.detection.{dataset}"
        if dataset not in datasets:
            raise ValueError(f"spec.detection: dataset {dataset!r} is not in spec.datasets; valid: {', '.join(datasets)}")
        if not isinstance(plan, dict):
            raise ValueError(f"{where}: expected a dict, got {plan!r}")
        unknown = [k for k in plan if k not in PLAN_KEYS]
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown field; valid: {', '.join(PLAN_KEYS)}")
        if "detectors" not in plan:
            raise ValueError(f"{where}.detectors: missing required field")
        detectors = _names(f"{where}.detectors", plan["detectors"], detect.DETECTORS, "detector")
        attacks = _attacks(where, dataset, plan.get("attacks"), ATTACKS, detect)
        norm = {**PLAN_DEFAULTS, **{k: v for k, v in plan.items() if k in PLAN_DEFAULTS}}
        if norm["n"] is not None and (isinstance(norm["n"], bool) or not isinstance(norm["n"], int) or norm["n"] < 10):
            raise ValueError(f"{where}.n: expected null or an integer ≥ 10, got {norm['n']!r}")
        test_size = info(dataset).test_size
        if norm["n"] is not None and norm["n"] > test_size:
            raise ValueError(f"{where}.n: {norm['n']} examples requested but {dataset!r} has {test_size} test examples")
        if isinstance(norm["split_seed"], bool) or not isinstance(norm["split_seed"], int) or norm["split_seed"] < 0:
            raise ValueError(f"{where}.split_seed: expected an integer ≥ 0, got {norm['split_seed']!r}")
        if not isinstance(norm["fit_fraction"], (int, float)) or not 0 < norm["fit_fraction"] < 1:
            raise ValueError(f"{where}.fit_fraction: expected a number in (0, 1), got {norm['fit_fraction']!r}")
        if isinstance(norm["batch_size"], bool) or not isinstance(norm["batch_size"], int) or norm["batch_size"] < 1:
            raise ValueError(f"{where}.batch_size: expected an integer ≥ 1, got {norm['batch_size']!r}")
        if norm["overbound"] not in detect.OVERBOUND_POLICIES:
            raise ValueError(f"{where}.overbound: {norm['overbound']!r}; valid: {', '.join(detect.OVERBOUND_POLICIES)}")
        configs = plan.get("configs") or {}
        if not isinstance(configs, dict):
            raise ValueError(f"{where}.configs: expected a dict detector → options, got {configs!r}")
        for name, options in configs.items():
            if name not in detectors:
                raise ValueError(f"{where}.configs: detector {name!r} is not in detectors; valid: {', '.join(detectors)}")
            if not isinstance(options, dict):
                raise ValueError(f"{where}.configs.{name}: expected a dict of options, got {options!r}")
            try:
                detect.make(name, dataset=dataset, **options)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{where}.configs.{name}: {err}") from err
            canonical_json(options)
        method_map = _method_map(where, plan.get("methods"), detectors, methods)
        for name in detectors:
            if not any(m in methods for m in method_map[name]):
                raise ValueError(
                    f"{where}.methods.{name}: none of {list(method_map[name])} is in spec.methods "
                    f"({', '.join(methods)}), so detector {name!r} would never run"
                )
        if "kd" in detectors and hyperparams is not None:
            for m in method_map["kd"]:
                if m in methods and not float((hyperparams.get(m) or {}).get("dropout", 0.0)) > 0:
                    raise ValueError(
                        f"{where}.detectors: kd needs MC dropout, but spec.hyperparams.{m}.dropout is not > 0 "
                        f"(set e.g. hyperparams: {{{m}: {{dropout: 0.5}}}})"
                    )
        out[dataset] = {
            **norm, "fit_fraction": float(norm["fit_fraction"]), "detectors": list(detectors),
            "attacks": attacks, "configs": {k: dict(v) for k, v in configs.items()},
            "methods": {k: list(v) for k, v in method_map.items()},
        }
    return out


def trial_detection_plan(validated: Optional[dict], dataset: str, method: str) -> Optional[dict]:
    """The plan one trial runs: its dataset's plan cut to the detectors for ``method``, or None."""
    if not validated or dataset not in validated:
        return None
    plan = validated[dataset]
    detectors = [d for d in plan["detectors"] if method in plan["methods"][d]]
    if not detectors:
        return None
    return {**plan, "detectors": detectors,
            "configs": {k: v for k, v in plan["configs"].items() if k in detectors},
            "methods": {k: v for k, v in plan["methods"].items() if k in detectors}}


def _names(where: str, value, registry, kind: str) -> tuple:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where}: expected a non-empty list, got {value!r}")
    for v in value:
        if v not in registry:
            raise ValueError(f"{where}: unknown {kind} {v!r}; valid: {', '.join(registry)}")
    if len(set(value)) != len(value):
        raise ValueError(f"{where}: duplicate {kind}s in {list(value)}")
    return tuple(value)


def _attacks(where: str, dataset: str, raw, registry, detect) -> list[dict]:
    if raw is None:
        try:
            settings = detect.paper_attacks(dataset)
        except ValueError as err:
            raise ValueError(f"{where}.attacks: missing and {err}") from err
        return [{"attack": s.attack, "eps": s.eps, "options": dict(s.options)} for s in settings.values()]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError(f"{where}.attacks: expected a non-empty list of {{attack, eps, options}}")
    out, seen = [], set()
    for i, item in enumerate(raw):
        w = f"{where}.attacks[{i}]"
        if not isinstance(item, dict) or "attack" not in item or "eps" not in item:
            raise ValueError(f"{w}: expected {{attack, eps, options}}, got {item!r}")
        unknown = [k for k in item if k not in ("attack", "eps", "options")]
        if unknown:
            raise ValueError(f"{w}.{unknown[0]}: unknown field; valid: attack, eps, options")
        attack, eps, options = item["attack"], item["eps"], dict(item.get("options") or {})
        if attack not in registry:
            raise ValueError(f"{w}.attack: unknown attack {attack!r}; valid: {', '.join(sorted(registry))}")
        if attack in seen:
            # Tables are keyed by attack name, so one ε per attack and dataset.
            raise ValueError(f"{w}.attack: {attack!r} appears twice; give each attack once")
        seen.add(attack)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps <= 1:
            raise ValueError(f"{w}.eps: expected a number in [0, 1], got {eps!r}")
        try:
            detect.AttackSetting.of(attack, eps, **options).build()
        except (ValueError, TypeError) as err:
            raise ValueError(f"{w}.options: {err}") from err
        canonical_json(options)
        out.append({"attack": attack, "eps": float(eps), "options": options})
    if len(out) < 1:
        raise ValueError(f"{where}.attacks: empty")
    return out


def _method_map(where: str, raw, detectors: tuple, methods: tuple) -> dict:
    from er_core.methods import METHODS

    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where}.methods: expected a dict detector → list of methods, got {raw!r}")
    out = {}
    for name in detectors:
        value = raw.get(name, DEFAULT_DETECTOR_METHODS[name])
        out[name] = _names(f"{where}.methods.{name}", list(value), METHODS, "method")
    extra = [k for k in raw if k not in detectors]
    if extra:
        raise ValueError(f"{where}.methods: detector {extra[0]!r} is not in detectors; valid: {', '.join(detectors)}")
    return out


# --------------------------------------------------------------------------- the stage


def plan_hash(plan: dict) -> str:
    """10 hex digits identifying a detection plan (file-name part; rows carry the full JSON)."""
    return short_hash(plan, 10)


def detection_path(store: ResultStore, trial, plan: dict) -> str:
    directory = store.partition_dir(DETECTION_DIR, trial.experiment, trial.dataset, trial.method)
    return f"{directory}/{trial.trial_id}{_SEP}{plan_hash(plan)}.parquet"


def detection_done(store: ResultStore, trial, plan: dict) -> bool:
    """True when this trial's rows for ``plan`` are committed and intact (a damaged file is redone)."""
    return store.is_committed_intact(detection_path(store, trial, plan))


def run_detection_stage(store: ResultStore, trial, model, data, plan: dict, checkpoint_hash: str,
                        report: Optional[Callable[[dict], None]] = None) -> int:
    """Run ``plan`` (from :func:`trial_detection_plan`) on ``model`` (the trial's trained
    inference model) and store the rows. ``data``: the trial's ``er_core.data.Data``.
    ``trial``: anything with experiment, dataset, method, trial_id, train_eps, lam, seed,
    epochs (a ``grid.spec.TrialConfig``). Returns the number of rows written (0 when the trial's
    rows for this plan are already stored). ``report`` (optional) gets progress dicts.
    """
    from er_core import data as er_data
    from er_core import detect

    if detection_done(store, trial, plan):
        return 0
    started = time.perf_counter()
    x_test, y_test = data.x_test, data.y_test
    if plan["n"] is not None:
        idx = er_data.eval_indices(trial.dataset, plan["n"], plan["split_seed"])
        x_test, y_test = x_test[idx.to(x_test.device)], y_test[idx.to(y_test.device)]
    settings = {a["attack"]: detect.AttackSetting.of(a["attack"], a["eps"], **a["options"]) for a in plan["attacks"]}
    material = detect.prepare_material(
        model, data.x_train, data.y_train, x_test, y_test, settings, split_seed=plan["split_seed"],
        fit_fraction=plan["fit_fraction"], batch_size=plan["batch_size"], overbound=plan["overbound"],
    )
    if report is not None:
        report({"phase": "detection", "crafted_seconds": time.perf_counter() - started})
    kill_if_asked(KILL_IN_DETECTION_ENV, 1)  # test hook: a kill mid-stage must leave no rows
    configs = {d: detect.make(d, dataset=trial.dataset, **plan["configs"].get(d, {})).config for d in plan["detectors"]}
    results = detect.detection_matrix({d: material for d in plan["detectors"]}, configs, pairs="all")
    eps = {a["attack"]: a["eps"] for a in plan["attacks"]}
    common = {
        "experiment": trial.experiment, "dataset": trial.dataset, "method": trial.method,
        "trial_id": trial.trial_id, "train_eps": trial.train_eps, "lam": trial.lam,
        "seed": trial.seed, "epochs": trial.epochs, "detection_config": canonical_json(plan),
        "checkpoint_hash": checkpoint_hash, "library_versions": library_versions(),
    }
    rows = [{
        **common, **r,
        "fit_eps": eps[r["fit_attack"]], "test_eps": eps[r["test_attack"]],
        "craft_seconds": material.seconds[r["test_attack"]],
        "detector_config": canonical_json(dataclasses.asdict(configs[r["detector"]])),
    } for r in results]
    table = without_partitions(rows_to_table(rows, DETECTION_SCHEMA, fill={}))
    store.write_atomic(table, detection_path(store, trial, plan))
    if report is not None:
        report({"phase": "detection", "detection_rows": len(rows), "detection_seconds": time.perf_counter() - started})
    return len(rows)


# --------------------------------------------------------------------------- reading


def load_detection(root, damaged: str = "raise", **filters):
    """Detection rows under ``root`` (path, URI or ResultStore) as a pandas DataFrame with the
    columns of :data:`DETECTION_SCHEMA`; filters and ``damaged`` as in ``grid.store.load``.
    """
    store = open_results(root)
    # The store prunes files of non-example tables by "<trial_id>.parquet" names; ours carry a
    # plan hash too, so trial_id is filtered on the rows instead of the file names.
    trial_ids = filters.pop("trial_id", None)
    df = store.load_table(DETECTION_DIR, DETECTION_SCHEMA, filters, damaged=damaged,
                          unique=("trial_id", "detection_config", "detector", "fit_attack", "test_attack"))
    if trial_ids is not None:
        wanted = list(trial_ids) if isinstance(trial_ids, (list, tuple, set, frozenset)) else [trial_ids]
        df = df[df["trial_id"].isin(wanted)].reset_index(drop=True)
    return df


def detector_config_of(row) -> dict:
    """The stored detector config of one row, as a dict."""
    return json.loads(row["detector_config"])


__all__ = [
    "DEFAULT_DETECTOR_METHODS", "DETECTION_DIR", "DETECTION_SCHEMA", "detection_done", "detection_path",
    "load_detection", "plan_hash", "run_detection_stage", "trial_detection_plan", "validate_detection_spec",
]
