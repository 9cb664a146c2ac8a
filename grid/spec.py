"""The grid specification: which trials run, and the typed config each trial receives.

A :class:`GridSpec` comes from YAML (``GridSpec.from_yaml(path)``) or a dict
(``GridSpec.from_dict(d)``) and is validated when it is built: every mistake raises one
``ValueError`` naming the field, e.g. ``spec.methods: unknown method 'foo'; valid: ...``.

``GridSpec.expand()`` turns it into :class:`TrialConfig`s, the product

    datasets × methods × training ε × λ × seeds

where λ multiplies only methods with ``er_core.methods.uses_lambda(m)`` and training ε only
methods with ``uses_train_eps(m)`` (the others get ``None``), so no two trials are the same.
``TrialConfig.trial_id`` is the first 10 hex digits of sha256 over the canonical JSON of the
config without ``resources`` and ``data_root`` (they say where a trial runs, not what it
computes), so it is stable across runs, machines and Python versions.

YAML fields (defaults in brackets)::

    experiment: paper              # [A-Za-z][A-Za-z0-9_.-]* (it becomes a directory name)
    datasets: [mnist, cifar10]     # er_core.data.INFO
    methods: [none, madry, er]     # er_core.methods.METHODS
    train_eps: {mnist: [0.3], cifar10: [0.03]}   # per dataset; needed where a method trains on
                                                 # adversarial examples; a list = every dataset
    lams: [1.0]                    # λ, needed where a method uses it
    seeds: [0]                     # [[0]]
    epochs: 30
    batch_size: 128                # [128]
    hyperparams: {er: {lr: 0.001}} # per method, keys of er_core.methods.defaults(m) [{}]
    eval_plan:                     # per dataset: attacks with ε lists or inclusive ranges
      mnist:
        - {attack: pgd, eps: {start: 0.0, stop: 0.4, step: 0.025}, options: {steps: 40}}
        - {attack: autoattack, eps: [0.3]}
    eval_n: 1000                   # [1000]; int or per-dataset dict; ≤ the test set size
    eval_seed: 0                   # [0]
    eval_batch_size: 250           # [250]
    resources: {mnist: {cpu: 2, gpu: 0.25}}  # per dataset or one {cpu, gpu} for all
                                             # [{cpu: 1, gpu: 0}]; fractional gpu must divide 1
    storage_path: s3://bucket/er   # ["results"]; local path or URI; shared storage when num_nodes > 1
    data_root: /data               # [None]
    num_nodes: 1                   # [1]
    max_failures: 3                # [3]
    detection: {...}               # optional detection stage per dataset (grid/detection.py)
    codes: true                    # [false]; the code z under PGD for Figures 5/6 (grid/codes.py)
    keep_checkpoints: 3            # [3]; checkpoints kept per trial, newest first (null: all)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional


from .codes import trial_codes_plan, validate_codes_spec
from .detection import trial_detection_plan, validate_detection_spec
from .fingerprint import canonical_json, short_hash
from .spec_checks import check_hyperparam_values, eps_range_count, load_yaml

# Starts with a letter: a Hive directory "experiment=2024" would be read back as an integer.
EXPERIMENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
RESOURCE_KEYS = ("cpu", "gpu")
DEFAULT_RESOURCES = {"cpu": 1, "gpu": 0}
# λ and training ε are grid axes, never per-method hyperparameters.
AXIS_HYPERPARAMS = ("lam", "train_eps")
# Decimal places kept for ε values built from ranges: 0.025 * 3 must be 0.075, not
# 0.07500000000000001, or the same ε would hash differently in a list and in a range.
EPS_DECIMALS = 12



# ----------------------------------------------------------------------------- registries
# Imported lazily: er_core.methods and er_core.attacks import torch, and a spec should be
# inspectable (and its errors readable) without paying for that at module import.


def _methods_module():
    import er_core.methods as methods

    if not hasattr(methods, "METHODS"):
        raise RuntimeError("er_core.methods has no METHODS registry (package incomplete)")
    return methods


def _attack_registry() -> dict:
    from er_core.attacks import ATTACKS

    return ATTACKS


def _dataset_registry() -> dict:
    from er_core.data import INFO

    return INFO


# ----------------------------------------------------------------------------- trial config


@dataclass(frozen=True)
class EvalItem:
    """One (attack, ε) evaluation of a trained model; ``options`` go to ``er_core.attacks.make``."""

    attack: str
    eps: float
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"attack": self.attack, "eps": self.eps, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict) -> "EvalItem":
        _check_keys("eval_item", d, required=("attack", "eps"), optional=("options",))
        return cls(attack=d["attack"], eps=float(d["eps"]), options=dict(d.get("options") or {}))


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs: what to train, how long, and how to evaluate it.

    ``train_eps``/``lam`` are ``None`` for methods that do not use them. ``eval_plan`` is the
    ordered (attack, ε, options) list for this trial's dataset; the subset is
    ``er_core.data.eval_indices(dataset, eval_n, eval_seed)`` cut into ``eval_batch_size``
    batches numbered from 0. ``resources`` ({cpu, gpu}) and ``data_root`` are not part of
    ``trial_id``.
    """

    experiment: str
    dataset: str
    method: str
    train_eps: Optional[float]
    lam: Optional[float]
    seed: int
    epochs: int
    batch_size: int
    hyperparams: dict
    eval_plan: tuple
    eval_n: int
    eval_seed: int
    eval_batch_size: int
    resources: dict
    data_root: Optional[str] = None
    # The detection stage runs on the trained model; adding it must not retrain a
    # trial, and its rows carry their own fingerprint, so it is not part of trial_id.
    detection: Optional[dict] = None
    # The codes stage for the t-SNE figures (grid.codes), likewise run on the trained model.
    codes: Optional[dict] = None

    # Fields that say where a trial runs or what is run after training, not what training
    # and the evaluation plan compute: left out of trial_id.
    _NOT_HASHED = ("resources", "data_root", "detection", "codes")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (Tune's ``param_space``); inverse of :meth:`from_dict`."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["hyperparams"] = dict(self.hyperparams)
        d["resources"] = dict(self.resources)
        d["eval_plan"] = [item.to_dict() for item in self.eval_plan]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrialConfig":
        names = [f.name for f in dataclasses.fields(cls)]
        optional = ("data_root", "detection", "codes")
        _check_keys("trial_config", d, required=[n for n in names if n not in optional],
                    optional=optional)
        values = dict(d)
        values["eval_plan"] = tuple(
            item if isinstance(item, EvalItem) else EvalItem.from_dict(item) for item in d["eval_plan"]
        )
        values["hyperparams"] = dict(d["hyperparams"])
        values["resources"] = dict(d["resources"])
        return cls(**values)

    @functools.cached_property
    def trial_id(self) -> str:
        """10 hex digits of sha256 over the canonical JSON of the config (no resources/data_root)."""
        payload = {k: v for k, v in self.to_dict().items() if k not in self._NOT_HASHED}
        return short_hash(payload, 10)

    @property
    def name(self) -> str:
        """Readable, unique trial name: ``digits-madry-eps0.3-lamna-s0-1a2b3c``."""
        return (
            f"{self.dataset}-{self.method}-eps{_fmt(self.train_eps)}-lam{_fmt(self.lam)}"
            f"-s{self.seed}-{self.trial_id[:6]}"
        )

    def method_hyperparams(self) -> dict:
        """Keyword arguments for ``er_core.methods.make``: hyperparams plus λ / train ε where set.

        The trial's seed also seeds the weight initialisation (unless the spec sets
        ``init_seed``), so results over seeds vary the initial weights, not only the batch order.
        """
        merged = {"init_seed": self.seed, **self.hyperparams}
        if self.lam is not None:
            merged["lam"] = self.lam
        if self.train_eps is not None:
            merged["train_eps"] = self.train_eps
        return merged

    @property
    def num_eval_batches(self) -> int:
        """Batches per (attack, ε): ceil(eval_n / eval_batch_size)."""
        return -(-self.eval_n // self.eval_batch_size)

    def eval_batches(self) -> list[tuple[str, float, int]]:
        """Every (attack, ε, batch) this trial writes; compare with ``ResultStore.done_batches``."""
        return [
            (item.attack, item.eps, b) for item in self.eval_plan for b in range(self.num_eval_batches)
        ]


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return "na"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


# ----------------------------------------------------------------------------- grid spec


@dataclass(frozen=True)
class GridSpec:
    """A validated grid: see the module docstring for fields and defaults.

    Construction normalises (lists → tuples, ε/λ → float, ranges → explicit ε lists,
    per-dataset defaults filled) and validates; an invalid spec never exists.
    """

    experiment: str
    datasets: tuple
    methods: tuple
    epochs: int
    eval_plan: dict
    train_eps: Optional[dict] = None
    lams: Optional[tuple] = None
    seeds: tuple = (0,)
    batch_size: int = 128
    hyperparams: Optional[dict] = None
    eval_n: Any = 1000
    eval_seed: int = 0
    eval_batch_size: int = 250
    resources: Optional[dict] = None
    storage_path: str = "results"
    data_root: Optional[str] = None
    num_nodes: int = 1
    max_failures: int = 3
    detection: Optional[dict] = None
    codes: Any = False
    # Checkpoints Tune keeps per trial, the newest: the default 3 leaves the final one plus the
    # two before it (a fallback if the newest was cut short). Every epoch's would be hundreds
    # of GB on the paper grid's VGG19 trials. None keeps all.
    keep_checkpoints: Optional[int] = 3

    def __post_init__(self) -> None:
        self.validate()

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict) -> "GridSpec":
        """Build from a plain dict (e.g. parsed YAML); unknown or missing fields raise ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"spec: expected a mapping of fields, got {type(d).__name__}")
        # Required fields are those without a default; the defaults live on the dataclass only.
        fields = dataclasses.fields(cls)
        required = [f.name for f in fields if f.default is dataclasses.MISSING]
        _check_keys("spec", d, required=required, optional=[f.name for f in fields if f.name not in required])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path) -> "GridSpec":
        """Read a YAML spec file (safe loader; a key given twice is an error) and validate it."""
        text = Path(path).read_text()
        return cls.from_dict(load_yaml(text, str(path)))

    def to_dict(self) -> dict:
        """Normalised plain dict; ``GridSpec.from_dict(spec.to_dict()) == spec``."""
        return _plain({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    # -- validation -----------------------------------------------------------------------

    def validate(self) -> None:
        """Check and normalise every field; raise ``ValueError("spec.<field>: ...")`` on the first problem."""
        set_ = functools.partial(object.__setattr__, self)

        if not isinstance(self.experiment, str) or not EXPERIMENT_NAME.match(self.experiment):
            raise ValueError(
                f"spec.experiment: {self.experiment!r} is not a valid name; use letters, digits, "
                "'_', '.', '-' (starting with a letter, at most 100 characters)"
            )

        datasets_info = _dataset_registry()
        set_("datasets", _name_list("datasets", self.datasets, datasets_info, "dataset"))

        methods = _methods_module()
        set_("methods", _name_list("methods", self.methods, methods.METHODS, "method"))
        adv_methods = [m for m in self.methods if methods.uses_train_eps(m)]
        lam_methods = [m for m in self.methods if methods.uses_lambda(m)]

        set_("epochs", _positive_int("epochs", self.epochs))
        set_("batch_size", _positive_int("batch_size", self.batch_size))
        set_("eval_batch_size", _positive_int("eval_batch_size", self.eval_batch_size))
        set_("eval_seed", _int("eval_seed", self.eval_seed, minimum=0))
        set_("num_nodes", _positive_int("num_nodes", self.num_nodes))
        set_("max_failures", _int("max_failures", self.max_failures, minimum=-1))

        seeds = _non_empty_list("seeds", self.seeds)
        seeds = tuple(_int(f"seeds[{i}]", s, minimum=0) for i, s in enumerate(seeds))
        _no_duplicates("seeds", seeds)
        set_("seeds", seeds)

        set_("train_eps", self._validated_train_eps(adv_methods))
        set_("lams", self._validated_lams(lam_methods))
        set_("hyperparams", self._validated_hyperparams(methods))
        set_("eval_n", self._validated_eval_n(datasets_info))
        set_("eval_plan", self._validated_eval_plan())
        set_("resources", self._validated_resources())
        set_("detection", validate_detection_spec(self.detection, self.datasets, self.methods, self.hyperparams))
        set_("codes", validate_codes_spec(self.codes, self.datasets))
        if self.keep_checkpoints is not None:
            set_("keep_checkpoints", _positive_int("keep_checkpoints", self.keep_checkpoints))

        if not isinstance(self.storage_path, str) or not self.storage_path:
            raise ValueError(f"spec.storage_path: expected a non-empty path or URI, got {self.storage_path!r}")
        if self.num_nodes > 1 and not is_shared_storage(self.storage_path):
            raise ValueError(
                f"spec.storage_path: {self.storage_path!r} is a local path but num_nodes="
                f"{self.num_nodes}; multi-node runs need shared storage (an object-store URI "
                "such as s3://bucket/prefix or gs://bucket/prefix)"
            )
        if self.data_root is not None and (not isinstance(self.data_root, str) or not self.data_root):
            raise ValueError(f"spec.data_root: expected a path string or null, got {self.data_root!r}")


    def _validated_train_eps(self, adv_methods: list) -> dict:
        raw = self.train_eps
        if raw is None:
            raw = {}
        if isinstance(raw, (list, tuple)):
            raw = {d: raw for d in self.datasets}
        if not isinstance(raw, dict):
            raise ValueError(f"spec.train_eps: expected a dict dataset → list of ε (or one list), got {raw!r}")
        out = {}
        for dataset, values in raw.items():
            if dataset not in self.datasets:
                raise ValueError(
                    f"spec.train_eps: dataset {dataset!r} is not in spec.datasets; valid: {', '.join(self.datasets)}"
                )
            out[dataset] = _eps_list(f"train_eps.{dataset}", values)
        if adv_methods:
            missing = [d for d in self.datasets if d not in out]
            if missing:
                raise ValueError(
                    f"spec.train_eps: no training ε for dataset(s) {missing}, but method(s) "
                    f"{adv_methods} train on adversarial examples"
                )
        return out

    def _validated_lams(self, lam_methods: list) -> Optional[tuple]:
        """λ values as floats ≥ 0; None when the spec gives none (allowed only without λ methods)."""
        if self.lams is None:
            if lam_methods:
                raise ValueError(f"spec.lams: missing, but method(s) {lam_methods} use λ; give a list of λ values")
            return None
        values = _non_empty_list("lams", self.lams)
        lams = tuple(_finite_float(f"lams[{i}]", v, minimum=0.0) for i, v in enumerate(values))
        _no_duplicates("lams", lams)
        return lams

    def _validated_hyperparams(self, methods) -> dict:
        raw = self.hyperparams or {}
        if not isinstance(raw, dict):
            raise ValueError(f"spec.hyperparams: expected a dict method → dict of hyperparameters, got {raw!r}")
        out = {}
        for method, params in raw.items():
            where = f"hyperparams.{method}"
            if method not in self.methods:
                raise ValueError(
                    f"spec.hyperparams: method {method!r} is not in spec.methods; valid: {', '.join(self.methods)}"
                )
            if not isinstance(params, dict):
                raise ValueError(f"spec.{where}: expected a dict of hyperparameters, got {params!r}")
            axis = [k for k in params if k in AXIS_HYPERPARAMS]
            if axis:
                raise ValueError(
                    f"spec.{where}: {axis} are grid axes; set them with spec.lams / spec.train_eps"
                )
            defaults = getattr(methods, "defaults", None)
            if defaults is not None:
                valid = set(defaults(method)) - set(AXIS_HYPERPARAMS)
                unknown = sorted(set(params) - valid)
                if unknown:
                    raise ValueError(
                        f"spec.{where}: unknown hyperparameter(s) {unknown}; valid: {', '.join(sorted(valid))}"
                    )
            check_hyperparam_values(where, method, self.datasets[0], params)
            canonical_json(params)  # raises on values that cannot be part of a trial_id
            out[method] = dict(params)
        return out

    def _validated_eval_n(self, datasets_info: dict) -> Any:
        raw = self.eval_n
        per = raw if isinstance(raw, dict) else {d: raw for d in self.datasets}
        for dataset in per:
            if dataset not in self.datasets:
                raise ValueError(
                    f"spec.eval_n: dataset {dataset!r} is not in spec.datasets; valid: {', '.join(self.datasets)}"
                )
        out = {}
        for dataset in self.datasets:
            if dataset not in per:
                raise ValueError(f"spec.eval_n: no subset size for dataset {dataset!r}")
            n = _positive_int(f"eval_n.{dataset}" if isinstance(raw, dict) else "eval_n", per[dataset])
            size = datasets_info[dataset].test_size
            if n > size:
                raise ValueError(
                    f"spec.eval_n: {n} examples requested but dataset {dataset!r} has {size} test examples"
                )
            out[dataset] = n
        return out if isinstance(raw, dict) else out[self.datasets[0]]

    def _validated_eval_plan(self) -> dict:
        raw = self.eval_plan
        if not isinstance(raw, dict) or not raw:
            raise ValueError("spec.eval_plan: expected a dict dataset → list of {attack, eps, options}")
        attacks = _attack_registry()
        out = {}
        for dataset, items in raw.items():
            if dataset not in self.datasets:
                raise ValueError(
                    f"spec.eval_plan: dataset {dataset!r} is not in spec.datasets; valid: {', '.join(self.datasets)}"
                )
            items = _non_empty_list(f"eval_plan.{dataset}", items)
            plan, seen = [], set()
            for i, item in enumerate(items):
                where = f"eval_plan.{dataset}[{i}]"
                if isinstance(item, EvalItem):
                    item = item.to_dict()
                if not isinstance(item, dict):
                    raise ValueError(f"spec.{where}: expected {{attack, eps, options}}, got {item!r}")
                _check_keys(f"spec.{where}", item, required=("attack", "eps"), optional=("options",))
                attack = item["attack"]
                if attack not in attacks:
                    raise ValueError(
                        f"spec.{where}.attack: unknown attack {attack!r}; valid: {', '.join(sorted(attacks))}"
                    )
                options = item.get("options") or {}
                if not isinstance(options, dict):
                    raise ValueError(f"spec.{where}.options: expected a dict, got {options!r}")
                canonical_json(options)
                for eps in _eps_values(f"{where}.eps", item["eps"]):
                    if (attack, eps) in seen:
                        raise ValueError(f"spec.{where}: attack {attack!r} at ε={eps} appears twice for {dataset!r}")
                    seen.add((attack, eps))
                    _check_attack_options(f"{where}.options", attack, eps, options)
                    plan.append({"attack": attack, "eps": eps, "options": dict(options)})
            out[dataset] = plan
        missing = [d for d in self.datasets if d not in out]
        if missing:
            raise ValueError(f"spec.eval_plan: no evaluation plan for dataset(s) {missing}")
        return out

    def _validated_resources(self) -> dict:
        raw = self.resources
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ValueError(f"spec.resources: expected {{cpu, gpu}} or a dict dataset → {{cpu, gpu}}, got {raw!r}")
        if raw and set(raw) <= set(RESOURCE_KEYS):
            raw = {d: raw for d in self.datasets}
        out = {}
        for dataset, res in raw.items():
            if dataset not in self.datasets:
                raise ValueError(
                    f"spec.resources: {dataset!r} is neither a resource ({', '.join(RESOURCE_KEYS)}) nor a "
                    f"dataset in spec.datasets ({', '.join(self.datasets)})"
                )
            out[dataset] = _resources(f"resources.{dataset}", res)
        for dataset in self.datasets:
            out.setdefault(dataset, dict(DEFAULT_RESOURCES))
        return out

    # -- expansion ------------------------------------------------------------------------

    def eval_n_for(self, dataset: str) -> int:
        return self.eval_n[dataset] if isinstance(self.eval_n, dict) else self.eval_n

    def expand(self) -> list[TrialConfig]:
        """All trials, in dataset → method → train ε → λ → seed order; trial_ids are unique."""
        methods = _methods_module()
        trials = []
        for dataset in self.datasets:
            plan = tuple(EvalItem(**item) for item in self.eval_plan[dataset])
            for method in self.methods:
                eps_axis = self.train_eps[dataset] if methods.uses_train_eps(method) else (None,)
                lam_axis = self.lams if methods.uses_lambda(method) else (None,)
                for train_eps in eps_axis:
                    for lam in lam_axis:
                        for seed in self.seeds:
                            trials.append(
                                TrialConfig(
                                    experiment=self.experiment,
                                    dataset=dataset,
                                    method=method,
                                    train_eps=train_eps,
                                    lam=lam,
                                    seed=seed,
                                    epochs=self.epochs,
                                    batch_size=self.batch_size,
                                    hyperparams=dict(self.hyperparams.get(method, {})),
                                    eval_plan=plan,
                                    eval_n=self.eval_n_for(dataset),
                                    eval_seed=self.eval_seed,
                                    eval_batch_size=self.eval_batch_size,
                                    resources=dict(self.resources[dataset]),
                                    data_root=self.data_root,
                                    detection=trial_detection_plan(self.detection, dataset, method),
                                    codes=trial_codes_plan(self.codes, dataset),
                                )
                            )
        ids = [t.trial_id for t in trials]
        # Axes are de-duplicated at validation, so a collision here is a bug (or a hash clash).
        assert len(set(ids)) == len(ids), "GridSpec.expand produced duplicate trials"
        return trials


# ----------------------------------------------------------------------------- helpers


def is_shared_storage(path: str) -> bool:
    """True for object-store / remote URIs (``scheme://`` other than ``file://``)."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() not in ("file", "local")


def _check_keys(where: str, d: dict, *, required: Iterable[str], optional: Iterable[str] = ()) -> None:
    """Unknown or missing keys of mapping ``d`` → ValueError naming ``<where>.<key>``."""
    valid = tuple(required) + tuple(optional)
    unknown = [k for k in d if k not in valid]
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field; valid: {', '.join(valid)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{where}.{missing[0]}: missing required field")


def _non_empty_list(name: str, value) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError(f"spec.{name}: expected a non-empty list, got {value!r}")
    if not value:
        raise ValueError(f"spec.{name}: empty; give at least one value")
    return tuple(value)


def _no_duplicates(name: str, values: tuple) -> None:
    dupes = sorted({v for v in values if values.count(v) > 1}, key=str)
    if dupes:
        raise ValueError(f"spec.{name}: duplicate value(s) {dupes}")


def _name_list(name: str, value, registry: dict, kind: str) -> tuple:
    values = _non_empty_list(name, value)
    for v in values:
        if v not in registry:
            raise ValueError(f"spec.{name}: unknown {kind} {v!r}; valid: {', '.join(sorted(registry))}")
    _no_duplicates(name, values)
    return values


def _int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"spec.{name}: expected an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _positive_int(name: str, value) -> int:
    return _int(name, value, minimum=1)


def _finite_float(name: str, value, minimum: float = -math.inf, maximum: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"spec.{name}: expected a finite number, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"spec.{name}: {value!r} is outside [{minimum}, {maximum}]")
    return float(value)


def _eps_list(name: str, values) -> tuple:
    values = _non_empty_list(name, values)
    out = tuple(round(_finite_float(f"{name}[{i}]", v, 0.0, 1.0), EPS_DECIMALS) for i, v in enumerate(values))
    _no_duplicates(name, out)
    return out


def _eps_values(name: str, value) -> tuple:
    """ε list from a list or an inclusive range ``{start, stop, step}``, each in [0, 1]."""
    if isinstance(value, dict):
        _check_keys(f"spec.{name}", value, required=("start", "stop", "step"))
        start = _finite_float(f"{name}.start", value["start"], 0.0, 1.0)
        stop = _finite_float(f"{name}.stop", value["stop"], 0.0, 1.0)
        step = _finite_float(f"{name}.step", value["step"])
        if step <= 0:
            raise ValueError(f"spec.{name}.step: must be > 0, got {step!r}")
        if stop < start:
            raise ValueError(f"spec.{name}: stop {stop!r} < start {start!r}")
        # Inclusive of stop (the paper's sweeps "0 to 0.4 step 0.025" include 0.4); the small
        # tolerance absorbs float error in (stop - start) / step.
        count = eps_range_count(f"spec.{name}", start, stop, step)
        return tuple(round(start + i * step, EPS_DECIMALS) for i in range(count))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    return _eps_list(name, value)


def _check_attack_options(name: str, attack: str, eps: float, options: dict) -> None:
    """Let the attack's own constructor judge option names and values."""
    from er_core.attacks import make

    try:
        make(attack, eps, **options)
    except (ValueError, TypeError) as err:
        raise ValueError(f"spec.{name}: {err}") from err


def _resources(name: str, res) -> dict:
    if not isinstance(res, dict):
        raise ValueError(f"spec.{name}: expected {{cpu, gpu}}, got {res!r}")
    unknown = [k for k in res if k not in RESOURCE_KEYS]
    if unknown:
        raise ValueError(f"spec.{name}: unknown resource(s) {unknown}; valid: {', '.join(RESOURCE_KEYS)}")
    cpu = _finite_float(f"{name}.cpu", res.get("cpu", DEFAULT_RESOURCES["cpu"]))
    gpu = _finite_float(f"{name}.gpu", res.get("gpu", DEFAULT_RESOURCES["gpu"]))
    if cpu <= 0:
        raise ValueError(f"spec.{name}.cpu: must be > 0, got {cpu!r}")
    if gpu < 0:
        raise ValueError(f"spec.{name}.gpu: must be ≥ 0, got {gpu!r}")
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


def _plain(value):
    """Tuples → lists, recursively, for YAML/JSON round trips."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
