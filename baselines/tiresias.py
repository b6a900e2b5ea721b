"""Tiresias (Gu et al., NSDI'19): discretised two-dimensional least-attained-service (2D-LAS).

Paper: "Tiresias: A GPU Cluster Manager for Distributed Deep Learning", NSDI'19; rules and
defaults from its simulator (SymbioticLab/Tiresias ``simulator/run_sim.py`` ``dlas-gpu``,
``jobs.py``), as summarised in ``../shared/papers/classic.md`` section 1.

Models (the ``dlas-gpu`` rule, no duration knowledge -- GPU demand only):

- Attained service is GPU-time: GPUs x executed time (``view.attained``), counted since the job's
  last promotion.
- K priority queues split by ``thresholds`` on that service; a new job enters Q0; a job whose
  service reaches its queue's limit is demoted to the tail of the next queue.
- Strict priority across queues; inside a queue running jobs come first, then pending jobs in
  the order they entered the queue (FIFO); ties to the earlier job.
- At every event all jobs are re-scanned high to low and each runs (keeping its GPUs if running)
  if it fits, otherwise it waits and, if running, is preempted; the scan continues past jobs that
  do not fit (greedy backfill, no reservation).
- Starvation promotion (``promote_knob``, the paper's STARVELIMIT / PROMOTEKNOB): a job outside Q0
  whose pending time since its last promotion (counted once it has run) reaches
  ``promote_knob`` x its executed wall time since its last promotion moves to the tail of Q0,
  and both counters restart from 0 (``run_sim.py`` L1060-1074).
- Placement (paper section 3.3): only models whose parameters are skewed towards a few large
  tensors need consolidation. Here a model is "skewed" when its measured spread-gang throughput
  factor (:data:`traces.models.LOCALITY`) is below ``consolidate_below``; a skewed multi-GPU job
  that cannot be placed on its minimum number of nodes with the GPUs free at the decision waits
  instead of starting spread, for at most ``consolidation_wait`` seconds since it last became
  pending (then it competes like any job and may be spread), and never on an env with nothing
  running. Other jobs take the core's
  consolidate-first placement, which spreads them when it must.

Simplifies:

- Queue thresholds are checked at decisions, not at the exact crossing instant: the reference
  simulator inserts crossing and promotion events; the core has no hook for policy-chosen events,
  so demotion/promotion lag by at most one round (``round_length``, 300 s), which
  classic.md allows. The demotion is back-dated to the crossing time for the in-queue order.
- The core charges its restart overhead (30 s default) on each resume; the Tiresias simulator
  charges none (the Pollux port charges 30 s).
- The consolidation check looks at GPUs free *before* the decision (placements of running jobs
  are not visible to policies), so a held skewed gang does not preempt to make room for itself;
  without the ``consolidation_wait`` bound such gangs starve behind lower-priority jobs (measured
  on Philly windows: a 16-GPU job waiting 20,000 s), hence the bound (a delay-scheduling
  reading of the paper's rule, not the paper's own).
- Only Tiresias-L (2D-LAS); the Gittins-index variant (2D-Gittins) is not included.

Knobs (reference-simulator defaults):

- ``thresholds=(3250, 7200)`` GPU-seconds: the code's default K = 3 queues (``jobs.py`` L102-104;
  the paper reports K = 2 enough; the Pollux port uses one threshold at 57,600).
- ``promote_knob=0`` (off, as ``dlas-gpu`` runs it; swept over 0.5 ... 1000 in the paper).
- ``round_length=300`` s: threshold-check period.
- ``preempt="event"``: re-decide with preemption at every event (reference); ``"round"``
  preempts only at round boundaries (what the Gymnasium env can express).
- ``consolidate_below=0.8``: models below this locality factor are skewed (ResNet-18,
  Transformer, LM); ``None`` disables the rule. ``consolidation_wait=300`` s: the most a skewed
  gang waits for a consolidated placement (one round).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from baselines.base import EMPTY, Baseline, BaselineKnobs, order_scores
from envs.policy import ClusterView, Priority
from traces import models


def consolidatable(view: ClusterView, gpus: np.ndarray) -> np.ndarray:
    """``(E, S)``: a gang of ``gpus`` fits, with the GPUs free now, on as few nodes as it could
    ever need (``ceil(gpus / largest node)``) of some GPU type."""
    free = view.free_per_node  # (E, N)
    node_type = view.node_type
    cap = np.asarray(view.node_capacity)
    ok = np.zeros(gpus.shape, dtype=bool)
    for k in range(len(view.gpu_types)):
        nodes = node_type == k
        if not nodes.any():
            continue
        biggest = int(cap[nodes].max())
        top = -np.sort(-free[:, nodes], axis=1)  # (E, n_k) descending
        cum = np.concatenate([np.zeros((len(top), 1), dtype=np.int64), np.cumsum(top, axis=1)], axis=1)
        need = np.clip(-(-gpus // biggest), 0, top.shape[1])  # nodes needed
        ok |= np.take_along_axis(cum, need, axis=1) >= gpus
    return ok


class Tiresias(Baseline):
    """Discretised 2D-LAS with starvation promotion and skew-aware consolidation."""

    name = "tiresias"
    job_fields: ClassVar[dict[str, tuple[type, object]]] = {
        "queue": (np.int64, 0),
        "base": (np.float64, 0.0),  # attained GPU-s at the last promotion
        "qtime": (np.float64, 0.0),  # when the job entered its current queue
        "pend": (np.float64, 0.0),  # pending time since the last promotion, once it has run
        "wsince": (np.float64, np.nan),  # when it last became pending (NaN while running)
    }
    env_fields: ClassVar[dict[str, tuple[type, object]]] = {"last_clock": (np.float64, np.nan)}

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        thresholds: tuple[float, ...] = (3250.0, 7200.0)
        """queue limits on attained GPU-seconds, sorted (simulator default: K = 3 queues)"""
        promote_knob: float = 0.0
        """starvation promotion: pending time >= this x executed time moves a job to Q0 (0: off)"""
        round_length: float | None = 300.0
        """threshold-check period, seconds (``None``: events only)"""
        preempt: str = "event"
        """``"event"``: re-decide with preemption at every event; ``"round"``: at round boundaries"""
        consolidate_below: float | None = 0.8
        """models whose locality factor is below this are skewed and wait to be consolidated
        (``None``: no consolidation rule)"""
        consolidation_wait: float = 300.0
        """the most a skewed gang waits for a consolidated placement, seconds"""

        def __post_init__(self) -> None:
            th = tuple(sorted(float(x) for x in self.thresholds))
            if any(x <= 0 for x in th):
                raise ValueError(f"thresholds must be > 0 GPU-seconds, got {self.thresholds}")
            if self.promote_knob < 0:
                raise ValueError(f"promote_knob must be >= 0 (0 = off), got {self.promote_knob}")
            if self.preempt not in ("event", "round"):
                raise ValueError(f"preempt must be 'event' or 'round', got {self.preempt!r}")
            self._set(thresholds=th, promote_knob=float(self.promote_knob),
                      round_length=None if self.round_length is None else float(self.round_length),
                      consolidation_wait=float(self.consolidation_wait))

    def _derive(self) -> None:
        self.thresholds = np.asarray(self.config.thresholds, dtype=np.float64)
        below = self.consolidate_below
        self._skewed = None if below is None else models.locality_vector() < float(below)

    def queues(self, view: ClusterView) -> np.ndarray:
        """``(E, S)`` current queue of each slot's job (as of the last decision; -1 if empty)."""
        return np.where(view.status != EMPTY, self.jobs.gather("queue", view), -1)

    def plan(self, view: ClusterView) -> Priority | None:
        jt = self.jobs
        jt.ensure(view)
        active = view.status != EMPTY
        run = view.running
        wait = view.waiting
        clock = view.clock
        last = self.envs["last_clock"]
        dt = np.where(np.isnan(last), 0.0, clock - last)[:, None]
        prev = np.where(np.isnan(last), clock, last)[:, None]
        self.envs["last_clock"] = clock.copy()

        seen, q0, base0, qtime0, pend0, wsince0 = jt.gather_many(
            view, ("seen", "queue", "base", "qtime", "pend", "wsince"))
        new = active & ~seen
        q = np.where(new, 0, q0)
        base = np.where(new, 0.0, base0)
        qtime = np.where(new, view.submit, qtime0)
        pend = np.where(new, 0.0, pend0)
        wsince = np.where(new, view.submit, wsince0)
        wsince = np.where(run, np.nan, np.where(wait & np.isnan(wsince), prev, wsince))
        attained = view.attained
        svc = attained - base
        gpus = view.gpus
        executed = svc / gpus

        # pending time accrues (over the interval that just ended) once the job has run
        accrue = wait & (executed > 0) & (dt > 0)
        pend = np.where(accrue, pend + dt, pend)
        # demotion: service since the last promotion reached the queue's limit
        level = np.searchsorted(self.thresholds, svc, side="right")
        demote = active & (level > q)
        if demote.any():
            crossed = self.thresholds[np.maximum(level - 1, 0)]
            held = np.maximum(view.allocated, 1)
            back = np.where(run, (svc - crossed) / held, 0.0)
            qtime = np.where(demote, np.maximum(clock[:, None] - back, qtime), qtime)
            q = np.where(demote, level, q)
        # starvation promotion
        promote = np.zeros_like(demote)
        if self.promote_knob > 0:
            promote = wait & (q > 0) & (executed > 0) & (pend >= self.promote_knob * executed)
            if promote.any():
                q = np.where(promote, 0, q)
                base = np.where(promote, attained, base)
                pend = np.where(promote, 0.0, pend)
                qtime = np.where(promote, clock[:, None], qtime)
        moved = np.isnan(wsince) != np.isnan(wsince0)
        changed = active & (new | accrue | demote | promote | moved)
        if changed.any():
            jt.scatter_many(view, changed, {"seen": True, "queue": q, "base": base, "qtime": qtime,
                                            "pend": pend, "wsince": wsince})

        if not wait.any():
            return None  # every running job keeps its GPUs (a preemptive greedy changes nothing)
        valid = active
        if self._skewed is not None:
            skewed = wait & (gpus > 1) & self._skewed[view.model] & (clock[:, None] - wsince < self.consolidation_wait)
            if skewed.any():
                hold = skewed & ~consolidatable(view, gpus) & run.any(axis=1, keepdims=True)
                valid = valid & ~hold
        scores = order_scores(view, [q, wait, qtime], valid)
        preempt = True if self.preempt == "event" else view.at_round_boundary.copy()
        return Priority(scores, preempt=preempt)
