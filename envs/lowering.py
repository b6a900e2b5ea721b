"""Lowering: turning a ranked list or an allocation into what the core executes.

A :class:`~envs.policy.Priority` is a ranking; the core serves it with its greedy gang allocator
(jobs in decreasing score, ties to the earlier job, each on its requested GPU count, backfilling
what fits). The functions here compute what that serving would give without changing anything,
so that drivers and policies can reason about a ranking before it is carried out:

- :func:`serve_order`: the slots in greedy serving order;
- :func:`take_in_order`: which candidates a greedy pass over an order takes (prefix sums);
- :func:`greedy_allocation`: the exact allocation of a ``Priority`` on a single-type cluster,
  in a few vectorised passes; :func:`allocation`: the same on any cluster (the core's own greedy
  where there are several GPU types);
- :func:`lower`: the cheapest exact form of a decision for :func:`envs.policy.execute`
  (``None`` when nothing would change, an ``Allocation`` for a preemptive ``Priority``).

Everything is read-only on the :class:`~envs.policy.ClusterView` and works on the leading env
axis.
"""

from __future__ import annotations

import numpy as np

from envs.core import EMPTY, RUNNING, WAITING
from envs.policy import Allocation, ClusterView, Priority

#: sorts after every job position (slots that are not candidates)
NO_JOB = np.iinfo(np.int64).max

__all__ = ["NO_JOB", "allocation", "greedy_allocation", "lower", "rows", "serve_order", "take_in_order"]

_ROWS: dict[int, np.ndarray] = {}


def rows(E: int) -> np.ndarray:
    """``(E, 1)`` row indices for fancy indexing (cached)."""
    r = _ROWS.get(E)
    if r is None:
        r = _ROWS[E] = np.arange(E)[:, None]
    return r


def serve_order(view: ClusterView, scores: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``(E, S)`` slot indices in greedy serving order: candidates by decreasing score, ties to
    the earlier job, then the non-candidates."""
    rws = rows(cand.shape[0])
    order = np.argsort(np.where(cand, view.job, NO_JOB), axis=1, kind="stable")
    key = np.where(cand, -scores, np.inf)[rws, order]
    return order[rws, np.argsort(key, axis=1, kind="stable")]


def greedy_allocation(
    view: ClusterView,
    scores: np.ndarray,
    *,
    backfill: bool = True,
    preempt: bool | np.ndarray = False,
    request: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The allocation ``(n, t)`` that :meth:`envs.core.ClusterCore.greedy` followed by
    :func:`envs.policy.execute` would give for this ``Priority``, computed in a few passes.

    Only for clusters with one GPU type (returns ``None`` otherwise). Serving jobs in order and
    skipping those that do not fit is a sequence of prefix sums: the longest prefix that fits is
    taken; the first job past it cannot fit now, and neither can any later job at least as large,
    ever (capacity only shrinks), so they are dropped and the rest is scanned again. The number
    of passes is bounded by the number of distinct GPU requests (about ten on Philly).

    ``request`` (``(E, S)``, default ``view.gpus``) replaces the GPU count each job is served
    with (elastic policies serve jobs at their minimum first).
    """
    if len(view.capacity) != 1:
        return None
    E = view.job.shape[0]
    preempt = np.broadcast_to(np.asarray(preempt, dtype=bool), (E,))
    st = view.status
    scores = np.where(np.isnan(scores), -np.inf, scores)
    cand = (st != EMPTY) & (scores > -np.inf) & (preempt[:, None] | (st == WAITING))
    cap = np.where(preempt, int(view.capacity[0]), view.free_per_type()[:, 0]).astype(np.int64)
    req = view.gpus if request is None else np.asarray(request, dtype=np.int64)
    allocated = view.allocated
    n = np.where(preempt[:, None] | (st != RUNNING), 0, allocated)
    if cand.any():
        order = serve_order(view, scores, cand)
        took = take_in_order(order, req, cand, cap, backfill=backfill)
        n = np.where(took, req, n)
    t = np.where(n > 0, 0, view.gpu_type)
    return n, t


def allocation(view: ClusterView, scores: np.ndarray, *, backfill: bool = True,
               preempt: bool | np.ndarray = False) -> tuple[np.ndarray, np.ndarray]:
    """The allocation ``(n, t)`` serving ``scores`` would give on any cluster: :func:`greedy_allocation`
    on one GPU type, the core's greedy (:meth:`ClusterView.greedy`, one pass per served job)
    otherwise, each env preempting or not as ``preempt`` says."""
    got = greedy_allocation(view, scores, backfill=backfill, preempt=preempt)
    if got is not None:
        return got
    preempt = np.broadcast_to(np.asarray(preempt, dtype=bool), (view.num_envs,))
    n = np.array(view.allocated)
    t = np.array(view.gpu_type)
    for flag in (True, False):
        group = preempt == flag
        if group.any():
            n_g, t_g = view.greedy(scores, backfill=backfill, preempt=flag, envs=group)
            n = np.where(group[:, None], n_g, n)
            t = np.where(group[:, None], t_g, t)
    return n, t


def take_in_order(order: np.ndarray, req: np.ndarray, cand: np.ndarray, cap: np.ndarray, *,
                  backfill: bool = True) -> np.ndarray:
    """``(E, S)``: the candidates taken when serving slots in ``order`` (``(E, S)`` slot indices)
    greedily into ``cap`` (``(E,)``) GPUs, each asking ``req``; ``backfill`` skips those that do
    not fit, otherwise an env stops at the first. Prefix sums, as :func:`greedy_allocation`
    explains."""
    E, S = order.shape
    rws = rows(E)
    r = req[rws, order]
    alive = cand[rws, order]
    acc = np.zeros((E, S), dtype=bool)
    cap = np.asarray(cap, dtype=np.int64).copy()
    pos = np.arange(S)[None, :]
    env = np.arange(E)
    while alive.any():
        cum = np.cumsum(np.where(alive, r, 0), axis=1)
        over = alive & (cum > cap[:, None])
        has = over.any(axis=1)
        p = np.where(has, over.argmax(axis=1), S)
        take = alive & (pos < p[:, None])
        acc |= take
        cap -= np.where(take, r, 0).sum(axis=1)
        alive &= ~take
        if not has.any():
            break
        if backfill:  # the first job past the prefix does not fit, nor will any later one as large
            rp = r[env, np.minimum(p, S - 1)]
            alive &= ~(has[:, None] & (pos >= p[:, None]) & (r >= rp[:, None]))
        else:
            alive &= ~has[:, None]
    out = np.zeros((E, S), dtype=bool)
    out[rws, order] = acc
    return out


def _nothing_fits(view: ClusterView, cand: np.ndarray) -> np.ndarray:
    """``(E,)``: no waiting candidate fits in the free GPUs of any type."""
    free = view.free_per_type().max(axis=1)
    smallest = np.where(cand & view.waiting, view.gpus, np.iinfo(np.int64).max).min(axis=1)
    return smallest > free


def _unchanged_preempt(view: ClusterView, scores: np.ndarray) -> np.ndarray:
    """``(E,)``: a preemptive greedy over ``scores`` would keep every env's allocation: every
    running job is a candidate and outranks every waiting candidate, and no waiting candidate
    fits in the free GPUs (so serving runs through the running jobs and starts nothing)."""
    run = view.running
    cand = (view.status != EMPTY) & (scores > -np.inf)
    wait = cand & view.waiting
    all_run = ~(run & ~cand).any(axis=1)
    low_run = np.where(run, scores, np.inf).min(axis=1)
    high_wait = np.where(wait, scores, -np.inf).max(axis=1)
    return all_run & ((high_wait < low_run) & _nothing_fits(view, wait) | ~wait.any(axis=1))


def lower(view: ClusterView, decision: Priority | Allocation | None) -> Priority | Allocation | None:
    """The cheapest exact form of ``decision`` for :func:`envs.policy.execute`: ``None`` when
    nothing would change; for a ``Priority`` that preempts in every env on a single-type cluster,
    the :class:`Allocation` the core's greedy would reach (:func:`greedy_allocation`; the core's
    greedy takes one pass per served job, thousands per round on Philly); the decision itself
    otherwise (non-preemptive serving costs the core one pass per *started* job, which is
    already cheap)."""
    if isinstance(decision, Allocation):
        if decision.extended:
            return decision
        run = view.running
        same = np.where(run, (decision.n == view.allocated) & (decision.t == view.gpu_type), decision.n == 0)
        if decision.adaptive is not None:
            same &= (decision.adaptive == view.adaptive) | (view.status == EMPTY)
        return None if same.all() else decision
    if not isinstance(decision, Priority):
        return decision
    E = view.num_envs
    preempt = np.broadcast_to(np.asarray(decision.preempt, dtype=bool), (E,))
    scores = np.asarray(decision.scores, dtype=np.float64)
    scores = np.where(np.isnan(scores), -np.inf, scores)
    if not preempt.any():
        cand = view.waiting & (scores > -np.inf)
        if not decision.backfill and cand.any():
            # strict head-of-line: only the head (best score, then earliest job) can start first
            best = np.where(cand, scores, -np.inf).max(axis=1, keepdims=True)
            head = np.where(cand & (scores == best), view.job, NO_JOB).argmin(axis=1)
            cand = np.zeros_like(cand)
            cand[np.arange(E), head] = True
            cand &= view.waiting & (scores > -np.inf)
        return None if _nothing_fits(view, cand).all() else decision
    if not preempt.all():
        return decision
    if _unchanged_preempt(view, scores).all():
        return None
    got = greedy_allocation(view, scores, backfill=decision.backfill, preempt=True)
    if got is None:
        return decision
    n, t = got
    run = view.running
    same = np.where(run, (n == view.allocated) & (t == view.gpu_type), n == 0)
    return None if same.all() else Allocation(n, t)
