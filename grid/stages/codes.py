"""The codes stage: the code z of the evaluation subset, natural and under PGD (paper Figures 5/6).

After evaluation, a trial with a ``codes`` plan (``grid.spec.codes_plan``) stores, for every
example of its evaluation subset, ``z = model.embed(x)``
of the natural image and of its ℓ∞-PGD adversarial image, with the predicted label of each:
one row per (example, natural | adversarial), one file per trial
(``codes/…/<trial_id>.parquet``, ``grid.store.schemas.CODES_SCHEMA``). Like every stage, a
trial whose file is committed and intact is skipped; a file without its commit (a kill between
the write and the commit) or a damaged one is redone. The t-SNE figure is drawn from these rows
by ``grid.report.embedding_figure``. Adding the stage to a finished trial does not retrain it
(the plan is not part of ``trial_id``).

The PGD ε is the plan's, or, for its ``"half"`` rule, chosen here from the trial's committed PGD
rows (the evaluation stage runs first): :func:`codes_attack`. Every row's ``attack_config`` is
the canonical JSON of the PGD config (its ``eps`` the ε used) plus, under :data:`EPS_RULE_KEY`,
how that ε was chosen (``{"rule": "half", "pgd_accuracy": 0.48, "n": 1000}``), so the table's
schema stays what existing stores verify against.
"""

from __future__ import annotations

from grid.common.fingerprint import canonical_json
from grid.spec.codes_plan import HALF, PGD, nearest_half, sweep_eps
from grid.store.layout import codes_path
from grid.store.rows import rows_to_table, without_partitions
from grid.store.schemas import ADVERSARIAL, CODES_SCHEMA, NATURAL

from .base import SingleFileStage, TrialBundle, trial_batches

#: The key of ``attack_config`` that records how the codes stage's ε was chosen.
EPS_RULE_KEY = "eps_rule"


def codes_attack(store, trial) -> tuple:
    """(the trial's codes ``AttackSpec`` with its ε resolved, how that ε was chosen).

    For the ``"half"`` rule: the trial's committed PGD rows at every nonzero ε of its sweep,
    robust meaning correct both clean and under attack (the report's robust accuracy), and
    ``grid.spec.codes_plan.nearest_half`` of them. Rows missing for an ε of the sweep are a
    RuntimeError naming it: choosing from part of the sweep would choose another ε."""
    plan = trial.codes
    if plan.rule != HALF:
        return plan.attack(plan.eps), {"rule": plan.rule}
    rows = store.load(experiment=trial.experiment, dataset=trial.dataset, method=trial.method,
                      trial_id=trial.trial_id, attack=PGD)
    counts = {}
    for eps in sweep_eps(trial.eval_plan):
        at = rows[rows["eps"] == eps]
        if len(at) < trial.eval_n:
            raise RuntimeError(f"codes stage of trial {trial.trial_id}: its {PGD} rows at ε {eps} hold "
                               f"{len(at)} of {trial.eval_n} examples; the \"{HALF}\" rule reads the whole sweep, "
                               "so the evaluation stage must have committed it")
        counts[eps] = (int((at["correct_clean"] & at["correct_adv"]).sum()), len(at))
    eps = nearest_half(counts)
    robust, n = counts[eps]
    return plan.attack(eps), {"rule": HALF, "pgd_accuracy": robust / n, "n": n}


def run_codes_stage(store, trial, model, data, checkpoint_hash: str, batches=None) -> int:
    """Store z of the trial's evaluation subset, natural and under its codes plan's PGD
    (:func:`codes_attack`); returns rows written.

    ``trial``: a ``grid.spec.TrialConfig`` with a codes plan; ``model``: the trained inference
    model; ``data``: the trial's ``er_core.data.Data``; ``batches``: the subset's batches
    (``er_core.eval_subset.eval_batches``), computed from the trial when not given.
    """
    import torch

    from er_core.eval_subset import batch_seed
    from er_core.torch_utils import model_device

    if batches is None:
        batches = trial_batches(trial)
    spec, choice = codes_attack(store, trial)
    attack = spec.build()
    config = canonical_json({**attack.config(), EPS_RULE_KEY: choice})
    device = model_device(model)
    common = {"experiment": trial.experiment, "trial_id": trial.trial_id, "dataset": trial.dataset,
              "method": trial.method, "train_eps": trial.train_eps, "lam": trial.lam, "seed": trial.seed,
              "attack_config": config, "checkpoint_hash": checkpoint_hash}
    rows = []
    for b, idx in enumerate(batches):
        x, y = data.test_examples(idx, device)
        # Its own seed stream ("codes_<attack>"), so a redone stage draws the same starts.
        torch.manual_seed(batch_seed(trial.seed, trial.eval_seed, f"codes_{spec.attack}", spec.eps, b))
        x_adv = attack(model, x, y).x_adv
        for kind, images in ((NATURAL, x), (ADVERSARIAL, x_adv)):
            codes, preds = embed(model, images)
            rows += [{**common, "sample_idx": int(i), "label": int(label), "kind": kind, "pred": int(p),
                      "code": z.tolist()} for i, label, p, z in zip(idx.tolist(), y.tolist(), preds.tolist(), codes)]
    store.write_atomic(without_partitions(rows_to_table(rows, CODES_SCHEMA, fill={})), codes_path(store, trial))
    return len(rows)


def embed(model, x) -> tuple:
    """(codes as float32 numpy (N, k), predictions (N,)) in eval mode; the model's mode is restored."""
    import torch

    from er_core.torch_utils import eval_mode

    with torch.no_grad(), eval_mode(model):
        z = model.embed(x)
        pred = model(x).argmax(1)
    return z.float().cpu().numpy(), pred.cpu()


class CodesStage(SingleFileStage):
    name = "codes"

    def wants(self, trial) -> bool:
        return bool(trial.codes)

    def path(self, store, trial) -> str:
        return codes_path(store, trial)

    def compute(self, bundle: TrialBundle) -> None:
        run_codes_stage(bundle.store, bundle.trial, bundle.model, bundle.data, bundle.checkpoint_hash,
                        bundle.batches)


STAGE = CodesStage()

__all__ = ["EPS_RULE_KEY", "STAGE", "codes_attack", "embed", "run_codes_stage"]
