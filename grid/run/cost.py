"""What a grid will cost before it runs: GPU time, wall time on G GPUs, and storage.

Per-epoch costs (``epoch_seconds`` of each ``er_core.dataset_info`` record) are measurements,
not guesses: on one NVIDIA H200, batch 128, data on the GPU, a clean training epoch took 1.1 s on MNIST (small CNN) and 3.0 s on CIFAR10 (VGG19-style
net); a PGD-40 epoch on MNIST ≈ 28 s and a PGD-7 epoch on CIFAR10 ≈ 15 s. Both adversarial
figures fit ``clean × (1 + PGD_STEP_COST × steps)`` with ``PGD_STEP_COST`` = 0.6 (one attack
step is a forward and backward pass without the optimiser, ~0.6 of a training step):
1.1 × (1 + 0.6 × 40) = 27.5 s, 3.0 × (1 + 0.6 × 7) = 15.6 s. STL10 and Tiny ImageNet use the
CIFAR10 net, scaled by images × pixels per epoch (5,000 × 9 and 100,000 × 4 CIFAR-sized
images); digits is scaled from MNIST. An evaluation pass over one example costs the same
attack step. Good to a factor of ~2 on other hardware: :func:`calibrate` rescales them from a
finished experiment's trial rows (the seconds of every trained epoch are recorded).

What runs after training is counted in those passes (forward + backward; a forward-only pass is
:data:`FORWARD_PASS` of one), from what each piece states and what the trial's model is:

- each attack's ``gradient_passes()``, times the passes of one forward of the trial's model in
  eval mode (:func:`model_passes`: a randomized model such as RSE averages its ``ensemble``
  noisy passes in every forward, so every attack query costs the whole ensemble); AutoAttack on
  a randomized model runs its ``rand`` suite instead of the standard one (APGD-CE and APGD-DLR,
  each gradient an expectation over ``eot_iter`` noisy passes), priced from the settings of the
  pyautoattack object the wrapper builds (:func:`attack_passes`);
- the verdicts (:func:`verdict_passes`): ``er_core.evaluate.judge`` over ``passes_for(model)``
  forwards, clean and adversarial, per evaluated example and attack, and once more for the trial
  row's clean accuracy;
- the detection stage (:func:`detection_passes`): every attack of the plan crafted on set I and
  set II (``plan.n`` examples, or the whole test set) and labelled, then per detector its
  ``reference_passes()`` over the training images it keeps and its ``feature_passes()`` over
  the natural and every adversarial set. Its scikit-learn side (KDE, logistic regression) runs
  on CPUs and is not GPU time.

Storage: each kept checkpoint holds the model's weights and Adam's two moment buffers
(3 × 4 bytes per parameter, plus 10 % for the critic and RNG state, which are small next to
the encoder); result rows take ~:data:`ROW_BYTES` each in parquet; the codes stage
4 bytes × code size × 2 images per example.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional

from er_core.dataset_info import INFO, info

if TYPE_CHECKING:
    from grid.spec import TrialConfig

ASSUMED_GPU = "NVIDIA H200 (141 GB), batch 128, data on the GPU"
PGD_STEP_COST = 0.6
DEFAULT_PGD_STEPS = 10  # adversarial training inner steps when the method does not say
CHECKPOINT_OVERHEAD = 1.1
ROW_BYTES = 60  # parquet bytes per example row, measured on the smoke grid's store (dictionary-encoded strings)
# A forward-only pass in the unit of Attack.gradient_passes (one forward + backward pass): the
# attack contract (er_core.attacks.base) counts a forward-only query as a third of one.
FORWARD_PASS = 1.0 / 3.0
# The method hyperparameter through which a randomized method (RSE) sets how many noisy passes its
# eval-mode forward averages (er_core.nets.ERNet.forward); the number itself is the method's Param.
ENSEMBLE_PARAM = "ensemble"
# The pyautoattack sub-attacks of a suite that run as its ``apgd`` object (CE and DLR losses).
APGD_SUBATTACKS = ("apgd-ce", "apgd-dlr")


@dataclass(frozen=True)
class TrialCost:
    """One trial's estimate: GPU-seconds of training and of everything after it (``eval_seconds``:
    evaluation, trial row, codes and detection stages; ``detection_seconds`` is the detection
    stage's share of it), bytes on storage."""

    train_seconds: float
    eval_seconds: float
    checkpoint_bytes: float
    results_bytes: float
    detection_seconds: float = 0.0

    @property
    def gpu_seconds(self) -> float:
        return self.train_seconds + self.eval_seconds


def training_steps(trial: "TrialConfig") -> int:
    """PGD steps per training batch (0 for clean training)."""
    if trial.train_eps is None:
        return 0
    steps = trial.hyperparams.get("pgd_steps")
    return default_training_steps(trial.method, trial.dataset) if steps is None else int(steps)


def default_training_steps(method: str, dataset: str) -> int:
    """The method's own PGD steps per training batch on ``dataset`` (:data:`DEFAULT_PGD_STEPS`
    when it declares none)."""
    from er_core.methods import defaults

    steps = defaults(method, dataset).get("pgd_steps")
    return DEFAULT_PGD_STEPS if steps is None else int(steps)


def trial_cost(trial: "TrialConfig", epoch_seconds: Optional[dict] = None,
               keep_checkpoints: Optional[int] = None) -> TrialCost:
    """Estimate for one trial; ``epoch_seconds``: clean-epoch table (default :func:`epoch_table`,
    or :func:`calibrate`'s); ``keep_checkpoints``: checkpoints kept (None: one per epoch)."""
    dataset = info(trial.dataset)
    epoch = (epoch_seconds or {}).get(dataset.name, dataset.epoch_seconds)
    per_pass = PGD_STEP_COST * epoch / dataset.train_size
    # Training covers the images outside the validation split; every epoch then reads the split
    # once clean and once under PGD-10 (er_core.validation, which imports torch: imported here).
    from er_core.validation import VALIDATION_PGD_STEPS

    trained = (dataset.train_size - trial.validation_n) / dataset.train_size
    train = trial.epochs * epoch * (1.0 + PGD_STEP_COST * training_steps(trial)) * trained
    train += trial.epochs * trial.validation_n * (VALIDATION_PGD_STEPS + 2 * FORWARD_PASS) * per_pass
    verdict = verdict_passes(trial)
    passes = trial.eval_n * verdict  # the trial row's clean accuracy
    # Each attack states its own passes per example from its settings (Attack.gradient_passes);
    # every attacked example then gets a clean and an adversarial verdict.
    for item in trial.eval_plan:
        passes += trial.eval_n * (attack_passes(item, trial) + 2 * verdict)
    if trial.codes is not None:  # one PGD run over the subset for the t-SNE figures
        passes += trial.eval_n * attack_passes(trial.codes.priced_attack(trial.eval_plan), trial)
    detection = detection_passes(trial) * per_pass
    kept = trial.epochs if keep_checkpoints is None else min(keep_checkpoints, trial.epochs)
    checkpoint = kept * model_parameters(trial.dataset) * 4 * 3 * CHECKPOINT_OVERHEAD
    rows = len(trial.eval_plan) * trial.eval_n * ROW_BYTES
    if trial.codes is not None:
        code_dim = trial.hyperparams.get("code_dim") or dataset.code_dim  # the trial's own k if it sets one
        rows += trial.eval_n * 2 * 4 * int(code_dim)
    return TrialCost(train, passes * per_pass + detection, checkpoint, rows, detection)


@dataclass(frozen=True)
class ModelPasses:
    """What a trial's trained model costs per use: ``randomized`` (its eval-mode forward is random,
    ``model.randomized``), ``forward`` (passes one eval-mode forward runs: a randomized method's
    ensemble, else 1) and ``judge`` (forwards ``er_core.evaluate.judge`` makes per verdict).
    It carries ``randomized`` under the model's own attribute name, so er_core's rules that read
    only that attribute (``passes_for``, AutoAttack's ``resolved_version``) take it as the model."""

    randomized: bool
    forward: int
    judge: int


def model_passes(trial: "TrialConfig") -> ModelPasses:
    """:class:`ModelPasses` of ``trial``'s model: its method built with the trial's
    hyperparameters (on the meta device, so no weights are made) says whether it is randomized;
    the ensemble is the trial's ``ensemble`` hyperparameter, else the method's default."""
    hyperparams = json.dumps(trial.method_hyperparams(), sort_keys=True, default=repr)
    return _model_passes(trial.method, trial.dataset, hyperparams)


@functools.lru_cache(maxsize=None)
def _model_passes(method: str, dataset: str, hyperparams: str) -> ModelPasses:
    import torch

    from er_core.evaluate import passes_for
    from er_core.methods import defaults, make

    given = json.loads(hyperparams)
    with torch.device("meta"):
        randomized = bool(make(method, dataset, device="meta", **given).randomized)
    forward = 1
    if randomized:
        ensemble = given.get(ENSEMBLE_PARAM)
        ensemble = defaults(method, dataset).get(ENSEMBLE_PARAM) if ensemble is None else ensemble
        forward = 1 if ensemble is None else int(ensemble)
    stand_in = ModelPasses(randomized, forward, 0)
    return ModelPasses(randomized, forward, passes_for(stand_in))


def attack_passes(spec, trial: "TrialConfig") -> float:
    """Forward + backward passes per example that attack ``spec`` (an ``AttackSpec``) spends on
    ``trial``'s model: what the attack states, its ``rand`` suite for AutoAttack where that is
    what runs, times the passes of each forward of the model."""
    from er_core.attacks.autoattack import AutoAttackLinf

    model = model_passes(trial)
    attack = spec.build()
    if isinstance(attack, AutoAttackLinf) and attack.resolved_version(model) == "rand":
        classes = info(trial.dataset).num_classes
        passes = autoattack_suite_passes(attack.eps, "rand", classes)
        passes += eot_probe_passes(attack, trial.eval_batch_size, classes)
    else:
        passes = attack.gradient_passes()
    return passes * model.forward


@functools.lru_cache(maxsize=None)
def _adversary(eps: float, version: str, num_classes: int):
    """The pyautoattack object the wrapper runs (``er_core.attacks.autoattack.build_adversary``),
    built once per setting: its sub-attacks' settings are what the cost counts."""
    import torch

    from er_core.attacks.autoattack import build_adversary

    return build_adversary(torch.nn.Identity(), eps, version, 0, "cpu", num_classes)


def autoattack_suite_passes(eps: float, version: str, num_classes: int) -> float:
    """At most how many forward + backward passes per example pyautoattack's ``version`` suite of
    APGD attacks spends, from the settings of the object the wrapper runs: per sub-attack and
    restart, a start gradient and ``n_iter`` steps, each the mean of ``eot_iter`` gradients. A
    suite with another kind of sub-attack (the standard one's FAB, Square) has no count here: a
    ValueError."""
    adversary = _adversary(eps, version, num_classes)
    others = [name for name in adversary.attacks_to_run if name not in APGD_SUBATTACKS]
    if others:
        raise ValueError(f"cost model: AutoAttack's {version!r} suite runs {others}, whose passes it cannot count; "
                         f"it counts {list(APGD_SUBATTACKS)}")
    apgd = adversary.apgd
    return float(len(adversary.attacks_to_run) * apgd.n_restarts * (apgd.n_iter + 1) * apgd.eot_iter)


def eot_probe_passes(attack, batch_size: int, num_classes: int) -> float:
    """Per evaluated example, at most what AutoAttack's larger-EoT probe spends on a randomized
    model: APGD-CE (one start gradient and ``n_iter`` steps, each over ``eot_probe_iter`` noisy
    passes) on up to ``eot_probe_examples`` of every batch of ``batch_size``."""
    apgd = _adversary(attack.eps, "rand", num_classes).apgd
    share = min(attack.eot_probe_examples, batch_size) / batch_size
    return share * (apgd.n_iter + 1) * attack.eot_probe_iter


def verdict_passes(trial: "TrialConfig") -> float:
    """Passes per example of one verdict on ``trial``'s model: ``er_core.evaluate.judge`` over
    ``passes_for(model)`` forwards, each forward-only."""
    model = model_passes(trial)
    return model.judge * model.forward * FORWARD_PASS


def detection_passes(trial: "TrialConfig") -> float:
    """Forward + backward passes of ``trial``'s detection stage, all examples together (0 without
    a plan): each attack of the plan crafted on set I and set II and its examples labelled, then
    each detector's ``reference_passes()`` per kept training image and ``feature_passes()`` per
    image of the natural sets and of every attack's adversarial sets (``pairs="all"``)."""
    from grid.spec import DetectionPlan

    plan = trial.detection
    if plan is None:
        return 0.0
    if not isinstance(plan, DetectionPlan):
        raise ValueError(f"trial.detection: expected a grid.spec.DetectionPlan or None, got {type(plan).__name__}")
    from er_core import detect

    record = info(trial.dataset)
    n = record.test_size if plan.n is None else plan.n  # set I + set II
    forward = FORWARD_PASS * model_passes(trial).forward
    passes = sum(n * (attack_passes(spec, trial) + forward) for spec in plan.attacks)
    featurised = n * (1 + len(plan.attacks))
    for name in plan.detectors:
        detector = detect.make(name, dataset=trial.dataset, **plan.configs.get(name, {}))
        kept = detector.reference_size(record.train_size)
        passes += (kept * detector.reference_passes() + featurised * detector.feature_passes()) * forward
    return passes


def gpu_hours_estimate(trials: Iterable["TrialConfig"], epoch_seconds: Optional[dict] = None) -> float:
    """Total GPU-hours (full-GPU equivalent) for ``trials``; see the module docstring."""
    return sum(trial_cost(t, epoch_seconds).gpu_seconds for t in trials) / 3600.0


def wall_hours(trials: list, gpus: int, epoch_seconds: Optional[dict] = None) -> float:
    """Wall-clock hours on ``gpus`` GPUs: the work spread evenly, but never less than the
    longest trial (trials do not split across GPUs)."""
    if gpus < 1:
        raise ValueError(f"gpus: expected an integer ≥ 1, got {gpus!r}")
    costs = [trial_cost(t, epoch_seconds).gpu_seconds for t in trials]
    if not costs:
        return 0.0
    return max(sum(costs) / gpus, max(costs)) / 3600.0


def storage_bytes(trials: list, keep_checkpoints: Optional[int]) -> tuple[float, float]:
    """(checkpoint bytes, result bytes) of the whole grid."""
    costs = [trial_cost(t, keep_checkpoints=keep_checkpoints) for t in trials]
    return sum(c.checkpoint_bytes for c in costs), sum(c.results_bytes for c in costs)


@functools.lru_cache(maxsize=None)
def model_parameters(dataset: str) -> int:
    """Parameters of the dataset's inference net (built once per dataset, on CPU)."""
    from er_core.nets import build_model

    return sum(p.numel() for p in build_model(dataset).parameters())


def epoch_table() -> dict:
    """Seconds per clean training epoch on :data:`ASSUMED_GPU`, ``{dataset: seconds}``."""
    return {name: record.epoch_seconds for name, record in INFO.items()}


def calibrate(trials_df, trials: Iterable["TrialConfig"] = ()) -> dict:
    """A clean-epoch table rescaled from measured epochs: ``{dataset: seconds}``.

    trials_df: trial rows of a finished experiment (``grid.store.load_trials``): their
    ``losses_json`` holds the seconds of every trained epoch. An adversarially trained trial's
    epoch is converted back to a clean epoch through ``1 + PGD_STEP_COST × steps`` (its steps
    from ``trials``, the experiment's TrialConfigs, when given; else the method's default).
    Datasets without rows keep :func:`epoch_table`'s. The device of the rows is the GPU then
    assumed; mixing devices averages them.
    """
    configs = {t.trial_id: t for t in trials}
    measured: dict[str, list[float]] = {}
    for row in trials_df.itertuples(index=False):
        seconds = [e.get("seconds") for e in json.loads(row.losses_json) if isinstance(e, dict)]
        seconds = [s for s in seconds if isinstance(s, (int, float)) and math.isfinite(s) and s > 0]
        if not seconds:
            continue
        steps = _steps_of(row, configs.get(row.trial_id))
        clean = sum(seconds) / len(seconds) / (1.0 + PGD_STEP_COST * steps)
        measured.setdefault(row.dataset, []).append(clean)
    table = epoch_table()
    table.update({d: sum(v) / len(v) for d, v in measured.items()})
    return table


def _steps_of(row, config) -> int:
    if config is not None:
        return training_steps(config)
    if row.train_eps is None or (isinstance(row.train_eps, float) and math.isnan(row.train_eps)):
        return 0
    return default_training_steps(row.method, row.dataset)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}"
        n /= 1000.0
    return f"{n:,.1f} TB"
