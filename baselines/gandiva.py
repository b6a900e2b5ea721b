"""Gandiva (Xiao et al., OSDI'18): time-slicing of over-subscribed GPUs, packing and migration.

Paper: "Gandiva: Introspective Cluster Scheduling for Deep Learning", OSDI'18; what a faithful
simplified version keeps is in ``../shared/papers/classic.md`` section 2 (mechanisms from the
paper; the 60 s quantum from Tiresias' Gandiva simulation, ``cluster.py`` L395).

Models:

- Reactive mode: an arriving job starts at once on free GPUs (arrival order, skipping jobs that
  do not fit); Gandiva has no size- or age-based priority.
- Time-slicing when demand exceeds the GPUs: jobs form one round-robin ready queue. A job enters
  its tail when it arrives or when it is suspended. At each quantum boundary (a round boundary of
  the core, ``quantum`` seconds), if any job is waiting, running jobs that have used a full quantum
  go back to the tail (most recently started last) and the head of the queue is served, gang by
  gang, backfilling what fits; the rest are suspended. Jobs started during the quantum keep their
  GPUs until the next boundary. With no job waiting, nothing rotates.
- Placement: the core's consolidate-first placer (best fit on one node, else fewest nodes), which
  groups jobs on partly used servers much as Gandiva's size affinity does; a suspended job that
  resumes is placed afresh, so rotation also defragments (Gandiva's migration for locality).
- No duration knowledge; uses GPU counts and the clock only.

Simplifies:

- No packing of several jobs on one GPU (the core's ``partner`` sharing is left to Lucid):
  time-slicing is round-robin suspend/resume of whole gangs at quantum boundaries.
- Suspend/resume costs the core's checkpoint-restart overhead (30 s default), not Gandiva's
  sub-second in-GPU-memory suspend; so the default quantum is the core's 300 s round rather than
  the paper's 60 s, which would spend a third of every slice restarting (``quantum=60`` gives the
  paper's value).
- Explicit migration of a running, unchanged job is impossible through the policy API (the core
  keeps unchanged allocations in place); defragmentation happens only when jobs resume.
- Affinity classes, introspective packing and grow-shrink of elastic jobs are not modelled (jobs
  run at their requested size).

Knobs: ``quantum=300`` s (round-robin slice; paper 60 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from baselines.base import Baseline, BaselineKnobs, order_scores
from envs.policy import ClusterView, Priority


class Gandiva(Baseline):
    """Round-robin time-slicing of gangs at quantum boundaries when GPUs are over-subscribed."""

    name = "gandiva"
    job_fields: ClassVar[dict[str, tuple[type, object]]] = {
        "enq": (np.float64, 0.0),  # when the job (re-)entered the ready queue
        "since": (np.float64, np.nan),  # start of its current run (NaN: not running)
    }
    env_fields: ClassVar[dict[str, tuple[type, object]]] = {"last_clock": (np.float64, np.nan)}

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        quantum: float = 300.0
        """round-robin time slice, seconds (the core's 300 s round; paper 60 s)"""

        def __post_init__(self) -> None:
            if not self.quantum > 0:
                raise ValueError(f"quantum must be > 0 seconds, got {self.quantum}")
            self._set(quantum=float(self.quantum))

    def _derive(self) -> None:
        self.round_length = self.quantum

    def plan(self, view: ClusterView) -> Priority | None:
        jt = self.jobs
        jt.ensure(view)
        run = view.running
        wait = view.waiting
        active = run | wait
        clock = view.clock[:, None]
        last = self.envs["last_clock"]
        prev = np.where(np.isnan(last), view.clock, last)[:, None]
        self.envs["last_clock"] = view.clock.copy()

        seen, enq0, since0 = jt.gather_many(view, ("seen", "enq", "since"))
        new = active & ~seen
        enq = np.where(new, view.submit, enq0)
        since = np.where(new, np.nan, since0)
        started = run & np.isnan(since)  # started by the previous decision
        since = np.where(started, prev, since)
        suspended = wait & ~np.isnan(since)  # suspended by the previous decision
        enq = np.where(suspended, prev, enq)
        since = np.where(wait, np.nan, since)
        changed = new | started | suspended
        if changed.any():
            jt.scatter_many(view, changed, {"seen": True, "enq": enq, "since": since})

        if not wait.any():
            return None  # nothing to start or rotate in
        rotate = view.at_round_boundary & wait.any(axis=1)
        expired = run & (clock - since >= self.quantum - 1e-9) & rotate[:, None]
        # classes: running within its quantum, waiting (queue order), expired (newest first)
        cls = np.where(expired, 2, np.where(run, 0, 1))
        key = np.where(expired, -since, np.where(run, 0.0, enq))
        scores = order_scores(view, [cls, key], active)
        return Priority(scores, preempt=rotate)
