"""The detection plan: which detectors run on a trial, against which attacks, on which examples.

What a spec asks for (optional field ``detection``, per dataset; validated by
:func:`validate_detection_spec`, defaults in brackets)::

    detection:
      mnist:
        detectors: [kd, lid, er1, er2]          # er_core.detect.DETECTORS
        attacks:                                 # [er_core.detect.paper_attacks(dataset)]
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

A plan's :meth:`DetectionPlan.to_dict` is what its rows record (``detection_config``) and
what names its file (``grid.store.layout.plan_hash``). No pandas or pyarrow here: a spec is
validated without the store.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Optional

from er_core.attack_spec import AttackSpec
from grid.common.fingerprint import canonical_json

from .fields import (
    attack_item, attack_spec, check_keys, finite_float, in_datasets, int_at_least, name_list, one_of, positive_int,
)

# The paper's pairing (Section 4.5.1): KD and LID on an undefended net, ER1/ER2 on ER-Classifier.
DEFAULT_DETECTOR_METHODS: dict[str, tuple[str, ...]] = {
    "kd": ("none",),
    "lid": ("none",),
    "er1": ("er", "er_minus", "er_trades"),
    "er2": ("er", "er_minus", "er_trades"),
}
# Fewest test examples a plan may use: set I (fit) and set II (test) each need some.
MIN_EXAMPLES = 10


@dataclass(frozen=True)
class DetectionPlan:
    """One dataset's (or one trial's) validated detection plan; see the module docstring.

    ``attacks``: one AttackSpec per attack name (the tables are keyed by attack); ``configs``:
    detector → config overrides; ``methods``: detector → the methods whose trials run it.
    """

    detectors: tuple
    attacks: tuple
    n: Optional[int] = None
    split_seed: int = 0
    fit_fraction: float = 0.2
    batch_size: int = 256
    overbound: str = "project"
    configs: dict = field(default_factory=dict)
    methods: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-able dict: rows record its canonical JSON, files are named by its hash."""
        return {
            "detectors": list(self.detectors), "attacks": [a.to_dict() for a in self.attacks],
            "n": self.n, "split_seed": self.split_seed, "fit_fraction": self.fit_fraction,
            "batch_size": self.batch_size, "overbound": self.overbound,
            "configs": {k: dict(v) for k, v in self.configs.items()},
            "methods": {k: list(v) for k, v in self.methods.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "DetectionPlan":
        """Inverse of :meth:`to_dict` for a plan validated before (a trial config read back)."""
        check_keys("detection_plan", d, required=("detectors", "attacks"), optional=PLAN_KEYS[2:])
        return cls(**{
            **d, "detectors": tuple(d["detectors"]),
            "attacks": tuple(a if isinstance(a, AttackSpec) else AttackSpec.from_dict(a) for a in d["attacks"]),
            "configs": {k: dict(v) for k, v in (d.get("configs") or {}).items()},
            "methods": {k: tuple(v) for k, v in (d.get("methods") or {}).items()},
        })

    def for_method(self, method: str) -> Optional["DetectionPlan"]:
        """The plan a trial of ``method`` runs: the detectors paired with it, or None."""
        detectors = tuple(d for d in self.detectors if method in self.methods[d])
        if not detectors:
            return None
        return dataclasses.replace(
            self, detectors=detectors,
            configs={k: v for k, v in self.configs.items() if k in detectors},
            methods={k: v for k, v in self.methods.items() if k in detectors},
        )

    def attack_eps(self) -> dict[str, float]:
        """attack name → its ε (C&W: the RMS-ℓ2 bound)."""
        return {a.attack: a.eps for a in self.attacks}


PLAN_KEYS = tuple(f.name for f in dataclasses.fields(DetectionPlan))


def validate_detection_spec(raw, datasets: Iterable[str], methods: Iterable[str],
                            hyperparams: Optional[dict] = None) -> Optional[dict]:
    """Normalise the spec's ``detection`` field; ``ValueError("spec.detection...: ...")`` on errors.

    Returns None for None, else {dataset: :class:`DetectionPlan`} with every default filled.
    ``hyperparams`` (spec.hyperparams, method → dict) lets it check KD's dropout.
    """
    if raw is None:
        return None
    datasets, methods = tuple(datasets), tuple(methods)
    if not isinstance(raw, dict) or not raw:
        raise ValueError("spec.detection: expected a dict dataset → {detectors, attacks, ...}")
    out = {}
    for dataset, plan in raw.items():
        in_datasets("detection", dataset, datasets)
        out[dataset] = _validated_plan(f"detection.{dataset}", dataset, plan, methods, hyperparams)
    return out


def trial_detection_plan(validated: Optional[dict], dataset: str, method: str) -> Optional[DetectionPlan]:
    """The plan one trial runs: its dataset's plan cut to the detectors for ``method``, or None."""
    if not validated or dataset not in validated:
        return None
    return validated[dataset].for_method(method)


def _validated_plan(where: str, dataset: str, plan, methods: tuple, hyperparams: Optional[dict]) -> DetectionPlan:
    from er_core import detect
    from er_core.dataset_info import info

    if isinstance(plan, DetectionPlan):
        plan = plan.to_dict()
    if not isinstance(plan, dict):
        raise ValueError(f"spec.{where}: expected a dict, got {plan!r}")
    check_keys(f"spec.{where}", plan, required=PLAN_KEYS[:1], optional=PLAN_KEYS[1:])
    detectors = name_list(f"{where}.detectors", plan["detectors"], detect.DETECTORS, "detector")
    attacks = _attacks(where, dataset, plan.get("attacks"), detect)
    defaults = DetectionPlan(detectors, attacks)
    n = plan.get("n", defaults.n)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < MIN_EXAMPLES):
        raise ValueError(f"spec.{where}.n: expected null or an integer ≥ {MIN_EXAMPLES}, got {n!r}")
    test_size = info(dataset).test_size
    if n is not None and n > test_size:
        raise ValueError(f"spec.{where}.n: {n} examples requested but {dataset!r} has {test_size} test examples")
    split_seed = int_at_least(f"{where}.split_seed", plan.get("split_seed", defaults.split_seed), minimum=0)
    fit_fraction = plan.get("fit_fraction", defaults.fit_fraction)
    if isinstance(fit_fraction, bool) or not isinstance(fit_fraction, (int, float)) or not 0 < fit_fraction < 1:
        raise ValueError(f"spec.{where}.fit_fraction: expected a number in (0, 1), got {fit_fraction!r}")
    batch_size = positive_int(f"{where}.batch_size", plan.get("batch_size", defaults.batch_size))
    overbound = one_of(f"{where}.overbound", plan.get("overbound", defaults.overbound), detect.OVERBOUND_POLICIES)
    configs = _configs(where, dataset, plan.get("configs") or {}, detectors, detect)
    method_map = _method_map(where, plan.get("methods"), detectors, methods)
    for name in detectors:
        if not any(m in methods for m in method_map[name]):
            raise ValueError(
                f"spec.{where}.methods.{name}: none of {list(method_map[name])} is in spec.methods "
                f"({', '.join(methods)}), so detector {name!r} would never run"
            )
    if "kd" in detectors and hyperparams is not None:
        for m in method_map["kd"]:
            if m in methods and not float((hyperparams.get(m) or {}).get("dropout", 0.0)) > 0:
                raise ValueError(
                    f"spec.{where}.detectors: kd needs MC dropout, but spec.hyperparams.{m}.dropout is not > 0 "
                    f"(set e.g. hyperparams: {{{m}: {{dropout: 0.5}}}})"
                )
    return DetectionPlan(detectors=detectors, attacks=attacks, n=n, split_seed=split_seed,
                         fit_fraction=float(fit_fraction), batch_size=batch_size, overbound=overbound,
                         configs=configs, methods=method_map)


def _attacks(where: str, dataset: str, raw, detect) -> tuple:
    if raw is None:
        try:
            settings = detect.paper_attacks(dataset)
        except ValueError as err:
            raise ValueError(f"spec.{where}.attacks: missing and {err}") from err
        return tuple(settings.values())  # already AttackSpecs (frozen)
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError(f"spec.{where}.attacks: expected a non-empty list of {{attack, eps, options}}")
    out, seen = [], set()
    for i, item in enumerate(raw):
        name = f"{where}.attacks[{i}]"
        attack, eps, options = attack_item(name, item)
        if attack in seen:
            # Tables are keyed by attack name, so one ε per attack and dataset.
            raise ValueError(f"spec.{name}.attack: {attack!r} appears twice; give each attack once")
        seen.add(attack)
        eps = finite_float(f"{name}.eps", eps, 0.0, 1.0)
        out.append(attack_spec(f"{name}.options", attack, eps, options))
    return tuple(out)


def _configs(where: str, dataset: str, configs, detectors: tuple, detect) -> dict:
    """Detector config overrides, each judged by the detector's own config class."""
    if not isinstance(configs, dict):
        raise ValueError(f"spec.{where}.configs: expected a dict detector → options, got {configs!r}")
    for name, options in configs.items():
        if name not in detectors:
            raise ValueError(f"spec.{where}.configs: detector {name!r} is not in detectors; valid: {', '.join(detectors)}")
        if not isinstance(options, dict):
            raise ValueError(f"spec.{where}.configs.{name}: expected a dict of options, got {options!r}")
        try:
            detect.make(name, dataset=dataset, **options)
        except (ValueError, TypeError) as err:
            raise ValueError(f"spec.{where}.configs.{name}: {err}") from err
        canonical_json(options)
    return {k: dict(v) for k, v in configs.items()}


def _method_map(where: str, raw, detectors: tuple, methods: tuple) -> dict:
    from er_core.methods import METHODS

    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError(f"spec.{where}.methods: expected a dict detector → list of methods, got {raw!r}")
    extra = [k for k in raw if k not in detectors]
    if extra:
        raise ValueError(f"spec.{where}.methods: detector {extra[0]!r} is not in detectors; valid: {', '.join(detectors)}")
    return {name: name_list(f"{where}.methods.{name}", raw.get(name, DEFAULT_DETECTOR_METHODS[name]), METHODS, "method")
            for name in detectors}
