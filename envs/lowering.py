"""Lowering: turning a ranked list or an allocation into what the core executes.

A :class:`~envs.policy.Priority` is a ranking; the core serves it with the greedy gang allocator
defined here (:func:`serve_in_order`: jobs in decreasing score, ties to the earlier job, each on
its requested GPU count on the fastest GPU type with room, backfilling what fits). The core, the
drivers and every baseline serve through it, so the rule exists once:

- :func:`fastest_with_room`: the GPU type a served job goes to;
- :func:`serve_in_order`: the greedy itself, on plain arrays (one pass per served job, or a few
  prefix sums on a single GPU type);
- :func:`serve_order`: the slots in greedy serving order;
- :func:`take_in_order`: which candidates a greedy pass over an order takes (prefix sums);
- :func:`allocation`: the exact allocation serving a ``Priority`` would give, read from the view
  (:func:`greedy_allocation`: the same, only on a single-type cluster);
- :func:`lower`: the cheapest exact form of a decision for :func:`envs.policy.execute`
  (``None`` when nothing would change, an ``Allocation`` for a preemptive ``Priority``).

Everything is read-only and works on the leading env axis.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from envs.core import EMPTY, WAITING
from envs.policy import Allocation, ClusterView, Priority

#: sorts after every job position (slots that are not candidates)
NO_JOB = np.iinfo(np.int64).max

__all__ = ["NO_JOB", "allocation", "fastest_with_room", "greedy_allocation", "lower", "rows", "serve_in_order",
           "serve_order", "take_in_order"]

_ROWS: dict[int, np.ndarray] = {}


def rows(E: int) -> np.ndarray:
    """``(E, 1)`` row indices for fancy indexing (cached)."""
    r = _ROWS.get(E)
    if r is None:
        r = _ROWS[E] = np.arange(E)[:, None]
    return r


def fastest_with_room(room: np.ndarray, prefer: np.ndarray | None = None,
                      keep: np.ndarray | None = None) -> np.ndarray:
    """``(K,)`` the GPU type each of ``K`` jobs goes to: among the types with ``room``
    (``(K, T)`` bool), the one that maximises ``prefer`` (``(K, T)``, typically the speed of the
    job's model on each type; ``None``: the first type with room), ties to the lower index;
    but ``keep`` (``(K,)`` type index, -1 none) where that type has room, so a running job that
    is served again stays where it is. Rows without room get an arbitrary type."""
    if prefer is None:
        k = room.argmax(axis=1)
    else:
        k = np.where(room, prefer, -np.inf).argmax(axis=1)
    if keep is None:
        return k
    stay = (keep >= 0) & room[np.arange(len(k)), np.maximum(keep, 0)]
    return np.where(stay, keep, k)


def _order(scores: np.ndarray, cand: np.ndarray, job: np.ndarray) -> np.ndarray:
    """``(E, S)`` slots in serving order: candidates by decreasing score, ties to the earlier job
    (``job``, the position in the workload), then the non-candidates."""
    rws = rows(cand.shape[0])
    order = np.argsort(np.where(cand, job, NO_JOB), axis=1, kind="stable")
    key = np.where(cand, -scores, np.inf)[rws, order]
    return order[rws, np.argsort(key, axis=1, kind="stable")]


def serve_order(view: ClusterView, scores: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``(E, S)`` slot indices in greedy serving order: candidates by decreasing score, ties to
    the earlier job, then the non-candidates."""
    return _order(scores, cand, view.job)


#: ``each(e, s, t, n)`` of :func:`serve_in_order`: the jobs one serving pass chose
ServeHook = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]

#: serving passes above which prefix sums beat one pass per served job (sorting costs a few passes)
PREFIX_PASSES = 2


def serve_in_order(
    scores: np.ndarray,
    cand: np.ndarray,
    size: np.ndarray,
    cap: np.ndarray,
    job: np.ndarray,
    prefer: np.ndarray | None = None,
    *,
    allowed: np.ndarray | None = None,
    keep: np.ndarray | None = None,
    backfill: bool = True,
    each: ServeHook | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The greedy gang allocator: serve the ``cand`` slots (``(E, S)`` bool) in decreasing
    ``scores``, ties to the earlier ``job`` (``(E, S)`` workload positions), each on ``size``
    (``(E, S)``, at least 1) GPUs of one type, taken from ``cap`` (``(E, T)`` GPUs of each type available).

    A served job goes to :func:`fastest_with_room` among the ``allowed`` types (``(E, S, T)``
    bool, default all) by ``prefer`` (``(E, S, T)``, default: the first type with room), or
    stays on ``keep`` (``(E, S)`` type index, -1 none) when it has room. ``backfill`` skips jobs
    that fit nowhere and serves later ones; without it an env stops at the first job that does
    not fit (strict head-of-line). ``each(e, s, t, n)`` is called after every serving pass with
    the jobs served in it (at most one per env, envs ascending), in serving order, so a caller
    can start them as they are chosen.

    Returns ``(n, t, cap_left)``: ``n`` the GPUs given (0: not served), ``t`` the type (-1: not
    served), ``cap_left`` what remains of ``cap``. One pass per served job, vectorised over envs;
    on a single type (``allowed`` not given) where more than :data:`PREFIX_PASSES` jobs may be
    served, prefix sums instead (:func:`take_in_order`): the same result in a few passes.
    """
    E, S = cand.shape
    cap = np.array(cap, dtype=np.int64, copy=True)
    n = np.zeros((E, S), dtype=np.int64)
    t = np.full((E, S), -1, dtype=np.int64)
    most = np.minimum(cand.sum(axis=1), np.maximum(cap, 0).sum(axis=1)).max(initial=0)  # jobs served, at most
    if most <= 0:
        return n, t, cap
    if most > PREFIX_PASSES and cap.shape[1] == 1 and allowed is None:
        return _serve_one_type(scores, cand, size, cap, job, backfill, each)
    cand = np.array(cand, dtype=bool, copy=True)
    job = np.where(cand, job, NO_JOB)
    env = np.arange(E)
    live = cand.any(axis=1)
    while live.any():
        room = cap[:, None, :] >= size[:, :, None]  # (E, S, T)
        if allowed is not None:
            room &= allowed
        fits = cand & room.any(axis=2)
        pool = fits if backfill else cand
        best = np.where(pool, scores, -np.inf).max(axis=1)
        tie = pool & (scores == best[:, None])
        s = np.where(tie, job, NO_JOB).argmin(axis=1)
        ok = live & tie.any(axis=1) & fits[env, s]
        live &= ok if not backfill else tie.any(axis=1)
        if not ok.any():
            break
        e = np.flatnonzero(ok)
        s = s[e]
        r = size[e, s]
        k = fastest_with_room(room[e, s], None if prefer is None else prefer[e, s],
                              None if keep is None else keep[e, s])
        cap[e, k] -= r
        n[e, s] = r
        t[e, s] = k
        if each is not None:
            each(e, s, k, r)
        cand[e, s] = False
        job[e, s] = NO_JOB
    return n, t, cap


def _serve_one_type(scores: np.ndarray, cand: np.ndarray, size: np.ndarray, cap: np.ndarray,
                    job: np.ndarray, backfill: bool, each: ServeHook | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`serve_in_order` on one GPU type, by prefix sums."""
    E, _S = cand.shape
    t = np.full(cand.shape, -1, dtype=np.int64)
    order = _order(scores, cand, job)
    took = take_in_order(order, size, cand, cap[:, 0], backfill=backfill)
    n = np.where(took, size, 0).astype(np.int64)
    t[took] = 0
    cap[:, 0] -= n.sum(axis=1)
    if each is not None:  # replay the serving passes: the r-th pass serves each env's r-th taken job
        rws = rows(E)
        taken = took[rws, order]
        first = np.argsort(~taken, axis=1, kind="stable")
        count = taken.sum(axis=1)
        for r in range(int(count.max(initial=0))):
            e = np.flatnonzero(count > r)
            s = order[e, first[e, r]]
            each(e, s, np.zeros(len(e), dtype=np.int64), n[e, s])
    return n, t, cap


def _serve_priority(view: ClusterView, scores: np.ndarray, backfill: bool, preempt: bool | np.ndarray,
                    request: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(n, t)`` serving ``scores`` on the view's cluster, as :meth:`envs.core.ClusterCore.greedy`
    does: envs in ``preempt`` re-serve every job on all GPUs, the others serve waiting jobs on
    the free GPUs."""
    E = view.num_envs
    preempt = np.broadcast_to(np.asarray(preempt, dtype=bool), (E,))
    st = view.status
    run = view.running
    scores = np.where(np.isnan(scores), -np.inf, scores)
    cand = (st != EMPTY) & (scores > -np.inf) & (preempt[:, None] | (st == WAITING))
    cap = np.where(preempt[:, None], np.asarray(view.capacity)[None, :], view.free_per_type())
    req = view.gpus if request is None else np.asarray(request, dtype=np.int64)
    n = np.where(preempt[:, None] | ~run, 0, view.allocated)
    t = np.array(view.gpu_type, dtype=np.int64)
    if not cand.any():
        return n, t
    prefer = None if cap.shape[1] == 1 else np.asarray(view.speed)[view.model]
    n_s, t_s, _ = serve_in_order(scores, cand, req, cap, view.job, prefer, keep=np.where(run, t, -1),
                                 backfill=backfill)
    served = t_s >= 0
    return np.where(served, n_s, n), np.where(served, t_s, t)


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
    return _serve_priority(view, scores, backfill, preempt, request)


def allocation(view: ClusterView, scores: np.ndarray, *, backfill: bool = True,
               preempt: bool | np.ndarray = False, request: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The allocation ``(n, t)`` serving ``scores`` would give on any cluster (:func:`serve_in_order`
    on the view, as :func:`greedy_allocation` on one GPU type), each env preempting or not as
    ``preempt`` says."""
    return _serve_priority(view, scores, backfill, preempt, request)


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
