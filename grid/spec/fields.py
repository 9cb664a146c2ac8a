"""Field validators shared by every part of a grid spec (the spec itself, its evaluation plan,
the detection and codes plans).

Each takes the field's dotted name without the ``spec.`` prefix (``"eval_plan.mnist[0].eps"``),
returns the normalised value and raises one ``ValueError("spec.<name>: ...")`` naming what is
wrong, so every mistake in a spec reads the same way wherever it is checked. No torch, pandas or
pyarrow at import: registries are imported when a field that needs them is checked.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

from er_core.attack_spec import AttackSpec
from grid.common.fingerprint import canonical_json

from .checks import SEED_LIMIT, eps_range_count

RESOURCE_KEYS = ("cpu", "gpu")
DEFAULT_RESOURCES = {"cpu": 1, "gpu": 0}
# Decimal places kept for ε values built from ranges: 0.025 * 3 must be 0.075, not
# 0.07500000000000001, or the same ε would hash differently in a list and in a range.
EPS_DECIMALS = 12
ATTACK_ITEM_KEYS = ("attack", "eps", "options")
# Ray keeps resource amounts in units of 1/10,000: a smaller share is rounded to 0 and fails
# inside Ray, so a cpu or gpu share below it is refused here.
RESOURCE_GRANULARITY = 1e-4


def check_keys(where: str, d: dict, *, required: Iterable[str], optional: Iterable[str] = ()) -> None:
    """Unknown or missing keys of mapping ``d`` → ValueError naming ``<where>.<key>``.

    ``where`` is the full prefix (``"spec.codes"``, ``"eval_item"``): this check also serves
    records that are not spec fields.
    """
    valid = tuple(required) + tuple(optional)
    unknown = [k for k in d if k not in valid]
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field; valid: {', '.join(valid)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{where}.{missing[0]}: missing required field")


def non_empty_list(name: str, value) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"spec.{name}: expected a non-empty list, got {value!r}")
    if not value:
        raise ValueError(f"spec.{name}: empty; give at least one value")
    return tuple(value)


def no_duplicates(name: str, values: tuple) -> None:
    # One count over the values (a list of 40,000 seeds must answer at once, not in n² steps).
    dupes = sorted((v for v, count in Counter(values).items() if count > 1), key=str)
    if dupes:
        raise ValueError(f"spec.{name}: duplicate value(s) {dupes}")


def name_list(name: str, value, registry, kind: str) -> tuple:
    """A non-empty list of distinct names of ``registry`` (e.g. methods, detectors)."""
    values = non_empty_list(name, value)
    for v in values:
        if v not in registry:
            raise ValueError(f"spec.{name}: unknown {kind} {v!r}; valid: {', '.join(sorted(registry))}")
    no_duplicates(name, values)
    return values


def in_datasets(name: str, dataset, datasets) -> None:
    """A per-dataset key of field ``name`` must be one of the spec's ``datasets``."""
    if dataset not in datasets:
        raise ValueError(f"spec.{name}: dataset {dataset!r} is not in spec.datasets; valid: {', '.join(datasets)}")


def int_at_least(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"spec.{name}: expected an integer ≥ {minimum}, got {value!r}")
    return int(value)


def positive_int(name: str, value) -> int:
    return int_at_least(name, value, minimum=1)


def seed_value(name: str, value) -> int:
    """An integer in [0, 2**32): what every RNG a trial seeds accepts."""
    value = int_at_least(name, value, minimum=0)
    if value >= SEED_LIMIT:
        raise ValueError(f"spec.{name}: {value!r} is not below 2**32 ({SEED_LIMIT}); a seed is a 32-bit value")
    return value


def finite_float(name: str, value, minimum: float = -math.inf, maximum: float = math.inf) -> float:
    """A finite number in [minimum, maximum] (bools refused), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"spec.{name}: expected a finite number, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"spec.{name}: {value!r} is outside [{minimum}, {maximum}]")
    return float(value)


def one_of(name: str, value, valid: Iterable[str]) -> str:
    valid = tuple(valid)
    if value not in valid:
        raise ValueError(f"spec.{name}: {value!r}; valid: {', '.join(valid)}")
    return value


def eps_list(name: str, values) -> tuple:
    """Distinct ε values in [0, 1], rounded to :data:`EPS_DECIMALS` places."""
    values = non_empty_list(name, values)
    out = tuple(round(finite_float(f"{name}[{i}]", v, 0.0, 1.0), EPS_DECIMALS) for i, v in enumerate(values))
    no_duplicates(name, out)
    return out


def eps_values(name: str, value) -> tuple:
    """ε list from a number, a list or an inclusive range ``{start, stop, step}``, each in [0, 1]."""
    if isinstance(value, dict):
        check_keys(f"spec.{name}", value, required=("start", "stop", "step"))
        start = finite_float(f"{name}.start", value["start"], 0.0, 1.0)
        stop = finite_float(f"{name}.stop", value["stop"], 0.0, 1.0)
        step = finite_float(f"{name}.step", value["step"])
        if step <= 0:
            raise ValueError(f"spec.{name}.step: must be > 0, got {step!r}")
        if stop < start:
            raise ValueError(f"spec.{name}: stop {stop!r} < start {start!r}")
        # Inclusive of stop (the paper's sweeps "0 to 0.4 step 0.025" include 0.4).
        count = eps_range_count(f"spec.{name}", start, stop, step)
        return tuple(round(start + i * step, EPS_DECIMALS) for i in range(count))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    return eps_list(name, value)


def attack_item(name: str, item) -> tuple[str, object, dict]:
    """(attack, raw ε, options) of one ``{attack, eps, options}`` item (or an AttackSpec):
    keys, the attack's name and the options' form checked; ε is left to the caller (a list or
    range in an evaluation plan, one number in a detection plan)."""
    if isinstance(item, AttackSpec):
        item = item.to_dict()
    if not isinstance(item, dict):
        raise ValueError(f"spec.{name}: expected {{attack, eps, options}}, got {item!r}")
    check_keys(f"spec.{name}", item, required=ATTACK_ITEM_KEYS[:2], optional=ATTACK_ITEM_KEYS[2:])
    from er_core.attacks import ATTACKS

    attack = item["attack"]
    if attack not in ATTACKS:
        raise ValueError(f"spec.{name}.attack: unknown attack {attack!r}; valid: {', '.join(sorted(ATTACKS))}")
    options = item.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"spec.{name}.options: expected a dict, got {options!r}")
    canonical_json(options)  # raises on values that cannot be hashed into a config
    return attack, item["eps"], dict(options)


def attack_spec(name: str, attack: str, eps: float, options: dict) -> AttackSpec:
    """The AttackSpec, once the attack's own constructor has judged the option names and values."""
    spec = AttackSpec(attack, eps, options)
    try:
        spec.build()
    except (ValueError, TypeError) as err:
        raise ValueError(f"spec.{name}: {err}") from err
    return spec


def resources(name: str, res) -> dict:
    """``{cpu, gpu}`` for one trial: cpu > 0; a fractional gpu must divide 1 (Ray packs them)."""
    if not isinstance(res, dict):
        raise ValueError(f"spec.{name}: expected {{cpu, gpu}}, got {res!r}")
    unknown = [k for k in res if k not in RESOURCE_KEYS]
    if unknown:
        raise ValueError(f"spec.{name}: unknown resource(s) {unknown}; valid: {', '.join(RESOURCE_KEYS)}")
    cpu = finite_float(f"{name}.cpu", res.get("cpu", DEFAULT_RESOURCES["cpu"]))
    gpu = finite_float(f"{name}.gpu", res.get("gpu", DEFAULT_RESOURCES["gpu"]))
    if cpu <= 0:
        raise ValueError(f"spec.{name}.cpu: must be > 0, got {cpu!r}")
    if gpu < 0:
        raise ValueError(f"spec.{name}.gpu: must be ≥ 0, got {gpu!r}")
    for kind, amount in (("cpu", cpu), ("gpu", gpu)):
        if 0 < amount < RESOURCE_GRANULARITY:
            raise ValueError(f"spec.{name}.{kind}: {amount!r} is below Ray's smallest share "
                             f"{RESOURCE_GRANULARITY} (it would be rounded to 0)")
    if 0 < gpu < 1:
        # Ray packs fractional GPUs; 0.3 would leave an unusable 0.1 on every card.
        per_card = 1.0 / gpu
        if abs(per_card - round(per_card)) > 1e-9:
            raise ValueError(
                f"spec.{name}.gpu: fraction {gpu!r} does not divide 1 exactly (1/gpu = {per_card:.4g}); "
                "use 1/k such as 0.5, 0.25, 0.2"
            )
    elif gpu > 1 and not gpu.is_integer():
        raise ValueError(f"spec.{name}.gpu: more than one GPU must be a whole number, got {gpu!r}")
    return {"cpu": int(cpu) if cpu.is_integer() else cpu, "gpu": int(gpu) if gpu.is_integer() else gpu}


def plain(value):
    """Tuples → lists and records with ``to_dict`` → dicts, recursively, for YAML/JSON round trips."""
    if hasattr(value, "to_dict"):
        return plain(value.to_dict())
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
