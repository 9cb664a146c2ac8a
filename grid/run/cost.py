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


@dataclass(frozen=True)
class TrialCost:
    """One trial's estimate: GPU-seconds of training and evaluation, bytes on storage."""

    train_seconds: float
    eval_seconds: float
    checkpoint_bytes: float
    results_bytes: float

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
    train = trial.epochs * epoch * (1.0 + PGD_STEP_COST * training_steps(trial))
    per_pass = PGD_STEP_COST * epoch / dataset.train_size
    evaluation = 0.0
    # Each attack states its own passes per example from its settings (Attack.gradient_passes).
    for item in trial.eval_plan:
        evaluation += trial.eval_n * item.build().gradient_passes() * per_pass
    if trial.codes is not None:  # one PGD run over the subset for the t-SNE figures
        evaluation += trial.eval_n * trial.codes.build().gradient_passes() * per_pass
    kept = trial.epochs if keep_checkpoints is None else min(keep_checkpoints, trial.epochs)
    checkpoint = kept * model_parameters(trial.dataset) * 4 * 3 * CHECKPOINT_OVERHEAD
    rows = len(trial.eval_plan) * trial.eval_n * ROW_BYTES
    if trial.codes is not None:
        code_dim = trial.hyperparams.get("code_dim") or dataset.code_dim  # the trial's own k if it sets one
        rows += trial.eval_n * 2 * 4 * int(code_dim)
    return TrialCost(train, evaluation, checkpoint, rows)


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
