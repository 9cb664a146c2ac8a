"""The Ray side of a run: joining the cluster, and the trainable Tune runs (the same object
for ``run`` and ``resume``, with each trial's own resources)."""

from __future__ import annotations

import json
import os

from grid.common.fingerprint import CODE_VERSION_ENV, export_code_version

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
    """Join the Ray cluster of ``RAY_ADDRESS`` (a submitted job has it) or start a local one.

    The driver's code version and test hooks go to every trial in the job's ``env_vars``: workers
    of a cluster joined by address do not inherit the driver's environment (a local Ray's do)."""
    import ray

    if ray.is_initialized():
        return
    forwarded = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}
    forwarded[CODE_VERSION_ENV] = export_code_version()
    # Inside a submitted job Ray merges these with the job's own env_vars and refuses a key
    # given twice (even with the same value); what the job already sets reaches the trials anyway.
    for key in submitted_job_env_vars():
        forwarded.pop(key, None)
    ray.init(runtime_env={"env_vars": forwarded} if forwarded else None)


# Where Ray's job manager hands a submitted job's config (its runtime env) to the job's driver.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def submitted_job_env_vars() -> set:
    """Names of the environment variables the submitted job's runtime env sets (empty outside a job)."""
    text = os.environ.get(JOB_CONFIG_ENV)
    if not text:
        return set()
    try:
        runtime_env = json.loads(text).get("runtime_env") or {}
        return set(runtime_env.get("env_vars") or {})
    except (ValueError, AttributeError):
        return set()


__all__ = ["FORWARDED_ENV_PREFIX", "connect", "submitted_job_env_vars", "trainable", "trial_resources"]
