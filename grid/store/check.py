"""A full check of a results store against its commit record (what ``er-grid status`` shows).

:func:`check_store` reads every trial's manifest on its own (one damaged manifest does not
hide the others), verifies every committed file (``grid.store.manifest.check``: present, same
size, sha256, schema, rows, keys; a file unchanged since a verdict on it is not read again,
``grid.store.verdicts``) and lists every other file under the root: temp files,
copies, ``backup/`` folders, ``….bak`` partitions, foreign parquet files. Those are "not part
of the store": no reader ever reads them. Files a repair moved aside are listed apart.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

from . import confined, manifest, manifest_cache
from .layout import MOVED_ASIDE_DIR
from .read import READ_THREADS
from .results_store import ResultStore


@dataclasses.dataclass(frozen=True)
class StoreCheck:
    """What a store holds. Paths are relative to the store root.

    intact: trial_id → the intact :class:`~grid.store.manifest.Commit`s of that trial.
    damaged: trial_id → ``(commit, reason)`` for each committed file that is missing or differs.
    damaged_records: ``(manifest path, reason)`` for commit records that cannot be read.
    not_part_of_store: every other file (never read as results).
    moved_aside: files a repair replaced, kept as evidence.
    """

    root: str
    intact: dict
    damaged: dict
    damaged_records: tuple
    not_part_of_store: tuple
    moved_aside: tuple

    def intact_commits(self, trial_id: str, table: str) -> list:
        return [c for c in self.intact.get(trial_id, ()) if c.table == table]


def check_store(store: ResultStore) -> StoreCheck:
    """Verify every committed file of ``store`` and classify every other file under it."""
    # Confined listing: a linked folder is listed, never walked (it may point anywhere).
    listing = confined.list_files(store.fs, store.base)
    records_dir = f"{manifest.COMMITS_DIR}/"
    commits, good_records, bad_records = [], set(), []
    for relative in listing:
        if not (relative.startswith(records_dir) and relative.endswith(".json") and "/" not in relative[len(records_dir):]):
            continue
        try:
            commits += manifest_cache.load_manifest(store.fs, store.base, relative[len(records_dir):].removesuffix(".json"),
                                                    store.verdicts).values()
            good_records.add(relative)
        except (manifest.DamagedStore, ValueError) as err:
            bad_records.append((relative, str(err)))
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        reasons = list(pool.map(lambda c: manifest.check(store.fs, store.base, c, verdicts=store.verdicts), commits))
    store.verdicts.save()
    intact: dict = {}
    damaged: dict = {}
    for commit, reason in zip(commits, reasons):
        trial_id = commit.key["trial_id"]
        if reason is None:
            intact.setdefault(trial_id, []).append(commit)
        else:
            damaged.setdefault(trial_id, []).append((commit, reason))
    known = {c.path for c in commits} | good_records | {path for path, _ in bad_records}
    others = sorted(r for r in listing if r not in known)
    aside = tuple(r for r in others if r.startswith(f"{MOVED_ASIDE_DIR}/"))
    stray = tuple(r for r in others if not r.startswith(f"{MOVED_ASIDE_DIR}/"))
    return StoreCheck(root=store.root, intact=intact, damaged=damaged, damaged_records=tuple(bad_records),
                      not_part_of_store=stray, moved_aside=aside)


__all__ = ["StoreCheck", "check_store"]
