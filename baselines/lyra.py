"""Lyra (Li et al., EuroSys'23): elastic scaling of training jobs onto loaned capacity.

Paper: "Lyra: Elastic Scheduling for Deep Learning Clusters", EuroSys'23 (arXiv 2202.07896,
"Aryl"); decision rules as summarised in ``../shared/papers/modern.md`` section 4 (no public
code; the value function and the reclaim rule are tagged unverified there).

Models:

- Two phases at every decision (every event and every ``round_length`` seconds):

  1. **Base demands** (a rigid job's request, an elastic job's ``min_gpus``). Running jobs keep
     their base on their GPU type: Lyra never preempts a base demand for another job. Waiting
     jobs are served shortest-job-first -- remaining work / rate at the base size on the
     fastest GPU type -- skipping those that do not fit, each on the fastest type with room.
     The GPUs that running elastic jobs hold *beyond* their base ("extra" workers) count as
     free in this phase: an arriving job whose base fits once extras are reclaimed starts at
     once, and the elastic jobs are scaled in (reclaim by scale-in before any preemption; base
     demands are never starved by extras).
  2. **Extra workers**: the GPUs left after phase 1 go to elastic jobs by a multiple-choice
     knapsack (:func:`mckp`, exact dynamic programme over GPU capacity): one item group per
     elastic job, item ``k`` = ``k`` extra GPUs (weight ``k``, up to ``max_gpus - min_gpus``),
     value = the reduction of the job's remaining time, ``T(base) - T(base + k)`` with
     ``T(n) = remaining work / rate(n)`` from the simulator's speed model
     (``view.rate_at``). A job keeps its GPU type; on a cluster with several types one knapsack
     is solved per type over the jobs placed on it.
- The restart cost is part of the value: a running job whose size would change pays
  ``restart_penalty`` seconds in ``T`` (the core charges its restart overhead to changed jobs),
  so extras move only when the remaining-time gain exceeds the cost of moving them.
- **Capacity loaning** (``loan_share`` > 0): a ``loan_share`` fraction of each GPU type belongs to
  an inference cluster and is on loan to training only outside its busy period (the first
  ``loan_busy`` fraction of every ``loan_period`` seconds, a step-shaped diurnal inference load).
  When the inference side takes its GPUs back (noticed at the next decision, at most one round
  late), Lyra reclaims by scaling elastic jobs in first (extras are dropped before any base
  demand); if base demands still exceed what is left, it preempts the fewest jobs: running jobs
  are kept smallest base first (ties: shortest remaining time first), so the largest gangs --
  fewest preemptions per GPU returned -- go.
- Placement: the core's consolidate-first placer (Lyra uses best-fit-decreasing packing). The
  knapsack values are placement-aware: a size whose gang cannot sit on its fewest nodes with
  the GPUs free now is valued at the spread rate (the model's locality penalty), and a job that
  keeps its size keeps its placement and current rate.

Simplifies:

- There is no separate inference cluster in the simulator. The loaned pool is (a) by default
  the *elastic capacity pool* -- whatever base demands leave idle at each decision, which Lyra
  lends to elastic jobs as extras -- and (b) with ``loan_share`` > 0, a share of each GPU type
  withheld during a periodic busy window. Loaned GPUs are not distinguished by node (policies
  name counts, not nodes), so Lyra's preference for putting extras on loaned servers and its
  per-server preemption cost (jobs on the server) become the job-level rules above. The
  withheld GPUs still count in the cluster's utilisation denominator.
- The MCKP value uses the oracle remaining work (``needs_durations = True``) and the exact
  speed model; Lyra estimates both (durations from history, throughput from profiling).
- Base demands are served non-preemptively at every event (Lyra's scheduler runs on job
  arrival/completion and on reclaim); jobs are never migrated between GPU types.

Knobs: ``round_length=300`` s (periodic re-solve; the loan schedule is noticed at rounds),
``restart_penalty=30`` s (the policy's estimate of the restart cost of a resized job),
``loan_share=0.0`` (off), ``loan_period=86400`` s, ``loan_busy=0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from baselines.base import EMPTY, Baseline, BaselineKnobs, order_scores
from baselines.heet import consolidated
from envs.lowering import serve_in_order
from envs.policy import Allocation, ClusterView

_NO_JOB = np.iinfo(np.int64).max

__all__ = ["Lyra", "mckp"]


def mckp(values: np.ndarray, capacity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multiple-choice knapsack with unit weights, exactly, by dynamic programming over capacity.

    ``values`` is ``(E, G, K + 1)``: for each of ``E`` independent instances and each of ``G``
    groups, the value of choosing item ``k`` (weight ``k``; ``-inf`` = not allowed; item 0 must
    be finite). Exactly one item is chosen per group, with total weight at most ``capacity``
    (``(E,)``). Returns the chosen items ``(E, G)`` and the optimal total value ``(E,)``. Ties
    go to smaller items in later groups first (deterministic).
    """
    values = np.asarray(values, dtype=np.float64)
    capacity = np.asarray(capacity, dtype=np.int64)
    E, G, _ = values.shape
    if (capacity < 0).any():
        raise ValueError("capacity must be >= 0")
    if G == 0:
        return np.zeros((E, 0), dtype=np.int64), np.zeros(E)
    if not np.isfinite(values[:, :, 0]).all():
        raise ValueError("item 0 (take nothing) must have a finite value in every group")
    return _mckp_kernel(values, capacity, int(capacity.max(initial=0)))


@njit(cache=True, nogil=True, error_model="numpy")
def _mckp_kernel(values: np.ndarray, capacity: np.ndarray, C: int) -> tuple[np.ndarray, np.ndarray]:
    """The dynamic programme of :func:`mckp`: ``dp[c]`` is the best value of the groups so far
    using at most ``c`` units; each group takes, at every ``c``, the first item of highest
    ``dp[c - k] + values[k]`` (``np.argmax``'s rule); then the choices are walked back from
    each instance's capacity."""
    E, G, K1 = values.shape
    out = np.zeros((E, G), dtype=np.int64)
    total = np.zeros(E)
    choice = np.zeros((G, C + 1), dtype=np.int64)
    dp = np.zeros(C + 1)
    new = np.empty(C + 1)
    for e in range(E):
        dp[:] = 0.0
        for g in range(G):
            for c in range(C + 1):
                best = -1
                top = 0.0
                for k in range(K1):
                    x = (dp[c - k] if c - k >= 0 else -np.inf) + values[e, g, k]
                    if np.isnan(x):
                        best, top = k, x
                        break
                    if best < 0 or x > top:
                        best, top = k, x
                choice[g, c] = best
                new[c] = top
            dp[:] = new
        left = capacity[e]
        for g in range(G - 1, -1, -1):
            k = choice[g, left]
            out[e, g] = k
            left -= k
        total[e] = dp[capacity[e]]
    return out, total


class Lyra(Baseline):
    """SJF for base demands, then a knapsack of extra workers for elastic jobs."""

    name = "lyra"
    needs_durations = True

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        round_length: float | None = 300.0
        """periodic re-solve, seconds (the loan schedule is noticed at rounds; ``None``: events only)"""
        restart_penalty: float = 30.0
        """the policy's estimate of the restart cost of a resized job, seconds"""
        loan_share: float = 0.0
        """fraction of each GPU type owned by inference and lent outside its busy period, in [0, 1) (0: off)"""
        loan_period: float = 86400.0
        """period of the inference load, seconds (a day)"""
        loan_busy: float = 0.5
        """the first fraction of each period during which inference holds its share, in [0, 1)"""

        def __post_init__(self) -> None:
            round_length, restart_penalty = self.round_length, self.restart_penalty
            loan_share, loan_period, loan_busy = self.loan_share, self.loan_period, self.loan_busy
            if round_length is not None and not (np.isfinite(round_length) and round_length > 0):
                raise ValueError(f"round_length must be > 0 seconds or None, got {round_length}")
            if not (np.isfinite(restart_penalty) and restart_penalty >= 0):
                raise ValueError(f"restart_penalty must be >= 0 seconds, got {restart_penalty}")
            if not 0.0 <= loan_share < 1.0:
                raise ValueError(f"loan_share must be in [0, 1), got {loan_share}")
            if not (np.isfinite(loan_period) and loan_period > 0):
                raise ValueError(f"loan_period must be > 0 seconds, got {loan_period}")
            if not 0.0 <= loan_busy < 1.0:
                raise ValueError(f"loan_busy must be in [0, 1) (inference must lend its GPUs some of the time), got {loan_busy}")
            if loan_share > 0 and round_length is None:
                raise ValueError("capacity loaning (loan_share > 0) needs rounds to notice the schedule: give round_length")
            self._set(round_length=None if round_length is None else float(round_length),
                      restart_penalty=float(restart_penalty), loan_share=float(loan_share),
                      loan_period=float(loan_period), loan_busy=float(loan_busy))

    def available(self, view: ClusterView) -> np.ndarray:
        """``(E, T)`` GPUs of each type training may use now (all, minus the inference
        cluster's share during its busy period)."""
        cap = np.broadcast_to(np.asarray(view.capacity, dtype=np.int64), (view.num_envs, len(view.capacity)))
        if self.loan_share == 0:
            return cap.copy()
        phase = np.mod(view.clock, self.loan_period) / self.loan_period
        busy = phase < self.loan_busy
        reserved = np.floor(self.loan_share * np.asarray(view.capacity)).astype(np.int64)
        return cap - np.where(busy[:, None], reserved[None, :], 0)

    def plan(self, view: ClusterView) -> Allocation | None:
        st = view.status
        active = st != EMPTY
        if not active.any():
            return None
        T = len(view.capacity)
        run = view.running
        wait = view.waiting
        elastic = active & ((view.min_gpus != view.gpus) | (view.max_gpus != view.gpus))
        base = np.where(elastic, view.min_gpus, view.gpus)
        cur_t = view.gpu_type
        rem = np.maximum(view.remaining, 0.0)
        types = np.arange(T)
        cap = self.available(view)

        # phase 1a: running jobs keep their base demand on their type (reclaim if the pool shrank)
        onehot = run[:, :, None] & (cur_t[:, :, None] == types[None, None, :])  # (E, S, T)
        used = (onehot * base[:, :, None]).sum(axis=1)
        keep = run.copy()
        over = (used > cap).any(axis=1)
        if over.any():
            r_cur = view.rate_at(base, cur_t)
            with np.errstate(divide="ignore"):
                t_cur = np.where(r_cur > 0, rem / r_cur, np.inf)
            cand = run & over[:, None]
            scores = order_scores(view, [base, t_cur], cand)
            n_k, _t, _c = serve_in_order(scores, cand, base, cap, view.job, allowed=onehot)
            keep = np.where(over[:, None], n_k > 0, run)
        n = np.where(keep, base, 0)
        t = np.where(keep, cur_t, 0)
        left = cap - (onehot * np.where(keep, base, 0)[:, :, None]).sum(axis=1)

        # phase 1b: waiting jobs' base demands, shortest job first, on the fastest type with room
        cand = wait & (base <= left.max(axis=1, keepdims=True))
        if cand.any():
            rate = np.stack([view.rate_at(base, k) for k in types], axis=2)  # (E, S, T)
            with np.errstate(divide="ignore"):
                sjf = np.where(cand, rem / rate.max(axis=2), np.inf)
            scores = order_scores(view, [sjf], cand)
            n_w, t_w, left = serve_in_order(scores, cand, base, left, view.job, rate)
            n = np.where(n_w > 0, n_w, n)
            t = np.where(n_w > 0, t_w, t)

        # phase 2: leftover GPUs to elastic jobs as extra workers (one knapsack per GPU type)
        grow = elastic & (n > 0) & (view.max_gpus > base)
        if grow.any() and (left > 0).any():
            n = n + self._extras(view, n, t, base, rem, grow, left)
        t = np.where(n > 0, t, cur_t)
        return Allocation(n, t)

    def _extras(self, view: ClusterView, n: np.ndarray, t: np.ndarray, base: np.ndarray, rem: np.ndarray,
                grow: np.ndarray, left: np.ndarray) -> np.ndarray:
        """``(E, S)`` extra GPUs per slot: the knapsack of each GPU type over its elastic jobs."""
        E, S = n.shape
        rows = np.arange(E)[:, None]
        job = view.job
        started = view.started
        run = view.running
        alloc = view.allocated
        extra = np.zeros((E, S), dtype=np.int64)
        for k in range(len(view.capacity)):
            groups = grow & (t == k)
            cap_k = left[:, k]
            if not groups.any() or not (cap_k > 0).any():
                continue
            K = int(min(np.where(groups, view.max_gpus - base, 0).max(), cap_k.max()))
            order = np.argsort(np.where(groups, job, _NO_JOB), axis=1, kind="stable")
            G = int(groups.sum(axis=1).max())
            sl = order[:, :G]  # (E, G) slots of the groups, in workload order
            valid = groups[rows, sl]
            b = base[rows, sl]
            r = rem[rows, sl]
            moved = started[rows, sl]  # a job that ran before pays the restart when it changes
            same_type = run[rows, sl] & (view.gpu_type[rows, sl] == k)
            cur = alloc[rows, sl]
            top = int(np.where(groups, base, 0).max()) + K
            fits = consolidated(view, top)[rows, sl, k, :]  # (E, G, top + 1)
            biggest = int(np.asarray(view.node_capacity)[np.asarray(view.node_type) == k].max())
            now = view.rate[rows, sl][:, :, None]
            # every candidate size b + x, x = 0..K, at once: (E, G, K + 1)
            x = np.arange(K + 1)
            size = b[:, :, None] + x
            n_full = np.where(groups[:, :, None], base[:, :, None] + x, 0)
            rate = view.rate_at(n_full, k)[rows, sl]
            # a gang that cannot sit on its fewest nodes with the GPUs free now is valued
            # spread; a job that keeps its size keeps its placement and its current rate
            spread = ~np.take_along_axis(fits, np.minimum(size, top), axis=2) & (size > 1)
            if spread.any():
                apart = view.rate_at(n_full, k, nodes=-(-n_full // biggest) + 1)[rows, sl]
                rate = np.where(spread, apart, rate)
            keeps = same_type[:, :, None] & (cur[:, :, None] == size)
            rate = np.where(keeps & (now > 0), now, rate)
            with np.errstate(divide="ignore"):
                time = np.where(rate > 0, r[:, :, None] / rate, np.inf)
            change = moved[:, :, None] & ~keeps
            ok = valid[:, :, None] & (size <= view.max_gpus[rows, sl][:, :, None])
            cost = np.where(ok, time + self.restart_penalty * change, np.inf)
            with np.errstate(invalid="ignore"):
                values = cost[:, :, :1] - cost
            values[:, :, 0] = 0.0
            values = np.where(valid[:, :, None] | (np.arange(K + 1) == 0), values, -np.inf)
            values = np.where(np.isnan(values), -np.inf, values)
            choice, _ = mckp(values, cap_k)
            extra[rows, sl] += np.where(valid, choice, 0)  # sl holds distinct slots per row
        return extra
