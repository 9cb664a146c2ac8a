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
computes) and the post-training ``detection`` and ``codes`` stages, so it is stable across
runs, machines and Python versions.

YAML fields (defaults in brackets)::

    experiment: paper              # [A-Za-z][A-Za-z0-9_.-]* (it becomes a directory name)
    datasets: [mnist, cifar10]     # er_core.data.INFO
    methods: [none, madry, er]     # er_core.methods.METHODS
    train_eps: {mnist: [0.3], cifar10: [0.03]}   # per dataset; needed where a method trains on
                                                 # adversarial examples; a list = every dataset
    lams: [1.0]                    # λ, needed where a method uses it
    seeds: [0]                     # [[0]]; or per dataset {mnist: [0, 1, 2], cifar10: [0]}
                                   # (datasets left out: [0])
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
    shared_storage: false          # [false]; true: storage_path is a folder every node mounts at the
                                   # same path (NFS, Lustre, GPFS), so num_nodes > 1 may use it
                                   # (never under /tmp, /var/tmp, /dev/shm, /run; grid/spec/storage.py)
    data_root: /data               # [None]
    num_nodes: 1                   # [1]
    max_failures: 3                # [3]
    detection: {...}               # optional detection stage per dataset (grid/detection_plan.py)
    codes: true                    # [false]; the code z under PGD for Figures 5/6, by default at the
                                   # swept ε nearest 50% PGD accuracy (grid/spec/codes_plan.py)
    keep_checkpoints: 3            # [3]; checkpoints kept per trial, newest first (null: all)
    validation_n: {mnist: 5000}    # [each dataset's validation_size]; training images held out
                                   # (er_core.validation); int or per-dataset dict; 0 = none
    evaluate: last                 # [last]; or best_validation: the stages evaluate the epoch
                                   # with the best PGD accuracy on the validation split
    models: [{name, factory, weights, dataset}]  # [none]; models trained elsewhere, evaluated
                                   # only (grid/spec/models_plan.py)

Recipes (optimiser, lr schedule, weight decay, augmentation) are per dataset
(``er_core.recipes``) and a method hyperparameter (``hyperparams: {madry: {recipe: adam}}``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from er_core.attack_spec import AttackSpec
from er_core.dataset_info import info
from grid.common.fingerprint import short_hash

from .checks import load_yaml
from .codes_plan import CodesPlan, check_codes_against_plan, trial_codes_plan
from .detection_plan import DetectionPlan, trial_detection_plan
from .models_plan import METHOD_PREFIX, model_identity
from .fields import check_keys, plain
from .validation import methods_module, validate_spec

__all__ = ["GridSpec", "TrialConfig"]


# ----------------------------------------------------------------------------- trial config


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs: what to train, how long, and how to evaluate it.

    ``train_eps``/``lam`` are ``None`` for methods that do not use them. ``eval_plan`` is the
    ordered tuple of :class:`er_core.attack_spec.AttackSpec` for this trial's dataset; the subset is
    ``er_core.data.eval_indices(dataset, eval_n, eval_seed)`` cut into ``eval_batch_size``
    batches numbered from 0. ``resources`` ({cpu, gpu}), ``data_root``, ``detection`` and
    ``codes`` are not part of ``trial_id``.
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
    detection: Optional[DetectionPlan] = None
    # The codes stage for the t-SNE figures (grid.stages.codes), likewise run on the trained model:
    # PGD at an ε fixed here or chosen from the trial's PGD rows (grid.spec.codes_plan).
    codes: Optional[CodesPlan] = None
    # The training recipe's name (er_core.recipes; the method's ``recipe`` hyperparameter, else the
    # dataset's), the validation split's size (er_core.validation: taken out of the training
    # set) and which checkpoint the stages evaluate: the last epoch's or the best on validation.
    recipe: Optional[str] = None
    validation_n: int = 0
    evaluate: str = "last"
    # A plugin method's code identity (er_core.methods.plugins.plugin_identity: qualified name,
    # distribution version, source hash), None for a built-in: hashed, so a changed plugin is a
    # new trial, and recorded, so status/query/report never need to import the plugin.
    method_identity: Optional[dict] = None
    # An external model's weights file (grid.spec.models_plan): where its trial reads it, not what
    # it computes (the file's sha256 is in method_identity), so not part of trial_id.
    weights: Optional[str] = None

    # Fields that say where a trial runs or what is run after training, not what training
    # and the evaluation plan compute: left out of trial_id.
    _NOT_HASHED = ("resources", "data_root", "detection", "codes", "weights")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (Tune's ``param_space``); inverse of :meth:`from_dict`."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["hyperparams"] = dict(self.hyperparams)
        d["resources"] = dict(self.resources)
        d["eval_plan"] = [item.to_dict() for item in self.eval_plan]
        if self.detection is not None:
            d["detection"] = self.detection.to_dict()
        if self.codes is not None:
            d["codes"] = self.codes.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrialConfig":
        _check_fields("trial_config", cls, d)
        values = dict(d)
        values["eval_plan"] = tuple(_attack_spec(item) for item in d["eval_plan"])
        if isinstance(d.get("detection"), dict):
            values["detection"] = DetectionPlan.from_dict(d["detection"])
        if isinstance(d.get("codes"), dict):
            values["codes"] = CodesPlan.from_dict(d["codes"])
        values["hyperparams"] = dict(d["hyperparams"])
        values["resources"] = dict(d["resources"])
        return cls(**values)

    @functools.cached_property
    def trial_id(self) -> str:
        """10 hex digits of sha256 over the canonical JSON of the config without ``_NOT_HASHED``,
        with the recipe's settings beside its name (a recipe changed in the registry is a new trial)."""
        payload = {k: v for k, v in self.to_dict().items() if k not in self._NOT_HASHED}
        payload["recipe_settings"] = self.recipe_settings()
        return short_hash(payload, 10)

    def recipe_settings(self) -> dict:
        """The recipe's settings (er_core.recipes) as a plain dict."""
        from er_core.recipes import trial_recipe

        return trial_recipe(self.dataset, {"recipe": self.recipe, **self.hyperparams}).to_dict()

    @property
    def name(self) -> str:
        """Readable, unique trial name: ``digits-madry-eps0.3-lamna-s0-1a2b3c``."""
        # A plugin's "module:Class" has characters a folder name should not carry.
        method = re.sub(r"[^A-Za-z0-9_.-]", "_", self.method)
        return (
            f"{self.dataset}-{method}-eps{_fmt(self.train_eps)}-lam{_fmt(self.lam)}"
            f"-s{self.seed}-{self.trial_id[:6]}"
        )

    def method_hyperparams(self) -> dict:
        """Keyword arguments for ``er_core.methods.make``: hyperparams plus λ / train ε where set.

        The trial's seed also seeds the weight initialisation (unless the spec sets
        ``init_seed``), so results over seeds vary the initial weights, not only the batch order.
        """
        merged = {"init_seed": self.seed, **self.hyperparams}
        if self.recipe is not None:
            merged["recipe"] = self.recipe
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


def _check_fields(where: str, cls, d: dict) -> None:
    """Unknown or missing fields of dataclass ``cls`` in ``d`` → ValueError naming ``<where>.<key>``.
    Required fields are those without a default; the defaults live on the dataclass only."""
    fields = dataclasses.fields(cls)
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    check_keys(where, d, required=required, optional=[f.name for f in fields if f.name not in required])


def _attack_spec(item) -> AttackSpec:
    """One evaluation item of a trial config read back (e.g. from Tune's ``param_space``)."""
    if isinstance(item, AttackSpec):
        return item
    check_keys("eval_item", item, required=("attack", "eps"), optional=("options",))
    return AttackSpec.from_dict(item)


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return "na"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


# ----------------------------------------------------------------------------- grid spec


@dataclass(frozen=True)
class GridSpec:
    """A validated grid: see the module docstring for fields and defaults.

    Construction normalises (lists → tuples, ε/λ → float, ranges → explicit ε lists,
    per-dataset defaults filled) and validates; an invalid spec never exists. Once built,
    ``eval_plan`` maps dataset → tuple of AttackSpecs and ``detection`` dataset →
    :class:`grid.spec.DetectionPlan`.
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
    # The storage_path folder is mounted by every node at the same path (grid.spec.storage).
    shared_storage: bool = False
    data_root: Optional[str] = None
    num_nodes: int = 1
    max_failures: int = 3
    detection: Optional[dict] = None
    codes: Any = False
    # Checkpoints Tune keeps per trial, the newest: the default 3 leaves the final one plus the
    # two before it (a fallback if the newest was cut short). Every epoch's would be hundreds
    # of GB on the paper grid's VGG19 trials. None keeps all.
    keep_checkpoints: Optional[int] = 3
    validation_n: Any = None
    evaluate: str = "last"
    models: Any = None

    def __post_init__(self) -> None:
        self.validate()

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict) -> "GridSpec":
        """Build from a plain dict (e.g. parsed YAML); unknown or missing fields raise ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"spec: expected a mapping of fields, got {type(d).__name__}")
        _check_fields("spec", cls, d)
        return cls(**d)

    @classmethod
    def from_yaml(cls, path) -> "GridSpec":
        """Read a YAML spec file (safe loader; a key given twice is an error) and validate it."""
        text = Path(path).read_text()
        return cls.from_dict(load_yaml(text, str(path)))

    def to_dict(self) -> dict:
        """Normalised plain dict; ``GridSpec.from_dict(spec.to_dict()) == spec``."""
        return plain({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    # -- validation -----------------------------------------------------------------------

    def validate(self) -> None:
        """Check and normalise every field (:func:`grid.spec.validation.validate_spec`); raise
        ``ValueError("spec.<field>: ...")`` on the first problem."""
        validate_spec(self)
        # The codes plan's "half" rule chooses among the evaluation plan's PGD ε: checked once
        # both fields are normalised.
        check_codes_against_plan(self.codes, self.eval_plan)

    # -- expansion ------------------------------------------------------------------------

    def eval_n_for(self, dataset: str) -> int:
        return self.eval_n[dataset] if isinstance(self.eval_n, dict) else self.eval_n

    def model_trial(self, entry: dict) -> TrialConfig:
        """The trial of one ``models:`` entry: evaluated, never trained (epochs 0)."""
        dataset = entry["dataset"]
        return TrialConfig(
            experiment=self.experiment, dataset=dataset, method=METHOD_PREFIX + entry["name"], train_eps=None,
            lam=None, seed=0, epochs=0, batch_size=self.batch_size, hyperparams={}, eval_plan=self.eval_plan[dataset],
            eval_n=self.eval_n_for(dataset), eval_seed=self.eval_seed, eval_batch_size=self.eval_batch_size,
            resources=dict(self.resources[dataset]), data_root=self.data_root, recipe=info(dataset).recipe,
            method_identity=model_identity(entry), weights=entry["weights"],
        )

    def seeds_for(self, dataset: str) -> tuple:
        return self.seeds.get(dataset, (0,)) if isinstance(self.seeds, dict) else self.seeds

    def expand(self) -> list[TrialConfig]:
        """All trials, in dataset → method → train ε → λ → seed order; trial_ids are unique."""
        methods = methods_module()
        from er_core.methods.plugins import plugin_identity

        identities = {m: None if methods.is_builtin(m) else plugin_identity(m) for m in self.methods}
        trials = []
        for dataset in self.datasets:
            plan = self.eval_plan[dataset]
            for method in self.methods:
                eps_axis = self.train_eps[dataset] if methods.uses_train_eps(method) else (None,)
                lam_axis = self.lams if methods.uses_lambda(method) else (None,)
                for train_eps in eps_axis:
                    for lam in lam_axis:
                        for seed in self.seeds_for(dataset):
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
                                    codes=trial_codes_plan(self.codes, dataset, plan),
                                    recipe=self.hyperparams.get(method, {}).get("recipe") or info(dataset).recipe,
                                    validation_n=self.validation_n[dataset],
                                    evaluate=self.evaluate,
                                    method_identity=identities[method],
                                )
                            )
        trials += [self.model_trial(entry) for entry in self.models]
        ids = [t.trial_id for t in trials]
        # Axes are de-duplicated at validation, so a collision here is a bug (or a hash clash).
        assert len(set(ids)) == len(ids), "GridSpec.expand produced duplicate trials"
        return trials
