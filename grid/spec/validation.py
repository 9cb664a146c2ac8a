"""Validation of a :class:`grid.spec.GridSpec`: every field checked and normalised in place
(lists → tuples, ε/λ → float, ranges → explicit ε lists, per-dataset defaults filled) before
the spec exists, each mistake one ``ValueError("spec.<field>: ...")``.

The per-field checks are :mod:`grid.spec.fields`; the detection and codes fields are checked
by :mod:`grid.spec.detection_plan` and :mod:`grid.spec.codes_plan`.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Optional

from er_core.dataset_info import INFO as DATASETS
from grid.common.fingerprint import canonical_json

from .checks import check_hyperparam_values
from .codes_plan import validate_codes_spec
from .detection_plan import validate_detection_spec
from .models_plan import validate_models_spec
from .storage import storage_refusal
from .fields import (
    DEFAULT_RESOURCES, RESOURCE_KEYS, attack_item, attack_spec, eps_list, eps_values, finite_float, in_datasets,
    int_at_least, name_list, no_duplicates, non_empty_list, positive_int, resources, seed_value,
)

# Starts with a letter: a Hive directory "experiment=2024" would be read back as an integer.
# Matched whole (fullmatch): with ``match``, "$" also matches before a trailing newline.
EXPERIMENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,99}")
# Most trials one spec may expand to (the paper's grid has 60): counted from the axes before
# anything is expanded, so 40,000 seeds are one error at once.
MAX_TRIALS = 10_000
# Which checkpoint the post-training stages evaluate (TrialConfig.evaluate).
EVALUATE_CHOICES = ("last", "best_validation")
# λ and training ε are grid axes, never per-method hyperparameters.
AXIS_HYPERPARAMS = ("lam", "train_eps")


def methods_module():
    """er_core.methods, imported when a spec is validated or expanded (it imports torch; a spec
    module that does not lets its errors be read without paying for that)."""
    import er_core.methods as methods

    return methods


def validate_spec(spec) -> None:
    """Check and normalise every field of ``spec`` (a GridSpec being built) in place; raise
    ``ValueError("spec.<field>: ...")`` on the first problem."""
    set_ = functools.partial(object.__setattr__, spec)

    if not isinstance(spec.experiment, str) or not EXPERIMENT_NAME.fullmatch(spec.experiment):
        raise ValueError(
            f"spec.experiment: {spec.experiment!r} is not a valid name; use letters, digits, "
            "'_', '.', '-' (starting with a letter, at most 100 characters)"
        )

    set_("datasets", name_list("datasets", spec.datasets, DATASETS, "dataset"))

    methods = methods_module()
    set_("methods", _methods(spec, methods))
    adv_methods = [m for m in spec.methods if methods.uses_train_eps(m)]
    lam_methods = [m for m in spec.methods if methods.uses_lambda(m)]

    set_("epochs", positive_int("epochs", spec.epochs))
    set_("batch_size", positive_int("batch_size", spec.batch_size))
    set_("eval_batch_size", positive_int("eval_batch_size", spec.eval_batch_size))
    set_("eval_seed", seed_value("eval_seed", spec.eval_seed))
    set_("num_nodes", positive_int("num_nodes", spec.num_nodes))
    set_("max_failures", int_at_least("max_failures", spec.max_failures, minimum=-1))

    set_("seeds", _seeds(spec))

    set_("train_eps", _train_eps(spec, adv_methods))
    set_("lams", _lams(spec, lam_methods))
    _check_trial_count(spec, adv_methods, lam_methods)
    set_("hyperparams", _hyperparams(spec, methods))
    set_("eval_n", _eval_n(spec))
    set_("eval_plan", _eval_plan(spec))
    set_("resources", _resources_by_dataset(spec))
    set_("detection", validate_detection_spec(spec.detection, spec.datasets, spec.methods, spec.hyperparams))
    for dataset, plan in (spec.detection or {}).items():
        seed_value(f"detection.{dataset}.split_seed", plan.split_seed)
    set_("codes", validate_codes_spec(spec.codes, spec.datasets))
    set_("validation_n", _validation_n(spec))
    set_("models", validate_models_spec(spec.models, spec.datasets))
    if spec.evaluate not in EVALUATE_CHOICES:
        raise ValueError(f"spec.evaluate: {spec.evaluate!r} is not one of {', '.join(EVALUATE_CHOICES)}")
    if spec.evaluate == "best_validation" and not all(spec.validation_n.values()):
        empty = [d for d, n in spec.validation_n.items() if not n]
        raise ValueError(f"spec.evaluate: best_validation needs a validation split; validation_n is 0 for "
                         f"{', '.join(empty)}")
    if spec.keep_checkpoints is not None:
        set_("keep_checkpoints", positive_int("keep_checkpoints", spec.keep_checkpoints))

    if not isinstance(spec.storage_path, str) or not spec.storage_path:
        raise ValueError(f"spec.storage_path: expected a non-empty path or URI, got {spec.storage_path!r}")
    if not isinstance(spec.shared_storage, bool):
        raise ValueError(f"spec.shared_storage: expected true or false, got {spec.shared_storage!r}")
    refusal = storage_refusal(spec.storage_path, spec.num_nodes, spec.shared_storage)
    if refusal:
        raise ValueError(f"spec.storage_path: {refusal}")
    if spec.data_root is not None and (not isinstance(spec.data_root, str) or not spec.data_root):
        raise ValueError(f"spec.data_root: expected a path string or null, got {spec.data_root!r}")


def _methods(spec, methods) -> tuple:
    """Built-in method names, or plugins (er_core.methods.plugins): each plugin imported once and
    its contract checked on every dataset of the spec, before anything runs."""
    from er_core.methods.plugins import check_contract, entry_point_names

    names = non_empty_list("methods", spec.methods)
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"spec.methods: expected method names, got {name!r}")
    no_duplicates("methods", names)
    for name in names:
        if methods.is_builtin(name):
            continue
        if ":" not in name and name not in entry_point_names():
            raise ValueError(f"spec.methods: unknown method {name!r}; valid: {', '.join(sorted(methods.METHODS))}, "
                             "or a plugin: 'module:Class' or an er_grid.methods entry point (README)")
        try:
            cls = methods.method_class(name)
            for dataset in spec.datasets:
                check_contract(cls, name, dataset)
        except ValueError as err:
            raise ValueError(f"spec.methods: {err}") from err
    return names


def _seeds(spec):
    """A list of seeds for every dataset, or a dict dataset → list (datasets left out: [0])."""
    def one_list(where: str, value) -> tuple:
        seeds = non_empty_list(where, value)
        if len(seeds) > MAX_TRIALS:
            raise ValueError(f"spec.{where}: {len(seeds):,} seeds; a spec expands to at most {MAX_TRIALS:,} trials")
        seeds = tuple(seed_value(f"{where}[{i}]", s) for i, s in enumerate(seeds))
        no_duplicates(where, seeds)
        return seeds

    if not isinstance(spec.seeds, dict):
        return one_list("seeds", spec.seeds)
    unknown = sorted(set(spec.seeds) - set(spec.datasets))
    if unknown:
        raise ValueError(f"spec.seeds: {unknown} not in spec.datasets; valid: {', '.join(spec.datasets)}")
    return {d: one_list(f"seeds.{d}", spec.seeds[d]) if d in spec.seeds else (0,) for d in spec.datasets}


def _check_trial_count(spec, adv_methods: list, lam_methods: list) -> None:
    """The number of trials :meth:`GridSpec.expand` would make, counted from the axes; one
    error naming it when above :data:`MAX_TRIALS`."""
    count = 0
    for dataset in spec.datasets:
        seeds = len(spec.seeds[dataset] if isinstance(spec.seeds, dict) else spec.seeds)
        for method in spec.methods:
            eps = len(spec.train_eps[dataset]) if method in adv_methods else 1
            lams = len(spec.lams) if method in lam_methods else 1
            count += eps * lams * seeds
    if count > MAX_TRIALS:
        raise ValueError(f"spec.seeds: datasets × methods × train_eps × lams × seeds give {count:,} trials; "
                         f"a spec expands to at most {MAX_TRIALS:,}")


def _validation_n(spec) -> dict:
    """dataset → training images held out for validation (default: the dataset's validation_size)."""
    raw = spec.validation_n
    if raw is not None and not isinstance(raw, dict):
        raw = {d: raw for d in spec.datasets}
    raw = raw or {}
    unknown = sorted(set(raw) - set(spec.datasets))
    if unknown:
        raise ValueError(f"spec.validation_n: {unknown} not in spec.datasets; valid: {', '.join(spec.datasets)}")
    out = {}
    for d in spec.datasets:
        n = raw.get(d, DATASETS[d].validation_size)
        out[d] = int_at_least(f"validation_n.{d}", n, minimum=0)
        if out[d] >= DATASETS[d].train_size:
            raise ValueError(f"spec.validation_n.{d}: {n} is not below the training set's "
                             f"{DATASETS[d].train_size} images")
    return out


def _train_eps(spec, adv_methods: list) -> dict:
    raw = spec.train_eps
    if raw is None:
        raw = {}
    if isinstance(raw, (list, tuple)):
        raw = {d: raw for d in spec.datasets}
    if not isinstance(raw, dict):
        raise ValueError(f"spec.train_eps: expected a dict dataset → list of ε (or one list), got {raw!r}")
    out = {}
    for dataset, values in raw.items():
        in_datasets("train_eps", dataset, spec.datasets)
        out[dataset] = eps_list(f"train_eps.{dataset}", values)
    if adv_methods:
        missing = [d for d in spec.datasets if d not in out]
        if missing:
            raise ValueError(
                f"spec.train_eps: no training ε for dataset(s) {missing}, but method(s) "
                f"{adv_methods} train on adversarial examples"
            )
    return out


def _lams(spec, lam_methods: list) -> Optional[tuple]:
    """λ values as floats ≥ 0; None when the spec gives none (allowed only without λ methods)."""
    if spec.lams is None:
        if lam_methods:
            raise ValueError(f"spec.lams: missing, but method(s) {lam_methods} use λ; give a list of λ values")
        return None
    values = non_empty_list("lams", spec.lams)
    lams = tuple(finite_float(f"lams[{i}]", v, minimum=0.0) for i, v in enumerate(values))
    no_duplicates("lams", lams)
    return lams


def _hyperparams(spec, methods) -> dict:
    raw = spec.hyperparams or {}
    if not isinstance(raw, dict):
        raise ValueError(f"spec.hyperparams: expected a dict method → dict of hyperparameters, got {raw!r}")
    out = {}
    for method, params in raw.items():
        where = f"hyperparams.{method}"
        if method not in spec.methods:
            raise ValueError(
                f"spec.hyperparams: method {method!r} is not in spec.methods; valid: {', '.join(spec.methods)}"
            )
        if not isinstance(params, dict):
            raise ValueError(f"spec.{where}: expected a dict of hyperparameters, got {params!r}")
        axis = [k for k in params if k in AXIS_HYPERPARAMS]
        if axis:
            raise ValueError(
                f"spec.{where}: {axis} are grid axes; set them with spec.lams / spec.train_eps"
            )
        valid = set(methods.defaults(method)) - set(AXIS_HYPERPARAMS)
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ValueError(f"spec.{where}: unknown hyperparameter(s) {unknown}; valid: {', '.join(sorted(valid))}")
        check_hyperparam_values(where, method, spec.datasets[0], params)
        canonical_json(params)  # raises on values that cannot be part of a trial_id
        out[method] = dict(params)
    return out


def _eval_n(spec) -> Any:
    raw = spec.eval_n
    per = raw if isinstance(raw, dict) else {d: raw for d in spec.datasets}
    for dataset in per:
        in_datasets("eval_n", dataset, spec.datasets)
    out = {}
    for dataset in spec.datasets:
        if dataset not in per:
            raise ValueError(f"spec.eval_n: no subset size for dataset {dataset!r}")
        n = positive_int(f"eval_n.{dataset}" if isinstance(raw, dict) else "eval_n", per[dataset])
        size = DATASETS[dataset].test_size
        if n > size:
            raise ValueError(
                f"spec.eval_n: {n} examples requested but dataset {dataset!r} has {size} test examples"
            )
        out[dataset] = n
    return out if isinstance(raw, dict) else out[spec.datasets[0]]


def _eval_plan(spec) -> dict:
    """dataset → tuple of AttackSpecs, ranges expanded, each (attack, ε) once per dataset."""
    raw = spec.eval_plan
    if not isinstance(raw, dict) or not raw:
        raise ValueError("spec.eval_plan: expected a dict dataset → list of {attack, eps, options}")
    out = {}
    for dataset, items in raw.items():
        in_datasets("eval_plan", dataset, spec.datasets)
        items = non_empty_list(f"eval_plan.{dataset}", items)
        plan, seen = [], set()
        for i, item in enumerate(items):
            where = f"eval_plan.{dataset}[{i}]"
            attack, raw_eps, options = attack_item(where, item)
            for eps in eps_values(f"{where}.eps", raw_eps):
                if (attack, eps) in seen:
                    raise ValueError(f"spec.{where}: attack {attack!r} at ε={eps} appears twice for {dataset!r}")
                seen.add((attack, eps))
                plan.append(attack_spec(f"{where}.options", attack, eps, options))
        out[dataset] = tuple(plan)
    missing = [d for d in spec.datasets if d not in out]
    if missing:
        raise ValueError(f"spec.eval_plan: no evaluation plan for dataset(s) {missing}")
    return out


def _resources_by_dataset(spec) -> dict:
    raw = spec.resources
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"spec.resources: expected {{cpu, gpu}} or a dict dataset → {{cpu, gpu}}, got {raw!r}")
    if raw and set(raw) <= set(RESOURCE_KEYS):
        raw = {d: raw for d in spec.datasets}
    out = {}
    for dataset, res in raw.items():
        if dataset not in spec.datasets:
            raise ValueError(
                f"spec.resources: {dataset!r} is neither a resource ({', '.join(RESOURCE_KEYS)}) nor a "
                f"dataset in spec.datasets ({', '.join(spec.datasets)})"
            )
        out[dataset] = resources(f"resources.{dataset}", res)
    for dataset in spec.datasets:
        out.setdefault(dataset, dict(DEFAULT_RESOURCES))
    return out
