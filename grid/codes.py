"""The codes stage: the code z of the evaluation subset, natural and under PGD (paper Figures 5/6).

After evaluation, a trial with a ``codes`` plan stores, for every example of its evaluation
subset, ``z = model.embed(x)`` of the natural image and of its ℓ∞-PGD adversarial image, with
the predicted label of each. One compact parquet file per trial::

    codes/experiment=<e>/dataset=<d>/method=<m>/<trial_id>.parquet

written atomically through :meth:`grid.store.ResultStore.write_atomic`, one row per
(example, natural | adversarial). Resumable like every stage: a trial whose file exists is
skipped (file name only, no read). The t-SNE figure is drawn from these rows by
:mod:`grid.embedding_figure`.

The spec field ``codes`` and the PGD setting of one trial's stage are :mod:`grid.codes_plan`
(validated without the store). Adding the stage to a finished trial does not retrain it (not
part of ``trial_id``).
"""

from __future__ import annotations

import pyarrow as pa
import torch

from er_core.torch_utils import eval_mode, model_device
from grid.fingerprint import canonical_json
from grid.store import ResultStore, column, rows_to_table, without_partitions, UTC_TIMESTAMP

CODES_DIR = "codes"
NATURAL, ADVERSARIAL = "natural", "adversarial"

#: One row per (trial, example, natural | adversarial).
CODES_SCHEMA = pa.schema([
    column("experiment", pa.string()),
    column("trial_id", pa.string()),
    column("dataset", pa.string()),
    column("method", pa.string()),
    column("train_eps", pa.float64(), nullable=True),
    column("lam", pa.float64(), nullable=True),
    column("seed", pa.int64()),
    column("sample_idx", pa.int64()),
    column("label", pa.int64()),
    column("kind", pa.string()),                       # "natural" | "adversarial"
    column("pred", pa.int64()),                        # the model's prediction on this image
    column("code", pa.list_(pa.float32())),            # z = model.embed(x), code_dim values
    column("attack_config", pa.string()),              # canonical JSON of the PGD config
    column("checkpoint_hash", pa.string()),
    column("code_version", pa.string()),
    column("created_at", UTC_TIMESTAMP),
])


# --------------------------------------------------------------------------- stage


def codes_path(store: ResultStore, trial) -> str:
    directory = store.partition_dir(CODES_DIR, trial.experiment, trial.dataset, trial.method)
    return f"{directory}/{trial.trial_id}.parquet"


def codes_done(store: ResultStore, trial) -> bool:
    """True when this trial's codes are committed and intact. A file without its commit (a kill
    between the write and the commit) or a damaged one is redone, as the other stages do."""
    return store.is_committed_intact(codes_path(store, trial))


def run_codes_stage(store: ResultStore, trial, model, data, plan, checkpoint_hash: str) -> int:
    """Store z of the trial's evaluation subset, natural and under ``plan``'s PGD; returns rows written.

    ``trial``: a ``grid.spec.TrialConfig``; ``plan``: its codes ``AttackSpec``; ``model``: the trained inference model;
    ``data``: the trial's ``er_core.data.Data``. 0 when the file already exists.
    """
    import er_core.data
    from grid.trainable import batch_seed

    if codes_done(store, trial):
        return 0
    attack = plan.build()
    config = canonical_json(attack.config())
    device = model_device(model)
    indices = er_core.data.eval_indices(trial.dataset, trial.eval_n, trial.eval_seed)
    common = {"experiment": trial.experiment, "trial_id": trial.trial_id, "dataset": trial.dataset,
              "method": trial.method, "train_eps": trial.train_eps, "lam": trial.lam, "seed": trial.seed,
              "attack_config": config, "checkpoint_hash": checkpoint_hash}
    rows = []
    for b, idx in enumerate(torch.split(indices, trial.eval_batch_size)):
        x, y = data.test_examples(idx, device)
        # Seeded from the config like an evaluation batch, so a redone stage draws the same starts.
        torch.manual_seed(batch_seed(trial, f"codes_{plan.attack}", plan.eps, b))
        x_adv = attack(model, x, y).x_adv
        for kind, images in ((NATURAL, x), (ADVERSARIAL, x_adv)):
            codes, preds = embed(model, images)
            rows += [{**common, "sample_idx": int(i), "label": int(label), "kind": kind, "pred": int(p),
                      "code": z.tolist()} for i, label, p, z in zip(idx.tolist(), y.tolist(), preds.tolist(), codes)]
    store.write_atomic(without_partitions(rows_to_table(rows, CODES_SCHEMA, fill={})), codes_path(store, trial))
    return len(rows)


@torch.no_grad()
def embed(model, x: torch.Tensor) -> tuple:
    """(codes as float32 numpy (N, k), predictions (N,)) in eval mode; the model's mode is restored."""
    with eval_mode(model):
        z = model.embed(x)
        pred = model(x).argmax(1)
    return z.float().cpu().numpy(), pred.cpu()


def load_codes(root, **filters):
    """Code rows under ``root`` (path, URI or ResultStore) as a DataFrame (:data:`CODES_SCHEMA`)."""
    store = root if isinstance(root, ResultStore) else ResultStore(str(root))
    return store.load_table(CODES_DIR, CODES_SCHEMA, filters)
