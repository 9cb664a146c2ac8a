"""Orchestration of the ER-Classifier experiments: spec → trials, Ray Tune, parquet store, reports.

``grid`` decides what runs where and what is kept; the learning itself lives in ``er_core``.
Its rooms, bottom up (ARCHITECTURE.md has the rule of each): ``common`` (hashing, locations,
the user error), ``spec`` (GridSpec, TrialConfig), ``store`` (ResultStore, schemas, every
reader), ``stages`` (the post-training stages, one registry), ``experiment`` (the experiment
folder, status, :func:`load_model`), ``trial`` (the Tune trainable and the repair), ``run``
(Ray Tune: run, resume, cost), ``report`` (the paper's tables and figures), ``cli`` (``er-grid``).

Rooms are imported on use (``from grid.spec import GridSpec``), so importing ``grid`` pulls in
neither Ray, torch nor pyarrow.
"""


def load_model(experiment: str, trial_id: str, epoch=None, device: str = "cpu", best_validation: bool = False):
    """The er_core method of a trial with its trained weights; see :func:`grid.experiment.models.load_model`."""
    from grid.experiment.models import load_model as load

    return load(experiment, trial_id, epoch=epoch, device=device, best_validation=best_validation)


def benchmark(model, dataset: str, storage, **options):
    """A trained model under the grid's evaluation protocol, resumable: its robust-accuracy table
    (one row per attack and ε, the worst case included, with 95% intervals). Options and what is
    stored: :func:`grid.run.benchmark.evaluate_model`."""
    from grid.report.metrics import robust_accuracy
    from grid.run.benchmark import evaluate_model

    return robust_accuracy(evaluate_model(model, dataset, storage, **options), by=["dataset", "method", "attack", "eps"])
