"""``evaluate_model(model, dataset, storage)`` (``grid.benchmark``): any trained PyTorch model under the grid's evaluation
protocol in one call, in the spirit of RobustBench's ``benchmark()``, but resumable, with one
parquet row per example and the grid's fingerprints.

The model becomes one trial (``epochs`` 0: nothing is trained) of the experiment folder
``<storage>/<name>``: the fixed evaluation subset, its batches and seeds, the evaluation plan
(default: PGD-40 and AutoAttack at the dataset's paper ε), the trial row and the sanity flags,
committed through the project's store exactly as a grid trial's. The checkpoint hash is the
weights' hash, part of the trial's id, so other weights under the same name are another trial.
A second call after an interruption computes only what is not committed and intact. Runs in
this process, without Ray; ``er-grid query``/``report`` read ``<storage>/<name>/results``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Optional

import pandas as pd

EXPERIMENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,99}")


def default_plan(dataset: str) -> list[dict]:
    from er_core.dataset_info import info

    eps = info(dataset).paper_eps
    return [{"attack": "pgd", "eps": [eps], "options": {"steps": 40}}, {"attack": "autoattack", "eps": [eps]}]


def model_trial(name: str, dataset: str, weights_hash: str, eval_plan: Optional[list], n_examples: int,
                eval_seed: int, batch_size: int, normalizes_input: bool):
    """The one-trial spec of a model under evaluation (validated like any spec)."""
    from grid.spec import GridSpec

    if not isinstance(name, str) or not EXPERIMENT_NAME.fullmatch(name):
        raise ValueError(f"name: {name!r} must match {EXPERIMENT_NAME.pattern} (it names the folder and the rows)")
    spec = GridSpec.from_dict({
        "experiment": name, "datasets": [dataset], "methods": ["none"], "epochs": 1,
        "eval_plan": {dataset: eval_plan if eval_plan is not None else default_plan(dataset)},
        "eval_n": n_examples, "eval_seed": eval_seed, "eval_batch_size": batch_size,
        "validation_n": 0,
    })
    trial = spec.expand()[0]
    # An external model: no training (epochs 0), its weights' hash in the id, its own method name.
    return dataclasses.replace(trial, method=f"model:{name}", epochs=0,
                               method_identity={"kind": "external model", "weights": weights_hash,
                                                "normalizes_input": bool(normalizes_input)})


def evaluate_model(model, dataset: str, storage, name: str = "model", eval_plan: Optional[list] = None,
              n_examples: int = 1000, eval_seed: int = 0, batch_size: int = 250, normalizes_input: bool = True,
              device: Optional[str] = None, data_root: Optional[str] = None) -> pd.DataFrame:
    """Evaluate ``model`` (an ``nn.Module`` giving logits for [0, 1] images of ``dataset``, or for
    normalised ones with ``normalizes_input=False``) and return its committed example rows
    (``grid.benchmark`` turns them into the robust-accuracy table). ``storage``: a local folder;
    the rows go to ``<storage>/<name>/results``; ``data_root``: the dataset's folder (default
    er_core's data root). Calling it again resumes."""
    import torch

    import er_core.data
    from er_core.methods.external import ExternalModel
    from grid.stages import TrialBundle, run_stages
    from grid.store import ResultStore, load
    from grid.trial.checkpoints import TrainState, weights_hash

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    method = ExternalModel(model, dataset, normalizes_input=normalizes_input, device=device)
    trial = model_trial(name, dataset, weights_hash(method.model), eval_plan, n_examples, eval_seed, batch_size,
                        normalizes_input)
    results = Path(storage).expanduser() / name / "results"
    results.mkdir(parents=True, exist_ok=True)
    store = ResultStore(str(results))
    data = er_core.data.for_training(er_core.data.load(dataset, root=data_root), device)
    run_stages(TrialBundle(trial=trial, store=store, method=method, data=data,
                           checkpoint_hash=weights_hash(method.model), device=device, state=TrainState()))
    return load(str(results), trial_id=trial.trial_id)


__all__ = ["default_plan", "evaluate_model", "model_trial"]
