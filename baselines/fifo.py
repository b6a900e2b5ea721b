"""FIFO: YARN-CS, strict head-of-line first-in-first-out (and FJF, its backfilling twin).

Paper: the production baseline of Tiresias (Gu et al., NSDI'19) and Gandiva (Xiao et al.,
OSDI'18): Apache YARN's capacity scheduler, which serves DL jobs in arrival order. The papers'
simulators implement it as *strict* head-of-line: the scan stops at the first pending job that
cannot be placed (Tiresias ``run_sim.py`` ``fifo``; Gavel ``fifo.py``; Blox ``fifo.py``), and it is
non-preemptive (see ``../shared/papers/classic.md`` section 6).

Models: jobs in submit order; each runs on exactly its requested GPUs until it finishes; the head
of the queue blocks every later job until it fits. Placement is the core's consolidate-first
placer (Tiresias' default ``yarn`` scheme also packs a job on one node when it fits).

Simplifies: nothing of the rule; YARN's queues/VCs (capacity shares per team) are not modelled
(one queue for the whole cluster, as in the papers' simulators).

Knobs: none. :class:`FJF` (``"fjf"``, Tiresias' "fit-job-first") is the same order but skips
jobs that do not fit (greedy backfill, no reservation): the labelled backfilling variant.
"""

from __future__ import annotations

import numpy as np

from baselines.base import WAITING, Baseline
from envs.policy import ClusterView, Priority


class FIFO(Baseline):
    """YARN-CS FIFO: ``Priority(-submit, backfill=False)``, non-preemptive."""

    name = "fifo"
    backfill = False

    def plan(self, view: ClusterView) -> Priority:
        scores = np.where(view.status == WAITING, -view.submit, -np.inf)
        return Priority(scores, backfill=self.backfill)


class FJF(FIFO):
    """Fit-job-first: FIFO order, skipping jobs that do not fit (Tiresias' ``fjf``)."""

    name = "fjf"
    backfill = True
