"""A small grid of trainings and evaluations without Ray: one process per trial, plain files out.

For machines where only PyTorch is installed (no Ray, pyarrow or pandas): ``run_local(spec,
out_dir)`` takes the same spec dict as a grid job (``jobs/fidelity.py``), trains every
(dataset, method, train ε, λ, seed) through :func:`er_core.train.fit`, evaluates its plan through
:func:`er_core.evaluate.attack_batch` on :func:`er_core.data.eval_indices`, applies the sanity
rules of :mod:`er_core.sanity`, and writes ``summary.json``, ``summary.csv`` and
``examples.jsonl`` (one record per evaluated example) into ``out_dir``.
:func:`format_table` prints the table the grid path prints too.

Why here and not in ``grid``: nothing on this path may import Ray or pyarrow, and ``jobs/``
holds no logic; the runner is only er_core's own calls composed, like ``er_core.demo``.

Why processes: the networks are small, so one training keeps a GPU busy only a fraction of the
time (kernel-launch bound); several trainings as parallel processes share it well. Each worker
gets ``cpu_count / workers`` intra-op threads. Processes are spawned (a forked CUDA context is
unusable).

Same trial set-up as the grid: the trial's seed also seeds the weight initialisation
(``init_seed``), λ and training ε go only to methods that use them. The evaluation subset, its
batches and their seeds are the grid's (:mod:`er_core.eval_subset`), so a trial run here draws
the same random starts as the same trial in the grid.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import product
from pathlib import Path
from typing import Callable, Optional

import torch

SUMMARY_JSON, SUMMARY_CSV, EXAMPLES_JSONL = "summary.json", "summary.csv", "examples.jsonl"


# --------------------------------------------------------------------------- trials


def expand(spec: dict) -> list[dict]:
    """The trials of ``spec`` (dataset × method × train ε × λ × seed, axes only where a method uses them).

    Fields read: datasets, methods, train_eps, lams, seeds, epochs, batch_size, hyperparams,
    eval_plan (ε lists), eval_n, eval_seed, eval_batch_size, data_root; the grid-only ones
    (experiment, resources, storage_path, …) are ignored.

    Raises ValueError naming the field for an unknown method, attack or option, before any work.
    """
    from . import attacks, methods

    for key in ("datasets", "methods", "epochs", "eval_plan"):
        if key not in spec:
            raise ValueError(f"spec.{key}: missing required field")
    trials = []
    for dataset, method in product(spec["datasets"], spec["methods"]):
        methods.method_class(method)  # unknown names fail here, with the valid ones listed
        plan = _plan(spec, dataset)
        for item in plan:
            attacks.make(item["attack"], item["eps"], **item["options"])
        eps_axis = _per_dataset(spec.get("train_eps"), dataset) if methods.uses_train_eps(method) else [None]
        lam_axis = list(spec.get("lams") or [None]) if methods.uses_lambda(method) else [None]
        for train_eps, lam, seed in product(eps_axis, lam_axis, spec.get("seeds", [0])):
            hyperparams = {"init_seed": seed, **(spec.get("hyperparams") or {}).get(method, {})}
            if lam is not None:
                hyperparams["lam"] = float(lam)
            if train_eps is not None:
                hyperparams["train_eps"] = float(train_eps)
            methods.make(method, dataset, **hyperparams)  # validates the hyperparameters
            trials.append({
                "dataset": dataset, "method": method, "train_eps": train_eps, "lam": lam, "seed": seed,
                "epochs": int(spec["epochs"]), "batch_size": int(spec.get("batch_size", 128)),
                "hyperparams": hyperparams, "eval_plan": plan, "eval_n": _eval_n(spec, dataset),
                "eval_seed": int(spec.get("eval_seed", 0)), "eval_batch_size": int(spec.get("eval_batch_size", 250)),
                "data_root": spec.get("data_root"), "validation_n": _validation_n(spec, dataset),
            })
    return trials


def _per_dataset(value, dataset: str) -> list:
    if isinstance(value, dict):
        if dataset not in value:
            raise ValueError(f"spec.train_eps: no training ε for dataset {dataset!r}")
        return list(value[dataset])
    if value is None:
        raise ValueError(f"spec.train_eps: needed for dataset {dataset!r} (a method trains on adversarial examples)")
    return list(value)


def _validation_n(spec: dict, dataset: str) -> int:
    """Training images held out for validation: the spec's ``validation_n`` (an int or per dataset),
    else the dataset's ``validation_size`` (as the grid)."""
    from .dataset_info import info

    value = spec.get("validation_n")
    if isinstance(value, dict):
        value = value.get(dataset)
    return info(dataset).validation_size if value is None else int(value)


def _eval_n(spec: dict, dataset: str) -> int:
    n = spec.get("eval_n", 1000)
    return int(n[dataset] if isinstance(n, dict) else n)


def _plan(spec: dict, dataset: str) -> list[dict]:
    """The evaluation plan of ``dataset`` as (attack, ε, options) items; ε lists expanded."""
    if dataset not in spec["eval_plan"]:
        raise ValueError(f"spec.eval_plan: no evaluation plan for dataset {dataset!r}")
    items = []
    for item in spec["eval_plan"][dataset]:
        eps_values = item["eps"] if isinstance(item["eps"], (list, tuple)) else [item["eps"]]
        if isinstance(item["eps"], dict):
            raise ValueError("spec.eval_plan: ε ranges need the grid's spec; give an ε list here")
        items += [{"attack": item["attack"], "eps": float(e), "options": dict(item.get("options") or {})}
                  for e in eps_values]
    return items


def trial_label(trial: dict) -> str:
    extras = [f"λ={trial['lam']:g}"] if trial["lam"] is not None else []
    extras += [f"ε={trial['train_eps']:g}"] if trial["train_eps"] is not None else []
    return f"{trial['dataset']}-{trial['method']}" + (f"({', '.join(extras)})" if extras else "") + f"-s{trial['seed']}"


# --------------------------------------------------------------------------- one trial


def run_trial(trial: dict, device: str, threads: int = 1, on_step: Optional[Callable[[], None]] = None) -> dict:
    """Train and evaluate one trial; returns its summary with ``examples`` (per-example records).

    ``on_step()`` is called after every epoch and every evaluation batch (:func:`trial_steps`
    in all), for a progress bar; it never changes what is computed."""
    from . import data as er_data
    from . import evaluate, methods, sanity, train
    from .attacks import attack_class
    from .eval_subset import batch_seed, eval_batches
    from .validation import validation_eps, validation_metrics, with_validation

    torch.set_num_threads(max(1, threads))
    root = None if trial["data_root"] is None else Path(trial["data_root"]) / trial["dataset"]
    loaded = with_validation(er_data.load(trial["dataset"], root=root), trial.get("validation_n", 0))
    data = er_data.for_training(loaded, device)
    method = methods.make(trial["method"], trial["dataset"], device=device, **trial["hyperparams"])
    val_eps = validation_eps(trial["dataset"], trial["train_eps"])

    step = on_step or (lambda: None)

    def watch(epoch_done: int, metrics: dict) -> None:  # the grid's per-epoch validation reading
        metrics.update(validation_metrics(method.model, data, val_eps, trial["seed"], epoch_done))
        step()

    started = time.perf_counter()
    # The run's own bar counts epochs and batches (run_local); fit's per-image bar stays off.
    history = train.fit(method, data, epochs=trial["epochs"], batch_size=trial["batch_size"], seed=trial["seed"],
                        on_epoch=watch, progress=False)
    train_seconds = time.perf_counter() - started

    model = method.model.eval()
    batches = eval_batches(trial["dataset"], trial["eval_n"], trial["eval_seed"], trial["eval_batch_size"])
    x_all, y_all = data.test_examples(torch.cat(batches), device)
    # Judged like the rows' correct_clean (every pass of a randomised model), so the summary's
    # clean accuracy and the examples' can never disagree.
    clean = float((evaluate.judge(model, x_all, y_all, evaluate.passes_for(model)) == y_all).float().mean())
    examples, accuracy, notes = [], {}, []
    started = time.perf_counter()
    for item in trial["eval_plan"]:
        rows = []
        start = 0
        for b, idx in enumerate(batches):
            torch.manual_seed(batch_seed(trial["seed"], trial["eval_seed"], item["attack"], item["eps"], b))
            here = slice(start, start + len(idx))
            start += len(idx)
            said: list = []
            rows += evaluate.attack_batch(model, item["attack"], x_all[here], y_all[here], item["eps"],
                                          sample_idx=idx.tolist(), notes=said, **item["options"])
            if attack_class(item["attack"]).reports_notes:  # as the grid keeps them
                notes += sanity.batch_notes(item["attack"], item["eps"], b, said)
            step()
        norm = _norm(item)
        rows = [{**r, "attack": item["attack"], "eps": item["eps"], "norm": norm} for r in rows]
        accuracy[column_name(item["attack"], item["eps"])] = (
            sum(r["correct_clean"] and r["correct_adv"] for r in rows) / len(rows))
        examples += rows
    eval_seconds = time.perf_counter() - started

    losses = [{k: v for k, v in epoch.items() if k not in ("epoch", "seconds", "images")} for epoch in history]
    flags = sanity.trial_flags(
        {"trial_id": trial_label(trial), "train_eps": trial["train_eps"], "clean_accuracy": clean, "losses": losses},
        sanity.outcomes_from_records(examples), data.num_classes, notes,
    )
    final = sanity.final_loss(losses)
    return {
        **{k: trial[k] for k in ("dataset", "method", "train_eps", "lam", "seed", "epochs")},
        "label": trial_label(trial), "device": device, "clean_accuracy": clean, "accuracy": accuracy,
        "final_loss": None if final is None else final[1], "final_loss_name": None if final is None else final[0],
        "losses": losses, "flags": sorted({f.flag for f in flags}),
        "flag_evidence": [f"{f.flag}: {f.evidence}" for f in flags],
        "train_seconds": train_seconds, "eval_seconds": eval_seconds, "wall_seconds": train_seconds + eval_seconds,
        "examples": examples,
    }


def _norm(item: dict) -> str:
    from .attacks import make

    return make(item["attack"], item["eps"], **item["options"]).norm


def column_name(attack: str, eps: float) -> str:
    """Table column of one (attack, ε): ``pgd@0.3``."""
    return f"{attack}@{eps:g}"


def trial_steps(trial: dict) -> int:
    """Epochs plus evaluation batches of one trial: what ``run_trial``'s ``on_step`` counts."""
    from .eval_subset import eval_batches

    batches = eval_batches(trial["dataset"], trial["eval_n"], trial["eval_seed"], trial["eval_batch_size"])
    return trial["epochs"] + len(trial["eval_plan"]) * len(batches)


# --------------------------------------------------------------------------- the run


def run_local(spec: dict, out_dir, workers: Optional[int] = None, device: Optional[str] = None,
              progress=print, bar: Optional[bool] = None) -> list[dict]:
    """Run every trial of ``spec`` as parallel processes; write the summary files; return the summaries.

    workers: processes at once (default: every trial on a GPU; CPU cores on a CPU).
    device: ``cuda``/``cpu`` (default: cuda when available).
    progress: called with one line per finished trial and one for the run (None: silent).
    bar: a progress bar over every trial's epochs and evaluation batches (tqdm, on stderr);
    None draws it only when stderr is a terminal.
    """
    from tqdm import tqdm

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers: must be an integer ≥ 1, got {workers!r}")
    if device is not None and device.split(":")[0] not in ("cuda", "cpu"):
        raise ValueError(f"device: must be 'cuda' or 'cpu', got {device!r}")
    trials = expand(spec)  # every error before any work
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cores = os.cpu_count() or 1
    if workers is None:
        workers = len(trials) if device.startswith("cuda") else min(len(trials), cores)
    threads = max(1, cores // workers)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tqdm(total=sum(trial_steps(t) for t in trials), desc=f"{len(trials)} trials", unit="step",
              disable=None if bar is None else not bar) as steps:
        def finished(summary: dict, count: int) -> None:
            if progress is None:
                return
            line = f"{summary['label']}: done in {summary['wall_seconds']:.0f} s ({count}/{len(trials)} trials)"
            if steps.disable:
                progress(line)
            else:
                steps.write(line)  # above the bar, which stays at the bottom

        if workers == 1:
            summaries = []
            for t in trials:
                summaries.append(run_trial(t, device, threads, on_step=lambda: steps.update(1)))
                finished(summaries[-1], len(summaries))
        else:
            summaries = _run_in_processes(trials, device, threads, workers, steps, finished)
    wall = time.perf_counter() - started
    write_outputs(summaries, out, wall)
    if progress is not None:
        progress(f"{len(trials)} trials on {device} with {workers} worker(s) in {wall:.1f} s; files in {out}")
    return summaries


def _run_in_processes(trials: list[dict], device: str, threads: int, workers: int, steps,
                      finished: Callable[[dict, int], None]) -> list[dict]:
    """``run_trial`` of every trial in ``workers`` spawned processes (a forked CUDA context is
    unusable), in the order given; each process puts one item on a shared queue per epoch or
    batch done, and this process moves ``steps`` (a tqdm bar) on from them."""
    import functools
    import multiprocessing
    import queue
    from concurrent.futures import FIRST_COMPLETED, wait

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
        done_steps = manager.Queue()
        futures = [pool.submit(run_trial, t, device, threads, functools.partial(done_steps.put, 1)) for t in trials]
        pending, count = set(futures), 0
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while True:
                try:
                    done_steps.get_nowait()
                except queue.Empty:
                    break
                steps.update(1)
            for future in done:
                count += 1
                finished(future.result(), count)
        return [future.result() for future in futures]


def write_outputs(summaries: list[dict], out: Path, wall_seconds: float) -> None:
    """summary.json (everything but examples), summary.csv (the table), examples.jsonl; each atomically."""
    plain = [{k: v for k, v in s.items() if k != "examples"} for s in summaries]
    _write_atomic(out / SUMMARY_JSON, json.dumps({"wall_seconds": wall_seconds, "trials": plain}, indent=1))
    header, rows = table_rows(plain)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(header)
    writer.writerows(rows)
    _write_atomic(out / SUMMARY_CSV, table.getvalue())
    lines = [json.dumps({"trial": s["label"], **r}) for s in summaries for r in s.get("examples", [])]
    _write_atomic(out / EXAMPLES_JSONL, "\n".join(lines) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the table


def table_rows(summaries: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and cells: trial, epochs, final loss, clean, one column per (attack, ε), flags, wall time."""
    # Sorted by (attack, ε), so the grid's table (read back from the store) has the same columns.
    columns = sorted({c for s in summaries for c in s["accuracy"]}, key=_column_key)
    header = ["trial", "epochs", "final loss", "clean", *columns, "flags", "wall s"]
    rows = []
    for s in summaries:
        loss = s.get("final_loss")
        rows.append([
            s["label"], str(s["epochs"]), "–" if loss is None or not math.isfinite(loss) else f"{loss:.3f}",
            f"{s['clean_accuracy']:.3f}", *[_acc(s["accuracy"].get(c)) for c in columns],
            ",".join(s.get("flags") or []) or "–", _secs(s.get("wall_seconds")),
        ])
    return header, rows


def format_table(summaries: list[dict]) -> str:
    """The fidelity table as markdown (accuracies in [0, 1]; robust = correct clean and under attack)."""
    header, rows = table_rows(summaries)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _column_key(column: str) -> tuple:
    attack, _, eps = column.rpartition("@")
    return attack, float(eps)


def _acc(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _secs(value) -> str:
    return "–" if value is None else f"{value:.0f}"
