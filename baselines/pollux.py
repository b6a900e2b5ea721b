"""Pollux (Qiao et al., OSDI'21): goodput-optimised elastic scheduling with co-adaptive batch sizes.

Paper: "Pollux: Co-adaptive Cluster Scheduling for Goodput-Optimized Deep Learning", OSDI'21;
the rules follow its simulator artifact (petuum/adaptdl, branch ``osdi21-artifact``), see
``../shared/papers/modern.md`` section 1.

Models:

- Goodput = throughput x statistical efficiency, per job and allocation, with the batch size
  re-optimised for every allocation (:mod:`envs.goodput`; the policy runs every goodput job with
  ``adaptive=True``). Plain (non-goodput) jobs use the simulator's speed model at their own size.
- Every round (``round_length`` = 60 s) the whole allocation is recomputed. Each job's *speedup*
  on ``n`` GPUs is its goodput there divided by its goodput at a fair share of
  ``ceil(cluster GPUs / jobs)`` GPUs on one node; an allocation that differs from the job's
  current one is multiplied by the restart factor ``max(age - restarts x delta, 0) / (age +
  delta)`` (``delta`` = 30 s, age since submission).
- The allocation maximises the power mean ``(mean_j (speedup_j + 1e-3) ** p) ** (1 / p)`` with
  ``p = -1`` (fairness-leaning), i.e. minimises ``sum_j 1 / (speedup_j + 1e-3)`` subject to the
  cluster's GPUs. Jobs never run before are capped at 1 GPU and every job at twice the largest
  allocation it has run at (Pollux's exploration cap), and at its own ``max_gpus``.
- Preemptive and elastic: any job may grow, shrink, move or be suspended each round; the core
  charges its restart delay (30 s by default) to every changed job.

Optimiser (documented deviation): Pollux searches node-level allocations with a genetic
algorithm (population 100, 100 generations). Because the objective is a sum of per-job terms and
GPUs are the only shared constraint, this module solves it *exactly* by dynamic programming over
GPU counts (a multiple-choice knapsack: one group per job, one item per allowed count), which
reaches allocations at least as good as the GA's, deterministically and in milliseconds.

Simplifies:

- The goodput model is the simulator's own (an oracle): Pollux's agents learn theirs online from
  the placements each job has run at; the exploration cap above stands in for that learning.
- Counts are restricted to powers of two within a node and whole nodes beyond (a job spanning
  nodes takes them whole): such allocations always pack, and Pollux's "at most one distributed
  job per node" rule holds by construction. Placement is the core's consolidate-first placer.
- Heterogeneity-agnostic, as Pollux is: on a cluster with several GPU types the optimiser sees
  one pool of GPUs and each job's goodput averaged over the types; types are then assigned
  largest job first, keeping a running job's type when it has room.
- Jobs arriving between rounds wait for the next round (as in the artifact); GPUs freed between
  rounds stay idle until then.

Knobs: ``round_length=60`` s, ``p=-1.0``, ``restart_delta=30.0`` s (the penalty's delta; the
actual delay is the simulator's ``restart_overhead``), ``growth=2.0`` (the exploration cap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numba import njit

from baselines.base import EMPTY, RUNNING, WAITING, Baseline, BaselineKnobs, settled
from envs.policy import Allocation, ClusterView

_EPS = 1e-3


def allowed_counts(node_size: int, total: int) -> np.ndarray:
    """GPU counts a job may get: powers of two up to a node, then whole nodes up to ``total``."""
    small = [1 << i for i in range(node_size.bit_length()) if (1 << i) <= node_size]
    return np.array(sorted(set(small) | set(range(node_size, total + 1, node_size))), dtype=np.int64)


def knapsack(costs: np.ndarray, sizes: np.ndarray, capacity: int) -> tuple[np.ndarray, float]:
    """Choose one item per group minimising the total cost within ``capacity``.

    ``costs`` ``(J, C)`` (``inf``: not allowed), ``sizes`` ``(C,)`` or ``(J, C)`` non-negative
    integers (item 0 is usually "nothing", size 0). Returns the chosen item per group and the
    total cost (``inf`` when no choice fits). Dynamic programming over the capacity,
    O(J x C x capacity), compiled (:func:`_knapsack`); ties go to the first item.
    """
    costs = np.ascontiguousarray(costs, dtype=np.float64)
    sizes = np.ascontiguousarray(np.broadcast_to(np.asarray(sizes, dtype=np.int64), costs.shape))
    return _knapsack(costs, sizes, int(capacity))


@njit(cache=True, nogil=True, error_model="numpy")
def _knapsack(costs: np.ndarray, sizes: np.ndarray, capacity: int) -> tuple[np.ndarray, float]:
    """:func:`knapsack`'s dynamic programme: ``best[g]`` is the least cost of the groups so far
    within ``g`` GPUs; each group's choice at ``g`` is the first item of least cost (a NaN cost
    wins, as ``argmin`` has it)."""
    J, C = costs.shape
    best = np.zeros(capacity + 1)
    new = np.empty(capacity + 1)
    choice = np.zeros((J, capacity + 1), dtype=np.int64)
    for j in range(J):
        for g in range(capacity + 1):
            pick = 0
            value = np.inf
            first = True
            for c in range(C):
                prev = g - sizes[j, c]
                v = best[prev] + costs[j, c] if prev >= 0 else np.inf
                if v != v:
                    pick, value = c, v
                    break
                if first or v < value:
                    pick, value, first = c, v, False
            choice[j, g] = pick
            new[g] = value
        best[:] = new
    picks = np.zeros(J, dtype=np.int64)
    cap = capacity
    for j in range(J - 1, -1, -1):
        picks[j] = choice[j, cap]
        cap = max(cap - sizes[j, picks[j]], 0)  # < 0 only when nothing fits (total inf)
    return picks, best[capacity]


class Pollux(Baseline):
    """Goodput-optimised elastic allocation (power-mean of fair-share speedups, restart factor)."""

    name = "pollux"
    job_fields: ClassVar[dict[str, tuple[type, object]]] = {"max_seen": (np.int64, 0)}

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        round_length: float = 60.0
        """re-allocation period, seconds (Pollux's 60 s)"""
        p: float = -1.0
        """power of the mean of fair-share speedups (< 0: leans to fairness)"""
        restart_delta: float = 30.0
        """the restart penalty's delta, seconds (the actual delay is the simulator's restart overhead)"""
        growth: float = 2.0
        """exploration cap: a job gets at most ``growth`` x the most GPUs it has run on (>= 1)"""

        def __post_init__(self) -> None:
            round_length, p, restart_delta, growth = self.round_length, self.p, self.restart_delta, self.growth
            if not round_length > 0:
                raise ValueError(f"round_length must be > 0 seconds, got {round_length}")
            if not p < 0:
                raise ValueError(f"p must be < 0 (a fairness-leaning power mean), got {p}")
            if not restart_delta >= 0:
                raise ValueError(f"restart_delta must be >= 0 seconds, got {restart_delta}")
            if not growth >= 1:
                raise ValueError(f"growth must be >= 1, got {growth}")
            self._set(round_length=float(round_length), p=float(p), restart_delta=float(restart_delta),
                      growth=float(growth))

    def plan(self, view: ClusterView) -> Allocation | None:
        st = view.status
        active = st != EMPTY
        idle = ~(st == RUNNING).any(axis=1) & (st == WAITING).any(axis=1)
        # a round where every job is a running rigid gang changes nothing: each keeps its GPUs (the
        # cost of no GPUs, eps**p, exceeds any feasible allocation's), so the knapsack is skipped
        due = (np.asarray(view.at_round_boundary, dtype=bool) & ~settled(view)) | idle
        if not (due & active.any(axis=1)).any():
            return None
        E, S = st.shape
        T = len(view.gpu_types)
        node_size = int(view.node_capacity.max())
        total = int(view.total_gpus)
        base = allowed_counts(node_size, min(total, int(view.max_gpus.max(initial=1))))
        # per slot: the allowed counts, plus the job's own request (a rigid gang has only that)
        counts = np.concatenate([np.broadcast_to(base, (E, S, len(base))), view.gpus[:, :, None]], axis=2)
        # rate of every slot at every candidate count, averaged over GPU types (agnostic)
        cap_t = np.asarray(view.capacity, dtype=np.float64)
        nodes = np.maximum(1, -(-counts // node_size))
        rate = np.average(np.stack([view.rate_at(counts, k, nodes=nodes, adaptive=True) for k in range(T)]),
                          axis=0, weights=cap_t)
        n_jobs = np.maximum(active.sum(axis=1), 1)
        fair_n = np.minimum(-(-total // n_jobs), node_size)
        fair = np.average(np.stack([view.rate_at(fair_n[:, None], k, nodes=1, adaptive=True) for k in range(T)]),
                          axis=0, weights=cap_t)
        with np.errstate(divide="ignore", invalid="ignore"):
            speedup = np.where(fair[:, :, None] > 0, rate / fair[:, :, None], 0.0)
        # caps: exploration (2 x the largest allocation run at), the job's bounds
        max_seen = self.jobs.gather("max_seen", view)
        cap = np.minimum(view.max_gpus, np.maximum(np.floor(self.growth * max_seen), 1)).astype(np.int64)
        ok = (counts <= np.maximum(cap, view.min_gpus)[:, :, None]) & (counts >= view.min_gpus[:, :, None])
        ok[:, :, -1] &= ~np.isin(view.gpus, base)  # the request column only when not already a candidate
        # restart factor for allocations other than the current one
        age = np.maximum(view.clock[:, None] - view.submit, 0.0)
        d = self.restart_delta
        factor = np.maximum(age - view.restarts * d, 0.0) / (age + d) if d > 0 else np.ones_like(age)
        current = counts == view.allocated[:, :, None]
        value = np.where(current, speedup, speedup * factor[:, :, None])
        cost = np.where(ok, (value + _EPS) ** self.p, np.inf)
        cost0 = np.full((E, S, 1), _EPS ** self.p)  # no GPUs
        costs = np.concatenate([cost0, cost], axis=2)
        sizes = np.concatenate([np.zeros((E, S, 1), dtype=np.int64), counts], axis=2)
        n_new = np.zeros((E, S), dtype=np.int64)
        t_new = view.gpu_type.copy()
        for e in np.flatnonzero(due & active.any(axis=1)):
            slots = np.flatnonzero(active[e])
            slots = slots[np.argsort(view.job[e, slots], kind="stable")]
            picks, _ = knapsack(costs[e, slots], sizes[e, slots], total)
            n_e = sizes[e, slots, :][np.arange(len(slots)), picks]
            t_new[e, slots] = self._assign_types(view, e, slots, n_e)  # may zero jobs that fit no type
            n_new[e, slots] = n_e
        keep = ~due[:, None]
        n_new = np.where(keep, view.allocated, n_new)
        t_new = np.where(keep, view.gpu_type, t_new)
        n_new = np.where(active, n_new, 0)
        self.jobs.scatter("max_seen", view, np.maximum(max_seen, n_new), active & (n_new > max_seen))
        return Allocation(n_new, t_new, adaptive=active)

    @staticmethod
    def _assign_types(view: ClusterView, e: int, slots: np.ndarray, n: np.ndarray) -> np.ndarray:
        """One GPU type per job, largest first, a running job keeping its type when it has room;
        jobs that fit no type get nothing (0 GPUs; only on mixed clusters)."""
        room = np.asarray(view.capacity, dtype=np.int64).copy()
        out = view.gpu_type[e, slots].copy()
        order = np.argsort(-n, kind="stable")
        for i in order:
            if n[i] == 0:
                continue
            cur = out[i]
            if view.status[e, slots[i]] == RUNNING and room[cur] >= n[i]:
                k = cur
            else:
                k = int(room.argmax())
                if room[k] < n[i]:
                    n[i] = 0
                    continue
            room[k] -= n[i]
            out[i] = k
        return out
