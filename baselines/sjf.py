"""SJF: shortest (known) job first, non-preemptive.

Paper: the textbook clairvoyant baseline (DESIGN section 7; ``../shared/papers/classic.md``
section 6). Not Tiresias' ``sjf``, which orders by smallest GPU *demand* and preempts.

Models: waiting jobs served in increasing job duration (the trace duration = work in
reference-seconds, ``view.work``), skipping jobs that do not fit (greedy backfill, as DESIGN
asks: "both skip jobs that do not fit"); running jobs are never preempted.

Simplifies: durations are an oracle (the trace's), so ``needs_durations = True``: the policy
refuses to run when the env hides them. Duration is a job's own run time at its requested GPU
count (not GPU-time): ties to the earlier job.

Knobs: none.
"""

from __future__ import annotations

import numpy as np

from baselines.base import WAITING, Baseline
from envs.policy import ClusterView, Priority


class SJF(Baseline):
    """Shortest known duration first, non-preemptive, backfilling."""

    name = "sjf"
    needs_durations = True

    def plan(self, view: ClusterView) -> Priority:
        return Priority(np.where(view.status == WAITING, -view.work, -np.inf))
