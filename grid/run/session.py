"""The Ray side of a run: joining the cluster, and the trainable Tune runs (the same object
for ``run`` and ``resume``, with each trial's own resources)."""

from __future__ import annotations

import os

# Driver environment variables forwarded to every trial process (fault-injection hooks of
# grid.common.faults); a Ray worker does not inherit the driver's environment otherwise.
FORWARDED_ENV_PREFIX = "ER_GRID_TEST_"


def trial_resources(config: dict) -> dict:
    """Resources of one trial (per dataset in the spec); fractional GPUs pass through."""
    resources = config["trial"]["resources"]
    return {"cpu": resources["cpu"], "gpu": resources["gpu"]}


def trainable():
    """The function trainable with per-trial resources (the same object for run and restore)."""
    from ray import tune

    from grid.trial.trainable import train_and_evaluate

    return tune.with_resources(train_and_evaluate, resources=trial_resources)


def connect() -> None:
    """Join the Ray cluster of ``RAY_ADDRESS`` (a submitted job has it) or start a local one."""
    import ray

    if ray.is_initialized():
        return
    forwarded = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}
    ray.init(runtime_env={"env_vars": forwarded} if forwarded else None)


__all__ = ["FORWARDED_ENV_PREFIX", "connect", "trainable", "trial_resources"]
