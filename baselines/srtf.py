"""SRTF: shortest remaining time first, preemptive at every event.

Paper: the clairvoyant baseline of Tiresias (Gu et al., NSDI'19), its simulator's ``shortest``
policy: remaining time = duration - executed time, re-sorted at every event, preempting and
skipping jobs that do not fit (``run_sim.py`` L592-725; ``../shared/papers/classic.md`` section 6).

Models: at every event (arrival, completion, end of a restart, round boundary) all active jobs
compete in increasing remaining work (``view.remaining``, reference-seconds); the greedy gang
allocator serves them in that order, backfilling what fits, and running jobs that lose their
place are preempted (checkpointed; they resume later and pay the restart overhead).

Simplifies: durations are an oracle (``needs_durations = True``). Remaining *time* is measured as
remaining reference work, i.e. the time left at the job's requested GPU count on the reference GPU
type (equal to Tiresias' duration - executed time on a homogeneous reference cluster). The
Tiresias simulator charges no restart cost; here the core's restart overhead (30 s by default)
applies to every resume. A job whose remaining work ties keeps FIFO order.

Knobs: none. In the Gymnasium env preemption can only happen at round boundaries (``preemption``
option), so there SRTF preempts at rounds only.
"""

from __future__ import annotations

import numpy as np

from baselines.base import EMPTY, Baseline
from envs.policy import ClusterView, Priority


class SRTF(Baseline):
    """Shortest remaining (known) time first, preemptive at every event."""

    name = "srtf"
    needs_durations = True

    def plan(self, view: ClusterView) -> Priority:
        return Priority(np.where(view.status != EMPTY, -view.remaining, -np.inf), preempt=True)
