"""The one scan of a trial folder's checkpoints by their ``epoch.json`` sidecars, which the
restore, ``er-grid status`` and ``grid.load_model`` all use: folders cut short are left out,
newest epoch first. Runtime: well under 1 s."""

from __future__ import annotations

import json

import pyarrow.fs as pafs

from grid.experiment.files import EPOCH_FILE, checkpoint_epochs


def test_checkpoint_scan_keeps_readable_sidecars_newest_first(tmp_path):
    trial = tmp_path / "trial"
    sidecars = {
        "checkpoint_000000": json.dumps({"epoch": 1, "train_seconds": 2.5}),
        "checkpoint_000002": json.dumps({"epoch": 3, "train_seconds": 7.0}),
        "checkpoint_000001": json.dumps({"epoch": 2}),  # written without its seconds
        "checkpoint_000003": '{"epoch": 4, "train_sec',  # cut short by a kill
        "checkpoint_000004": json.dumps(["not", "a", "record"]),
        "checkpoint_000005": None,  # no sidecar at all
        "not_a_checkpoint": json.dumps({"epoch": 9}),
    }
    for name, text in sidecars.items():
        (trial / name).mkdir(parents=True)
        if text is not None:
            (trial / name / EPOCH_FILE).write_text(text)
    found = checkpoint_epochs(pafs.LocalFileSystem(), str(trial))
    assert [(epoch, seconds) for epoch, seconds, _ in found] == [(3, 7.0), (2, 0.0), (1, 2.5)]
    assert [path.rsplit("/", 1)[-1] for _, _, path in found] == [
        "checkpoint_000002", "checkpoint_000001", "checkpoint_000000"]
    assert checkpoint_epochs(pafs.LocalFileSystem(), str(tmp_path / "missing")) == []
