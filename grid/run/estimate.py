"""How long the rest of an experiment will take, for ``er-grid status``: measured, not modelled.

Every trial measures itself on the machine it runs on, sharing it as it does:

- an epoch: the training seconds between its oldest and newest kept checkpoints over the
  epochs between them (the sidecars' ``train_seconds``, from the trial's own clock);
- an evaluation batch of one (attack, ε): the time between the commit of that batch file and
  the trial's record before it (the previous batch, or the newest checkpoint before the first),
  the median over the trial's batches of that (attack, ε).

A trial's time left is its remaining epochs and batches at its own rates, plus the stages after
the evaluation, less the time already spent on the piece in progress (at most that piece).
What a trial has not measured yet comes from trials that differ from it only in the seed or λ, else
from the cost model (:func:`grid.run.cost.trial_cost`) times how far the cost model is off on
what the grid has measured (calibrated as the grid runs: per attack, then evaluation as a whole,
then training). The trials are then placed as Tune runs them: as many at once as the grid has
run at once (counted from the trials' own records), the pending ones in order as slots free,
each after the pause measured between one trial's end and the next one's start of training; the
estimate is when the last one ends. Before any trial has measured anything it is unknown.

The cost model builds each attack to count its passes, so this needs torch; without it
``status`` says the estimate is unavailable.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import statistics
import time
from typing import Optional

from grid.common.fingerprint import canonical_json

from .cost import trial_cost

IN_PROGRESS = ("TRAINING", "EVALUATING")
# Trials that differ only in these do the same work: the seed draws other numbers, λ weighs a
# loss term; their measured rates stand for each other's.
PEER_FREE = ("seed", "lam")


@dataclasses.dataclass
class TrialPace:
    """One trial's work left and what it measured. Items are ``(attack, ε)``; seconds are wall time."""

    name: str
    state: str
    peers: str  # trials with the same key differ only in PEER_FREE fields
    epochs_left: int
    batches_left: dict
    rest_left: bool  # the stages after the evaluation (trial row, codes, detection, sanity)
    epoch_s: Optional[float]  # measured
    batch_s: dict  # item → measured seconds
    model_epoch_s: float
    model_batch_s: dict  # item → cost model seconds
    model_rest_s: float
    rest_s: Optional[float]  # measured: from its last batch to its last other file, once DONE
    started_at: Optional[float]  # when its training began (newest sidecar time − training seconds)
    last_at: Optional[float]  # its newest record
    finished_at: Optional[float]  # its last file, once DONE


def trial_pace(t) -> TrialPace:
    """The pace of one ``grid.experiment.status.TrialStatus`` (its ``config``, epochs, the
    training seconds in ``elapsed_s``, ``epoch_at`` and per batch ``batch_at``)."""
    config = t.config
    cost = trial_cost(config)
    per_batch = {}
    base = trial_cost(dataclasses.replace(config, eval_plan=(), codes=None, detection=None)).eval_seconds
    for spec in config.eval_plan:
        alone = trial_cost(dataclasses.replace(config, eval_plan=(spec,), codes=None, detection=None)).eval_seconds
        per_batch[(spec.attack, float(spec.eps))] = (alone - base) / config.num_eval_batches
    done = {(a, float(e)): 0 for a, e in per_batch}
    for (attack, eps, _batch), _at in t.batch_at:
        done[(attack, float(eps))] = done.get((attack, float(eps)), 0) + 1
    key = {k: v for k, v in config.to_dict().items() if k not in PEER_FREE}
    epoch_at, finished_at = t.epoch_at, t.finished_at
    records = [at for _key, at in t.batch_at] + [at for at in (epoch_at, finished_at) if at]
    last_batch = max((at for _key, at in t.batch_at), default=None)
    return TrialPace(
        name=t.name, state=t.state, peers=canonical_json(key),
        epochs_left=max(t.epochs - t.epochs_done, 0),
        batches_left={item: max(config.num_eval_batches - done[item], 0) for item in per_batch},
        rest_left=t.state != "DONE",
        epoch_s=epoch_seconds(t),
        batch_s=batch_seconds(t.batch_at, epoch_at),
        model_epoch_s=cost.train_seconds / config.epochs if config.epochs else 0.0,
        model_batch_s=per_batch, model_rest_s=max(cost.eval_seconds - sum(
            s * config.num_eval_batches for s in per_batch.values()), 0.0),
        rest_s=finished_at - last_batch if t.state == "DONE" and finished_at and last_batch
        and finished_at >= last_batch else None,
        started_at=epoch_at - t.elapsed_s if epoch_at and t.elapsed_s > 0 else None,
        last_at=max(records) if records else None,
        finished_at=finished_at if t.state == "DONE" else None,
    )


def epoch_seconds(t) -> Optional[float]:
    """Seconds per epoch of a trial: between its oldest and newest kept checkpoints, so the
    first epoch (slower: the process warming up) drops out once a later one is kept and the
    rate follows the machine's load; with one checkpoint, its training seconds over its epochs."""
    kept = [(e, s) for e, s in t.epoch_seconds if e > 0] or ([(t.epochs_done, t.elapsed_s)] if t.epochs_done else [])
    if not kept:
        return None
    (first, at_first), (last, at_last) = kept[0], kept[-1]
    if last > first and at_last > at_first:
        return (at_last - at_first) / (last - first)
    return at_last / last if at_last > 0 else None


def batch_seconds(batch_at, epoch_at: Optional[float]) -> dict:
    """Median seconds per batch of each ``(attack, ε)``: the gap before each batch's commit,
    in commit order, starting from the newest checkpoint. ``batch_at``: ``((attack, ε, batch),
    time)`` pairs. A gap across a stop and a resume is an outlier the median mostly ignores."""
    gaps: dict = {}
    previous = epoch_at
    for (attack, eps, _batch), at in sorted(batch_at, key=lambda pair: pair[1]):
        if previous is not None and at >= previous:
            gaps.setdefault((attack, float(eps)), []).append(at - previous)
        previous = at
    return {item: statistics.median(values) for item, values in gaps.items()}


@dataclasses.dataclass
class Calibration:
    """Measured seconds over the cost model's, for what the grid has measured, and the rates
    measured per group of peers (trials that differ only in ``PEER_FREE`` fields)."""

    train: Optional[float]
    evaluation: Optional[float]
    per_attack: dict
    peer_epoch: dict
    peer_batch: dict
    rest_mean: Optional[float]  # the finished trials' mean seconds after their evaluation

    @classmethod
    def of(cls, paces: list[TrialPace]) -> "Calibration":
        train, attack_sums, peer_epoch, peer_batch = [0.0, 0.0], {}, {}, {}
        rests = [p.rest_s for p in paces if p.rest_s is not None]
        for p in paces:
            if p.epoch_s is not None:
                train[0] += p.epoch_s
                train[1] += p.model_epoch_s
                peer_epoch.setdefault(p.peers, []).append(p.epoch_s)
            for item, seconds in p.batch_s.items():
                sums = attack_sums.setdefault(item[0], [0.0, 0.0])
                sums[0] += seconds
                sums[1] += p.model_batch_s.get(item, 0.0)
                peer_batch.setdefault((p.peers, item), []).append(seconds)
        measured = sum(s[0] for s in attack_sums.values())
        modelled = sum(s[1] for s in attack_sums.values())
        return cls(train=_ratio(*train), evaluation=_ratio(measured, modelled),
                   per_attack={a: r for a, s in attack_sums.items() if (r := _ratio(*s)) is not None},
                   peer_epoch={k: statistics.mean(v) for k, v in peer_epoch.items()},
                   peer_batch={k: statistics.mean(v) for k, v in peer_batch.items()},
                   rest_mean=statistics.mean(rests) if rests else None)

    def epoch(self, p: TrialPace) -> Optional[float]:
        if p.epoch_s is not None:
            return p.epoch_s
        if p.peers in self.peer_epoch:
            return self.peer_epoch[p.peers]
        scale = _first(self.train, self.evaluation)
        return None if scale is None else p.model_epoch_s * scale

    def batch(self, p: TrialPace, item) -> Optional[float]:
        if item in p.batch_s:
            return p.batch_s[item]
        if (p.peers, item) in self.peer_batch:
            return self.peer_batch[(p.peers, item)]
        scale = _first(self.per_attack.get(item[0]), self.evaluation, self.train)
        return None if scale is None else p.model_batch_s[item] * scale

    def rest(self, p: TrialPace) -> Optional[float]:
        # What follows the evaluation is mostly fixed work per trial (rows read back, files
        # written, the sanity rules): the finished trials' mean, else the calibrated cost model.
        if self.rest_mean is not None:
            return max(self.rest_mean, p.model_rest_s * (_first(self.evaluation, self.train) or 0.0))
        scale = _first(self.evaluation, self.train)
        return None if scale is None else p.model_rest_s * scale


def _ratio(measured: float, modelled: float) -> Optional[float]:
    return measured / modelled if measured > 0 and modelled > 0 else None


def _first(*values):
    return next((v for v in values if v is not None), None)


def trial_seconds_left(p: TrialPace, calibration: Calibration, now: float) -> Optional[float]:
    """Seconds until trial ``p`` is done, or None when a piece of its work has no rate yet."""
    if p.state == "DONE":
        return 0.0
    pieces = []  # (seconds each, how many), in the order the trial does them
    if p.epochs_left:
        pieces.append((calibration.epoch(p), p.epochs_left))
    pieces += [(calibration.batch(p, item), left) for item, left in p.batches_left.items() if left]
    if p.rest_left:
        pieces.append((calibration.rest(p), 1))
    if any(seconds is None for seconds, _count in pieces):
        return None
    left = sum(seconds * count for seconds, count in pieces)
    if p.state in IN_PROGRESS and p.last_at is not None and pieces:
        # The piece in progress has been running since the trial's newest record.
        left -= min(max(now - p.last_at, 0.0), pieces[0][0])
    return max(left, 0.0)


def concurrency(paces: list[TrialPace], now: float) -> int:
    """How many trials the grid runs at once: the most whose records overlap in time (a trial
    from when its training began to its newest record, or now while in progress), and at
    least the trials in progress now."""
    events = []
    for p in paces:
        if p.started_at is None:
            continue
        end = now if p.state in IN_PROGRESS else (p.last_at or p.started_at)
        events += [(p.started_at, 1), (end, -1)]
    running = most = 0
    for _at, change in sorted(events, key=lambda e: (e[0], e[1])):
        running += change
        most = max(most, running)
    return max(1, most, sum(1 for p in paces if p.state in IN_PROGRESS))


def start_gap(paces: list[TrialPace]) -> float:
    """The median seconds between a trial's end and the start of training of the trial that
    took its slot (Tune ending one trial, starting the next, its data and its set-up); 0 before
    any trial has followed another."""
    ends = sorted(p.finished_at for p in paces if p.finished_at is not None)
    gaps = []
    for p in paces:
        before = [end for end in ends if p.started_at is not None and end <= p.started_at]
        if before:
            gaps.append(p.started_at - before[-1])
    return statistics.median(gaps) if gaps else 0.0


def remaining_seconds(trials: list, now: Optional[float] = None) -> Optional[float]:
    """Estimated seconds until every trial is done, or None before the grid has measured
    enough to say (see the module docstring).

    trials: ``grid.experiment.status.TrialStatus`` rows; the pending ones are started in this order.
    now: the time the records are compared with (default: the clock, as file times are).
    """
    now = time.time() if now is None else now
    planned = [t for t in trials if getattr(t, "config", None) is not None]
    if all(t.state == "DONE" for t in planned):
        return 0.0  # nothing left to price: no method needs loading
    try:
        paces = [trial_pace(t) for t in planned]
    except ValueError as err:
        from er_core.methods.plugins import PluginError

        if not isinstance(err, PluginError) and not isinstance(err.__cause__, PluginError):
            raise
        # A plugin method that does not import here (status runs without it): no cost model.
        raise ImportError(str(err).splitlines()[0], name="a plugin method") from err
    calibration = Calibration.of(paces)
    left = {p.name: trial_seconds_left(p, calibration, now) for p in paces}
    if any(v is None for v in left.values()):
        return None
    slots = [left[p.name] for p in paces if p.state in IN_PROGRESS]
    gap = start_gap(paces)
    waiting = [gap + left[p.name] for p in paces if p.state not in IN_PROGRESS and p.state != "DONE"]
    width = concurrency(paces, now)
    # Free slots (the grid ran more at once than are in progress now) start at 0.
    slots += [0.0] * max(width - len(slots), 0)
    heapq.heapify(slots)
    for seconds in waiting:
        heapq.heappush(slots, heapq.heappop(slots) + seconds)
    return max(slots) if slots else 0.0


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown (no trial has measured its pace yet)"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"
