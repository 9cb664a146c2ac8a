"""Orchestration of the ER-Classifier experiments: spec → trials, Ray Tune, parquet store, reports.

``grid`` decides what runs where and what is kept; the learning itself lives in ``er_core``.
Modules: ``spec`` (GridSpec, TrialConfig), ``store`` (ResultStore, schemas, load),
``report`` (robust-accuracy tables), ``fingerprint`` (canonical hashing, versions),
``trainable``/``run``/``cli`` (Ray Tune and the ``er-grid`` command).

Submodules are imported on use (``from grid.spec import GridSpec``) so that importing
``grid`` never pulls in Ray or pyarrow.
"""
