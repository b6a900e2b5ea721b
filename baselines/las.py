"""LAS: least attained service first (continuous 2D-LAS), preemptive at round boundaries.

Paper: least-attained-service scheduling as Tiresias (Gu et al., NSDI'19) defines it for DL jobs
in two dimensions (attained service = GPUs x executed time, "2D-LAS"); the undiscretised form of
Tiresias-L. Blox's LAS re-sorts every 300 s round (``las.py``, ``las_scheduler.py`` L77;
``../shared/papers/classic.md`` sections 1 and 6).

Models: every job's attained GPU-service (``view.attained``: GPU-seconds it has held) orders it;
least first, ties FIFO. At each round boundary all active jobs compete (running jobs that lose
their place are preempted); between rounds, waiting jobs fill free GPUs in the same order and
nothing is preempted. Jobs that do not fit are skipped (greedy backfill).

Simplifies: continuous priorities (no queues; see :mod:`baselines.tiresias` for the discretised
version); service counts GPU-seconds held, including restart time. Blox's placement stops at the
first job it cannot place; here the core's greedy backfills (as Tiresias' LAS does).

Knobs: ``round_length`` (300 s, Blox's round) -- the re-sorting period. No duration knowledge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from baselines.base import EMPTY, Baseline, BaselineKnobs
from envs.policy import ClusterView, Priority


class LAS(Baseline):
    """Least attained GPU-service first; preempts at round boundaries."""

    name = "las"

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        round_length: float = 300.0
        """re-sorting period, seconds (Blox's round: 300 s)"""

        def __post_init__(self) -> None:
            self._set(round_length=float(self.round_length))

    def plan(self, view: ClusterView) -> Priority:
        scores = np.where(view.status != EMPTY, -view.attained, -np.inf)
        return Priority(scores, preempt=view.at_round_boundary.copy())
