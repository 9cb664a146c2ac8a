"""The spec's ``models:`` field: models trained elsewhere, evaluated under the grid's protocol
beside the trained methods (no training; the evaluation plan, sanity flags, report and query
alike). Each entry::

    models:
      - {name: my_net, factory: my_pkg.nets:build, weights: /path/to/state_dict.pt,
         dataset: mnist, normalizes_input: true, kwargs: {width: 1024}}

``factory`` (``package.module:callable``) builds the network, called with ``kwargs``;
``weights`` is a file (a local path, or a URI such as ``s3://bucket/net.pt``, copied locally
where it is read) holding its ``state_dict`` (``torch.save(model.state_dict(), path)``),
loaded with ``torch.load(weights_only=True)``; ``normalizes_input: false`` says the network
expects inputs normalised with the dataset's mean/std (it is then wrapped, so every ε stays in
[0, 1] image space). At spec time each entry is loaded once and checked on a [0, 1] batch (one
line naming the problem); the weights file's sha256 becomes part of the trial's id
(``TrialConfig.method_identity``), its path is where the trial runs (``TrialConfig.weights``,
not hashed). Importing the factory runs its code: a spec is as trusted as a Python file.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
from pathlib import Path

from .fields import check_keys, in_datasets

MODEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,99}")
REQUIRED = ("name", "factory", "weights", "dataset")
OPTIONAL = ("normalizes_input", "kwargs", "weights_sha256")  # the last: as a normalised spec records it
METHOD_PREFIX = "model:"


def validate_models_spec(raw, datasets) -> tuple:
    """The normalised entries (with ``weights_sha256``); ValueError ``spec.models[i]...`` on the first problem."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"spec.models: expected a list of model entries, got {type(raw).__name__}")
    out, names = [], set()
    for i, entry in enumerate(raw):
        where = f"models[{i}]"
        check_keys(where, entry, required=REQUIRED, optional=OPTIONAL)
        name = entry["name"]
        if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
            raise ValueError(f"spec.{where}.name: {name!r} must match {MODEL_NAME.pattern}")
        if name in names:
            raise ValueError(f"spec.{where}.name: {name!r} is given twice")
        names.add(name)
        in_datasets(f"{where}.dataset", entry["dataset"], datasets)
        kwargs = entry.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise ValueError(f"spec.{where}.kwargs: expected a mapping, got {kwargs!r}")
        normalizes = entry.get("normalizes_input", True)
        if not isinstance(normalizes, bool):
            raise ValueError(f"spec.{where}.normalizes_input: expected true or false, got {normalizes!r}")
        weights = str(entry["weights"])
        if "://" not in weights:
            weights = str(Path(weights).expanduser().resolve())
        from er_core.methods.external import load_external

        try:
            with local_weights(weights) as local:
                load_external(str(entry["factory"]), local, entry["dataset"], normalizes, kwargs)
                digest = file_sha256(local)
        except OSError as err:  # a URI that does not resolve, a file that cannot be read
            raise ValueError(f"spec.{where}.weights: {weights} cannot be read ({err})") from err
        except ValueError as err:  # "factory: …" or "weights: …", from the loader
            raise ValueError(f"spec.{where}.{err}") from err
        if entry.get("weights_sha256") not in (None, digest):
            raise ValueError(f"spec.{where}.weights: {weights} changed since this spec was recorded (sha256 "
                             f"{digest[:16]}…, recorded {str(entry['weights_sha256'])[:16]}…)")
        out.append({"name": name, "factory": str(entry["factory"]), "weights": weights,
                    "dataset": entry["dataset"], "normalizes_input": normalizes, "kwargs": dict(kwargs),
                    "weights_sha256": digest})
    return tuple(out)


@contextlib.contextmanager
def local_weights(weights: str):
    """A local path holding ``weights``: the file itself, or for a URI (``s3://…``, ``gs://…``,
    ``file://…``; pyarrow's filesystems) a temporary copy, removed afterwards."""
    if "://" not in weights:
        if not Path(weights).is_file():
            raise ValueError(f"weights: {weights} is not a file")
        yield weights
        return
    from grid.common.locations import filesystem

    fs, path = filesystem(weights)
    with tempfile.TemporaryDirectory(prefix="er_grid_weights_") as tmp:
        local = Path(tmp) / "weights.pt"
        with fs.open_input_stream(path) as source, open(local, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        yield str(local)


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity(entry: dict) -> dict:
    """What identifies an external model's trial (hashed into its id): everything but the path."""
    return {"kind": "external model", "factory": entry["factory"], "kwargs": entry["kwargs"],
            "normalizes_input": entry["normalizes_input"], "weights_sha256": entry["weights_sha256"]}


def is_model_trial(trial) -> bool:
    return trial.method.startswith(METHOD_PREFIX)


__all__ = ["METHOD_PREFIX", "file_sha256", "is_model_trial", "local_weights", "model_identity",
           "validate_models_spec"]
