"""Heet (Mo, Xu and Xu, ASPLOS'24): heterogeneity-aware elastic scheduling by prices, matching
and resource trading.

Paper: "Heet: Accelerating Elastic Training in Heterogeneous Deep Learning Clusters", ASPLOS'24
(DOI 10.1145/3620665.3640375). Little public detail (no code; ``../shared/papers/modern.md``
section 8 has only the abstract's three ingredients); this is the "reasonable approximation"
those notes sketch, built from the ingredients named there.

Models, at every re-plan (a job arrives or finishes, or a round boundary passes; not at the end
of a restart, where nothing but progress changed), over all jobs:

- **Throughput table** per job, GPU type and GPU count, ``R[j, t, n]`` (``view.rate_at``: the
  simulator's exact speed model, incl. goodput-modelled jobs). It stands in for Heet's 3-D
  collaborative-filtering predictor (job x host type x configuration completed from a few
  profiling runs): here every cell is known exactly. Placement-aware (Heet's bundles are
  host-level): a gang that could not sit on its fewest nodes with the GPUs free now (plus its
  own, for a running job on its type) is valued spread, with the model's locality penalty; a
  running job's current bundle has its current rate.
- **Time to finish** of job ``j`` on bundle ``(t, n)``: ``T = remaining / R[j, t, n]``, plus
  ``restart_penalty`` if the job has run before and the bundle is not the one it holds.
- **Price function**: a bundle costs ``T * (1 + mu_t * n)``, i.e. its time to finish plus
  ``mu_t`` x the GPU-seconds it ties up. ``mu_t = mu_0 + lambda_t``: a base contention price
  ``mu_0 = contention_weight * D / G**2`` (``D`` = base demand of all jobs, ``G`` = GPUs) and a
  per-type market price ``lambda_t`` that rises while type ``t`` is over-demanded. Scaling
  efficiency against contention: at price ``mu`` a job whose throughput grows like ``n**a``
  wants ``n* ~ a / ((1 - a) mu)`` GPUs, so poorly scaling jobs shrink first as prices rise; jobs
  that gain least from a fast type move to a slower one first; and the jobs that tie up the
  most GPU-seconds are the first sent to wait (shortest-GPU-time-first under contention). Not
  running costs ``T_best * (1 + mu_0 * base) + W``: the job's best base-size time after a delay
  ``W = max(wait_cost, half the time the cluster needs to drain every job's base demand)`` (its
  expected place in the queue).
- **Matching**: offers are bundles ``(type, count)`` -- counts from each job's menu (powers of
  two within its bounds, its minimum, request and maximum, and what it holds now; a rigid job
  only its request) -- each offered ``floor(available_t / n)`` times, plus one "wait" offer per
  job. A minimum-cost full matching of jobs to offers (:func:`match`,
  ``scipy.optimize.linear_sum_assignment``) gives every job one bundle. Copies of different
  sizes may jointly over-fill a type; then that type's price ``lambda_t`` rises (an
  ascending-price auction, :func:`clear`) to the smallest of its jobs' switch prices (the rise
  at which a job prefers a smaller bundle of the type, waiting, or a type with room) at which
  the switching jobs give back the excess, and the matching is solved again until every type
  fits. A relative 1e-6 jitter on the costs breaks exact ties, and prices rise at least 2 %
  per auction round once it stalls. With every type fitting, the matching is optimal for the
  priced costs over all capacity-feasible assignments of menu bundles (tests check this
  against brute force).
- **Opportunistic resource trading** (:func:`trade`): then, repeatedly, the best of these
  moves while it lowers the total priced cost: two jobs swap bundles (type and count, a
  waiting job may take a running job's bundle), two jobs on one type move GPUs from one to the
  other (any count within bounds, not only menu sizes), or one job grows, shrinks or moves into
  GPUs left unsold (unsold types' market price falls back to ``mu_0``).
- Jobs inside a restart keep their bundle (no re-allocation during a checkpoint-restore, as
  Sia). Placement: the core's consolidate-first placer.

Simplifies:

- The throughput predictor is the oracle speed model (no profiling runs, no prediction error)
  and remaining work is the oracle value (``needs_durations = True``): the price function
  needs a job's time to finish, which Heet estimates from progress and measured speed.
- Bundles are (GPU type, count); hosts are not named (the core places gangs), so host-level
  bundles and trades of individual hosts become counts per type, and the placement awareness
  above is an estimate from the free GPUs per node.
- The price function's exact form is not public; the one above (time plus priced GPU-seconds,
  with market-clearing per-type prices and an estimated queueing delay for waiting) is ours.
- The matching and trading run per env (a loop over envs in the Gymnasium vector env; each
  costs a few LSA solves of (jobs x offer copies)).

Knobs: ``round_length=300`` s (periodic re-plan), ``restart_penalty=30`` s (the policy's
estimate of the restart cost), ``wait_cost=300`` s (the least a job loses by being sent to wait:
about one round), ``contention_weight=1.0``, ``heterogeneity_aware=True`` (``False``: the
heterogeneity-agnostic twin, which sees every GPU type at the mean speed over types),
``max_trades=64`` (trades per re-plan).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numba import njit
from scipy.optimize import linear_sum_assignment

from baselines.base import EMPTY, Baseline, BaselineKnobs
from envs.policy import Allocation, ClusterView

__all__ = ["Heet", "clear", "consolidated", "match", "trade"]

_NO_JOB = np.iinfo(np.int64).max
_MIN_RISE = 0.02  # smallest relative rise of a market price per auction round once stalling
_JITTER = 1e-6  # relative tie-breaking jitter of the matching's costs


def match(cost: np.ndarray, copies: np.ndarray) -> np.ndarray:
    """Minimum-cost full matching of ``J`` jobs to offers: offer ``o`` has ``copies[o]``
    identical copies, each taken by at most one job; ``cost`` is ``(J, B)`` (``inf``: not
    allowed). Returns the offer of each job ``(J,)``. The copies must admit a full matching
    (e.g. one offer with ``J`` copies that every job may take)."""
    cost = np.asarray(cost, dtype=np.float64)
    copies = np.asarray(copies, dtype=np.int64)
    J = cost.shape[0]
    cols = np.repeat(np.arange(len(copies)), np.minimum(copies, J))
    rows, pick = linear_sum_assignment(cost[:, cols])
    out = np.empty(J, dtype=np.int64)
    out[rows] = cols[pick]
    return out


def _priced(time: np.ndarray, n: np.ndarray, mu: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        c = time * (1.0 + mu * n)
    return np.where(np.isfinite(time), c, np.inf)


def clear(time: np.ndarray, wait: np.ndarray, menu: np.ndarray, avail: np.ndarray, mu0: float,
          max_iter: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Price-clearing matching of one env (see the module docstring).

    ``time`` ``(J, T, N + 1)``: time to finish of job ``j`` on ``n`` GPUs of type ``t`` (``inf``
    where not allowed; index 0 unused). ``wait`` ``(J,)``: cost of not running. ``menu``
    ``(J, N + 1)``: the counts offered to each job. ``avail`` ``(T,)``: GPUs per type.

    Returns ``(t, n, lam)``: each job's type and count (``n = 0``: waits) and the market price
    increments per type.
    """
    J, T, N1 = time.shape
    avail = np.asarray(avail, dtype=np.int64)
    lam = np.zeros(T)
    if J == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), lam
    sizes = np.arange(N1)
    ok = np.isfinite(time) & menu[:, None, :] & (sizes[None, None, :] <= avail[None, :, None]) & (sizes > 0)
    jt, jn = np.nonzero(ok.any(axis=0))  # offered bundles (t, n)
    B = len(jt)
    tt = np.concatenate([jt, [-1]])
    nn = np.concatenate([jn, [0]])
    valid = np.concatenate([ok[:, jt, jn], np.ones((J, 1), dtype=bool)], axis=1)  # (J, B + 1)
    tm = np.concatenate([time[:, jt, jn], np.zeros((J, 1))], axis=1)
    copies = np.concatenate([np.minimum(valid[:, :B].sum(axis=0), avail[jt] // np.maximum(jn, 1)), [J]])
    gpu_time = tm * nn  # GPU-seconds of each offer
    # a fixed relative jitter of 1e-6 breaks exact ties (jobs of one model, identical GPU types
    # in the agnostic twin), so that equal jobs do not all jump between offers at one price
    jitter = 1.0 + _JITTER * np.random.default_rng(J).random((J, B + 1))
    limit = max_iter if max_iter is not None else 50 + 10 * J
    tick = _MIN_RISE * max(mu0, 1.0 / max(int(avail.sum()), 1))  # smallest price rise
    for it in range(limit):
        mu = mu0 + np.concatenate([lam[jt], [0.0]])
        cost = np.where(valid, _priced(tm, nn, mu), np.inf)
        cost[:, B] = wait
        cost *= jitter
        a = match(cost, copies)
        used = np.bincount(tt[a][a < B], weights=nn[a][a < B], minlength=T)
        over = np.flatnonzero(used > avail)
        if len(over) == 0:
            return np.where(a < B, tt[a], 0), nn[a], lam
        spare = np.concatenate([avail - used, [np.inf]])[tt]  # room left on each offer's type
        for k in over:
            on = np.flatnonzero((a < B) & (tt[a] == k))
            c0 = cost[on, a[on]]
            g0 = gpu_time[on, a[on]]
            same = tt[None, :] == k
            denom = g0[:, None] - np.where(same, gpu_time[on], 0.0)
            num = cost[on] - c0[:, None]
            # a move helps only to a smaller bundle of type k, to waiting, or to a type with room
            helps = (same | (spare >= nn)[None, :]) & (denom > 0) & (num >= 0) & np.isfinite(num)
            with np.errstate(divide="ignore", invalid="ignore"):
                step = np.where(helps, num / denom, np.inf)
            # each job's switch price (the price rise at which it prefers another offer) and the
            # GPUs of type k it would give back; raise the price to the smallest switch price at
            # which the jobs that switch give back the excess (bulk step of an ascending auction)
            alt = step.argmin(axis=1)
            sw = step[np.arange(len(on)), alt]
            freed = nn[a[on]] - np.where(same[0, alt], nn[alt], 0)
            order = np.argsort(sw, kind="stable")
            enough = np.cumsum(freed[order]) >= used[k] - avail[k]
            s = sw[order][int(enough.argmax())] if enough.any() else sw.max(initial=np.inf)
            if not np.isfinite(s):  # nothing to move to (cannot happen: waiting is always open)
                s = 1.0 / max(float(g0.min(initial=1.0)), 1e-9)
            lam[k] += s * (1.0 + 1e-9) + 1e-12
            if it >= J:  # stalling (jobs bouncing between types): prices then grow geometrically
                lam[k] = max(lam[k], lam[k] * (1.0 + _MIN_RISE) + tick)
    # not cleared within the iteration budget: send the largest GPU-time jobs on over-full types
    # to wait until they fit
    t_out, n_out = np.where(a < B, tt[a], 0), nn[a].copy()
    for k in range(T):
        on = np.flatnonzero((n_out > 0) & (t_out == k))
        on = on[np.argsort(-gpu_time[on, a[on]], kind="stable")]
        excess = int(n_out[on].sum()) - int(avail[k])
        for j in on:
            if excess <= 0:
                break
            excess -= int(n_out[j])
            n_out[j] = 0
    return t_out, n_out, lam


def trade(time: np.ndarray, wait: np.ndarray, avail: np.ndarray, t: np.ndarray, n: np.ndarray, mu: np.ndarray,
          max_trades: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Opportunistic resource trading of one env (see the module docstring): best-improvement
    local search on the priced cost ``time * (1 + mu_t * n)`` (waiting: ``wait``) over bundle
    swaps between two jobs, GPU transfers between two jobs on one type, and moves of one job
    into unsold GPUs. ``time`` is ``(J, T, N + 1)`` (``inf`` where not allowed), ``t, n`` the
    starting assignment (``n = 0``: waits), ``avail`` ``(T,)``. Returns the new ``(t, n)``; the
    total cost never rises and capacity is always kept. The search runs in
    :func:`_trade_kernel` (compiled)."""
    t = np.array(t, dtype=np.int64, copy=True)
    n = np.array(n, dtype=np.int64, copy=True)
    if len(time) == 0:
        return t, n
    _trade_kernel(np.ascontiguousarray(trade_costs(time, wait, mu)), np.asarray(avail, dtype=np.int64), t, n,
                  int(max_trades))
    return t, n


def trade_costs(time: np.ndarray, wait: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``(J, T, N + 1)`` priced cost of every bundle the trading searches over: ``time * (1 +
    mu_t * n)`` (``inf`` where not allowed), ``wait`` for ``n = 0`` on any type."""
    sizes = np.arange(time.shape[2])
    cost = _priced(time, sizes[None, None, :], np.asarray(mu, dtype=np.float64)[None, :, None])
    cost[:, :, 0] = wait[:, None]  # n = 0: waiting, on any type
    return cost


@njit(cache=True, nogil=True, error_model="numpy")
def _trade_kernel(cost: np.ndarray, avail: np.ndarray, t: np.ndarray, n: np.ndarray, max_trades: int) -> None:
    """The local search of :func:`trade`, in place on ``t, n``. Each step takes the best of
    (a) one job to any count of any type that fits in the unsold GPUs (incl. waiting), (b) two
    jobs swapping bundles, (c) two jobs on one type moving GPUs between them (the total stays),
    scanning each family in row-major order and keeping the first minimum (``np.argmin``'s
    rule, under which a family holding a NaN offers nothing), if it improves the cost by more
    than ``1e-9`` of the largest current cost."""
    J, T, N1 = cost.shape
    cur = np.empty(J)
    free = np.empty(T, dtype=np.int64)
    for _ in range(max_trades):
        big = 1.0
        for j in range(J):
            cur[j] = cost[j, t[j], n[j]]
            if np.isfinite(cur[j]) and abs(cur[j]) > big:
                big = abs(cur[j])
        for k in range(T):
            free[k] = avail[k]
        for j in range(J):
            free[t[j]] -= n[j]
        best = -1e-9 * big
        kind = 0
        m0 = 0
        m1 = 0
        m2 = 0
        # (a)
        lo = np.inf
        arg = -1
        nan = False
        for j in range(J):
            for k in range(T):
                room = free[k] + (n[j] if t[j] == k else 0)
                for m in range(N1):
                    d = (cost[j, k, m] if m <= room else np.inf) - cur[j]
                    if np.isnan(d):
                        nan = True
                    elif arg < 0 or d < lo:
                        lo, arg = d, (j * T + k) * N1 + m
        if not nan and arg >= 0 and lo < best:
            best, kind, m0, m1, m2 = lo, 1, arg // (T * N1), (arg // N1) % T, arg % N1
        # (b)
        lo = np.inf
        arg = -1
        nan = False
        for i in range(J):
            for k in range(J):
                d = np.inf if i == k else cost[i, t[k], n[k]] + cost[k, t[i], n[i]] - cur[i] - cur[k]
                if np.isnan(d):
                    nan = True
                elif arg < 0 or d < lo:
                    lo, arg = d, i * J + k
        if not nan and arg >= 0 and lo < best:
            best, kind, m0, m1 = lo, 2, arg // J, arg % J
        # (c)
        lo = np.inf
        arg = -1
        nan = False
        # (without any pair every entry is inf or NaN and offers nothing, as the NumPy search
        # skipping the family then)
        for i in range(J):
            for k in range(J):
                pair = i != k and t[i] == t[k] and n[i] > 0 and n[k] > 0
                for m in range(1, N1):
                    other = n[i] + n[k] - m
                    if pair and 1 <= other < N1:
                        d = (cost[i, t[i], m] + cost[k, t[k], other]) - (cur[i] + cur[k])
                    else:
                        d = np.inf - (cur[i] + cur[k])
                    if np.isnan(d):
                        nan = True
                    elif arg < 0 or d < lo:
                        lo, arg = d, (i * J + k) * (N1 - 1) + (m - 1)
        if not nan and arg >= 0 and lo < best:
            best, kind = lo, 3
            m0, m1, m2 = arg // (J * (N1 - 1)), (arg // (N1 - 1)) % J, arg % (N1 - 1)
        if kind == 0:
            break
        if kind == 1:
            if m2 > 0:
                t[m0], n[m0] = m1, m2
            else:
                t[m0], n[m0] = 0, 0
        elif kind == 2:
            ti, ni = t[m0], n[m0]
            t[m0], n[m0] = t[m1], n[m1]
            t[m1], n[m1] = ti, ni
            for j in range(J):
                if n[j] == 0:
                    t[j] = 0
        else:
            total = n[m0] + n[m1]
            n[m0] = m2 + 1
            n[m1] = total - (m2 + 1)


def consolidated(view: ClusterView, N: int) -> np.ndarray:
    """``(E, S, T, N + 1)``: the job in each slot, given ``n`` GPUs of type ``t``, would sit on the
    fewest nodes of the type that could hold it, with the GPUs free now plus (for a running job,
    on its own type) the GPUs it holds, counted on the node with the most free GPUs (its own node
    when it sits on one; the core frees a resized job's GPUs before placing it again)."""
    free = view.free_per_node
    node_type = np.asarray(view.node_type)
    node_cap = np.asarray(view.node_capacity)
    E, S = view.job.shape
    T = len(view.capacity)
    n = np.arange(N + 1)
    own = np.where(view.running, view.allocated, 0)
    out = np.zeros((E, S, T, N + 1), dtype=bool)
    for k in range(T):
        nodes = node_type == k
        top = -np.sort(-free[:, nodes], axis=1)
        cum = np.concatenate([np.zeros((E, 1), dtype=np.int64), np.cumsum(top, axis=1)], axis=1)
        need = np.clip(-(-n // int(node_cap[nodes].max())), 0, top.shape[1])
        extra = np.where(view.gpu_type == k, own, 0)  # (E, S)
        out[:, :, k] = cum[:, None, need] + np.where(need > 0, extra[:, :, None], 0) >= n[None, None, :]
    return out


def _menu(lo: np.ndarray, hi: np.ndarray, req: np.ndarray, cur: np.ndarray, N1: int) -> np.ndarray:
    """``(J, N + 1)`` counts offered to each job: powers of two within its bounds, its bounds,
    request and current count."""
    sizes = np.arange(N1)[None, :]
    pow2 = (sizes > 0) & ((sizes & (sizes - 1)) == 0)
    menu = pow2 & (sizes >= lo[:, None]) & (sizes <= hi[:, None])
    for extra in (lo, hi, req, cur):
        menu |= sizes == extra[:, None]
    menu[:, 0] = False
    return menu


class Heet(Baseline):
    """Priced bundles, min-cost matching of jobs to (type, count) offers, then trades."""

    name = "heet"
    needs_durations = True
    env_fields: ClassVar[dict[str, tuple[type, object]]] = {
        "count": (np.int64, -1),  # active jobs at the last re-plan
        "idsum": (np.int64, -1),  # sum of their workload positions
    }

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        round_length: float | None = 300.0
        """periodic re-plan, seconds (``None``: events only)"""
        restart_penalty: float = 30.0
        """the policy's estimate of the restart cost, seconds"""
        wait_cost: float = 300.0
        """the least a job loses by being sent to wait, seconds (about one round)"""
        contention_weight: float = 1.0
        """scale of the base contention price ``mu_0 = contention_weight * D / G**2`` (>= 0)"""
        heterogeneity_aware: bool = True
        """``False``: the agnostic twin, which sees every GPU type at the mean speed over types"""
        max_trades: int = 64
        """trades per re-plan (>= 0)"""

        def __post_init__(self) -> None:
            round_length, restart_penalty, wait_cost = self.round_length, self.restart_penalty, self.wait_cost
            contention_weight, max_trades = self.contention_weight, self.max_trades
            if round_length is not None and not (np.isfinite(round_length) and round_length > 0):
                raise ValueError(f"round_length must be > 0 seconds or None, got {round_length}")
            if not (np.isfinite(restart_penalty) and restart_penalty >= 0):
                raise ValueError(f"restart_penalty must be >= 0 seconds, got {restart_penalty}")
            if not (np.isfinite(wait_cost) and wait_cost > 0):
                raise ValueError(f"wait_cost must be > 0 seconds, got {wait_cost}")
            if not (np.isfinite(contention_weight) and contention_weight >= 0):
                raise ValueError(f"contention_weight must be >= 0, got {contention_weight}")
            if isinstance(max_trades, bool) or int(max_trades) != max_trades or max_trades < 0:
                raise ValueError(f"max_trades must be an integer >= 0, got {max_trades}")
            self._set(round_length=None if round_length is None else float(round_length),
                      restart_penalty=float(restart_penalty), wait_cost=float(wait_cost),
                      contention_weight=float(contention_weight),
                      heterogeneity_aware=bool(self.heterogeneity_aware), max_trades=int(max_trades))

    def throughput(self, view: ClusterView, N: int) -> np.ndarray:
        """``(E, S, T, N + 1)`` rate of each slot's job on ``n`` GPUs of each type: the stand-in
        for Heet's predictor. Placement-aware: a gang that cannot sit on its fewest nodes of the
        type with the GPUs free now is valued spread (the model's locality penalty); a running
        job's current bundle has its current rate (it keeps its placement). The agnostic twin
        sees the mean over types."""
        T = len(view.capacity)
        E, S = view.job.shape
        ok = consolidated(view, N)
        R = np.zeros((E, S, T, N + 1))
        node_cap = np.asarray(view.node_capacity)
        n = np.arange(1, N + 1)[None, None, :]  # the candidate axis
        for k in range(T):
            biggest = int(node_cap[np.asarray(view.node_type) == k].max())
            r = view.rate_at(n, k)  # (E, S, N): every count at once
            fits = ok[:, :, k, 1:] | (n == 1)
            if not fits.all():
                r = np.where(fits, r, view.rate_at(n, k, nodes=-(-n // biggest) + 1))
            R[:, :, k, 1:] = r
        run = view.running & (view.rate > 0)
        if run.any():
            e, s = np.nonzero(run)
            n = view.allocated[e, s]
            keep = n <= N
            R[e[keep], s[keep], view.gpu_type[e[keep], s[keep]], n[keep]] = view.rate[e[keep], s[keep]]
        if not self.heterogeneity_aware:
            R = np.broadcast_to(R.mean(axis=2, keepdims=True), R.shape)
        return R

    def plan(self, view: ClusterView) -> Allocation | None:
        st = view.status
        active = st != EMPTY
        # re-plan at round boundaries and when jobs arrive or finish (not at the end of restarts)
        count = active.sum(axis=1)
        idsum = np.where(active, view.job, 0).sum(axis=1)
        todo = active.any(axis=1) & ((count != self.envs["count"]) | (idsum != self.envs["idsum"])
                                     | np.asarray(view.at_round_boundary, dtype=bool))
        self.envs["count"] = count
        self.envs["idsum"] = idsum
        if not todo.any():
            return None
        E, S = st.shape
        T = len(view.capacity)
        run = view.running
        pinned = run & view.restarting
        elastic = (view.min_gpus != view.gpus) | (view.max_gpus != view.gpus)
        lo = np.where(elastic, view.min_gpus, view.gpus)
        hi = np.where(elastic, view.max_gpus, view.gpus)
        req = view.gpus
        cur_n = np.where(run, view.allocated, 0)
        cur_t = view.gpu_type
        N = int(min(np.where(active, hi, 0).max(), view.capacity.max()))
        R = self.throughput(view, N)  # (E, S, T, N + 1)
        rem = np.maximum(view.remaining, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            base_time = np.where(R > 0, rem[:, :, None, None] / R, np.inf)
        sizes = np.arange(N + 1)
        types = np.arange(T)
        started = view.started
        same = (run[:, :, None, None] & (cur_t[:, :, None, None] == types[None, None, :, None])
                & (cur_n[:, :, None, None] == sizes[None, None, None, :]))
        change = started[:, :, None, None] & ~same
        bounds = (sizes[None, None, :] >= lo[:, :, None]) & (sizes[None, None, :] <= hi[:, :, None])
        time = np.where(bounds[:, :, None, :], base_time + self.restart_penalty * change, np.inf)
        time[..., 0] = np.inf
        lo_c = np.minimum(lo, N)
        at_base = np.take_along_axis(base_time, np.broadcast_to(lo_c[:, :, None, None], (E, S, T, 1)), axis=3)[..., 0]
        best_base = at_base.min(axis=2) + self.restart_penalty * started
        cap = np.asarray(view.capacity, dtype=np.int64)
        G = int(cap.sum())
        demand = np.where(active, lo, 0).sum(axis=1)
        mu0 = self.contention_weight * demand / float(G) ** 2
        # a job sent to wait loses at least wait_cost, and under contention about half the time
        # the cluster needs to drain every job's base demand (its expected place in the queue)
        drain = np.where(active, lo * at_base.min(axis=2), 0.0).sum(axis=1) / G
        delay = np.maximum(self.wait_cost, 0.5 * drain)
        wait = best_base * (1.0 + mu0[:, None] * lo) + delay[:, None]

        n_out = np.where(run, view.allocated, 0)
        t_out = cur_t.copy()
        job = view.job
        for e in np.flatnonzero(todo):
            free = active[e] & ~pinned[e]
            slots = np.flatnonzero(free)
            if len(slots) == 0:
                continue
            slots = slots[np.argsort(job[e, slots], kind="stable")]
            avail = cap - np.bincount(cur_t[e, pinned[e]], weights=cur_n[e, pinned[e]], minlength=T).astype(np.int64)
            tm = time[e, slots]
            menu = _menu(lo[e, slots], hi[e, slots], req[e, slots], cur_n[e, slots], N + 1)
            t_a, n_a, lam = clear(tm, wait[e, slots], menu, avail, float(mu0[e]))
            unsold = avail - np.bincount(t_a, weights=n_a, minlength=T) > 0
            mu = mu0[e] + np.where(unsold, 0.0, lam)
            if self.max_trades:
                t_a, n_a = trade(tm, wait[e, slots], avail, t_a, n_a, mu, self.max_trades)
            n_out[e, slots] = n_a
            t_out[e, slots] = np.where(n_a > 0, t_a, cur_t[e, slots])
        return Allocation(n_out, t_out)
