"""Can the cluster ever place every trial? Checked once before any trial starts.

Ray Tune keeps a trial whose resources no node can offer PENDING forever (it only warns), so
``run`` and ``resume`` compare each trial's resources (``cpu``, ``gpu``: the spec's, per
dataset) with what one node offers, since a trial runs on one node:

- the nodes alive now (``ray.nodes()``, their total resources, not what is free: a busy node
  frees up);
- and, where an autoscaler may add nodes, every node type it may launch
  (``available_node_types.*.resources`` of its cluster config, node types with
  ``max_workers: 0`` left out). The driver finds that config in ``$ER_GRID_CLUSTER_CONFIG``
  (a path to the cluster YAML, e.g. the repository's ``cluster.yaml``), else in
  ``~/ray_bootstrap_config.yaml``, the copy ``ray up`` puts on the head, where a submitted
  job's driver runs. Neither: no autoscaler, the cluster is what it is now. A node type whose
  ``resources`` leave CPU or GPU out (``{}``: "detected on the node") cannot be judged from the
  file and is taken to offer any amount of what it leaves out: the check refuses only what is
  certain never to fit.

An infeasible trial is a :class:`GridError` (one line, exit 2) naming the trial, what it needs
and what the nodes offer.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import yaml

from grid.common.errors import GridError
from grid.experiment.spec_record import experiment_folder, planned_trials, read_record
from grid.spec import GridSpec

CLUSTER_CONFIG_ENV = "ER_GRID_CLUSTER_CONFIG"
# What `ray up` copies to the head and starts the autoscaler with (--autoscaling-config).
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
MAX_CLUSTER_CONFIG_BYTES = 1 << 20
# The trial resources er-grid asks for, and Ray's names for them on a node.
RAY_NAMES = {"cpu": "CPU", "gpu": "GPU"}


def spec_demands(spec: GridSpec) -> dict:
    """Trial name → ``{"cpu", "gpu"}`` for every trial of ``spec``."""
    return {t.name: dict(t.resources) for t in spec.expand()}


def recorded_demands(path: str) -> dict:
    """Trial name → ``{"cpu", "gpu"}`` for every planned trial of the experiment at ``path``:
    the per-dataset resources of the spec in its ``grid_spec.json`` (the trials' own records
    leave where they run out)."""
    folder = experiment_folder(path)
    by_dataset = read_record(folder)["spec"]["resources"]
    return {t.name: dict(by_dataset[t.dataset]) for t in planned_trials(folder)}


def offers_now() -> list:
    """``("node <ip>", {"cpu", "gpu"})`` of each node alive in the connected Ray cluster."""
    import ray

    return [(f"node {node.get('NodeManagerAddress', '?')}",
             {k: float(node["Resources"].get(name, 0)) for k, name in RAY_NAMES.items()})
            for node in ray.nodes() if node.get("Alive")]


def cluster_config_path() -> Optional[Path]:
    """The autoscaler's cluster config the driver can read (see the module docstring), or None."""
    named = os.environ.get(CLUSTER_CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise GridError(f"${CLUSTER_CONFIG_ENV}: {named} is not a file (give the cluster YAML the autoscaler uses)")
        return path
    bootstrap = BOOTSTRAP_CONFIG.expanduser()
    return bootstrap if bootstrap.is_file() else None


def autoscaler_offers(path: Path) -> list:
    """``("node type <name>", {"cpu", "gpu"})`` for each node type the autoscaler of the
    cluster config ``path`` may launch; an amount the file leaves out is ``inf`` (detected on
    the node, so not refutable here)."""
    with open(path, "rb") as stream:
        text = stream.read(MAX_CLUSTER_CONFIG_BYTES + 1)
    if len(text) > MAX_CLUSTER_CONFIG_BYTES:
        raise GridError(f"{path}: more than {MAX_CLUSTER_CONFIG_BYTES:,} bytes; not a cluster config")
    try:
        config = yaml.safe_load(text)
        types = config["available_node_types"]
        head = config.get("head_node_type")
        offers = []
        for name, node_type in types.items():
            if node_type.get("max_workers", 1) == 0 and name != head:
                continue  # never launched
            declared = node_type.get("resources") or {}
            offers.append((f"node type {name}", {k: float(declared.get(ray_name, math.inf))
                                                 for k, ray_name in RAY_NAMES.items()}))
        return offers
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as err:
        raise GridError(f"{path} is not a Ray cluster config with available_node_types ({type(err).__name__}: "
                        f"{err})") from err


def fits(need: dict, offer: dict) -> bool:
    return all(float(need[k]) <= offer[k] for k in RAY_NAMES)


def check_cluster_fits(demands: dict) -> None:
    """Raise :class:`GridError` naming the first trial of ``demands`` (trial name → resources)
    that no node alive now, nor any node type the autoscaler may add, can host. Needs a
    connected Ray (``grid.run.session.connect``)."""
    offers = offers_now()
    config = cluster_config_path()
    if config is not None:
        offers += autoscaler_offers(config)
    stuck = [name for name, need in demands.items() if not any(fits(need, offer) for _, offer in offers)]
    if not stuck:
        return
    need = demands[stuck[0]]
    others = f" (and {len(stuck) - 1} other trial(s))" if len(stuck) > 1 else ""
    raise GridError(f"trial {stuck[0]}{others} needs {describe(need)} but the largest node offers "
                    f"{largest(offers)}{' (autoscaler: ' + str(config) + ')' if config else ''}; "
                    "no trial was started: lower the spec's resources or add such nodes")


def describe(resources: dict) -> str:
    return ", ".join(f"{k} {_number(resources[k])}" for k in RAY_NAMES)


def largest(offers: list) -> str:
    """The offer with the most GPUs, then CPUs, as ``cpu 2, gpu 0``; ``no node`` if none."""
    if not offers:
        return "nothing (no node alive)"
    _name, offer = max(offers, key=lambda o: (o[1]["gpu"], o[1]["cpu"]))
    return describe(offer)


def _number(value) -> str:
    value = float(value)
    if math.isinf(value):
        return "any (detected on the node)"
    return str(int(value)) if value.is_integer() else f"{value:g}"


__all__ = ["CLUSTER_CONFIG_ENV", "autoscaler_offers", "check_cluster_fits", "cluster_config_path", "offers_now",
           "recorded_demands", "spec_demands"]
