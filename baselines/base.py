"""Shared machinery of the classic schedulers.

Every baseline subclasses :class:`Baseline`, itself an :class:`envs.policy.Policy`:

- :meth:`Baseline.plan` returns the policy's decision in its natural form: a
  :class:`~envs.policy.Priority` (a score per slot, served by the core's greedy gang allocator),
  an :class:`~envs.policy.Allocation` (GPUs per slot) or ``None`` (keep everything as it is).
  This is what the Gymnasium adapter (:func:`baselines.adapter.act`) translates into actions.
- :meth:`Baseline.decide` (what :func:`envs.simulate` calls) returns the same decision, lowered
  when that is cheaper: on a cluster with one GPU type a ``Priority`` is turned into the exact
  allocation the core's greedy would compute (:func:`greedy_allocation`, a few vectorised passes
  instead of one pass per started job), and ``None`` when that allocation changes nothing. The
  lowering is exact: :mod:`tests.test_baselines` checks it against :meth:`ClusterCore.greedy`.

Per-job state that must survive between decisions (Tiresias' queues, Optimus' observations...)
lives in a :class:`JobTable`: arrays indexed by ``(env, job position in the env's workload)``
(``view.job``), grown on demand and cleared by :meth:`Baseline.reset` (all envs) and
:meth:`Baseline.reset_envs` (envs that start a new episode, called by the Gym adapter).

All arrays have the leading env axis; nothing loops over envs.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np

from envs.core import EMPTY, RUNNING, WAITING
from envs.policy import Allocation, ClusterView, Policy, Priority

_NO_JOB = np.iinfo(np.int64).max

__all__ = ["EMPTY", "RUNNING", "WAITING", "Baseline", "JobTable", "greedy_allocation", "lower", "order_scores", "take_in_order"]


class JobTable:
    """Per-job arrays ``(E, J)`` indexed by env and workload position (``view.job``).

    ``fields`` maps a name to ``(dtype, fill)``. ``seen`` marks jobs met before. Arrays grow
    (doubling) when a larger job position shows up; :meth:`reset_envs` refills rows.
    """

    def __init__(self, num_envs: int, fields: dict[str, tuple[type, object]]) -> None:
        self.E = int(num_envs)
        self.fields = {"seen": (bool, False), **fields}
        self.J = 0
        self.data: dict[str, np.ndarray] = {}
        self._grow(64)

    def _grow(self, J: int) -> None:
        for name, (dtype, fill) in self.fields.items():
            arr = np.full((self.E, J), fill, dtype=dtype)
            if name in self.data:
                arr[:, : self.J] = self.data[name]
            self.data[name] = arr
        self.J = J

    def ensure(self, view: ClusterView) -> None:
        need = int(view.job.max(initial=-1)) + 1
        if need > self.J:
            self._grow(max(need, 2 * self.J))

    def reset_envs(self, envs: np.ndarray) -> None:
        for name, (_dtype, fill) in self.fields.items():
            self.data[name][envs] = fill

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    def gather(self, name: str, view: ClusterView) -> np.ndarray:
        """``(E, S)`` the field at each slot's job (row ``e``'s job 0 entry for empty slots)."""
        self.ensure(view)
        job = view.job
        return self.data[name][_rows(job.shape[0]), np.maximum(job, 0)]

    def scatter(self, name: str, view: ClusterView, values: np.ndarray, mask: np.ndarray) -> None:
        """Set the field of the jobs in the slots ``mask`` (``(E, S)``) to ``values`` (``(E, S)``)."""
        self.scatter_many(view, mask, {name: values})

    def gather_many(self, view: ClusterView, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        """:meth:`gather` of several fields (one index computation)."""
        self.ensure(view)
        job = view.job
        idx = (_rows(job.shape[0]), np.maximum(job, 0))
        return tuple(self.data[name][idx] for name in names)

    def scatter_many(self, view: ClusterView, mask: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """:meth:`scatter` of several fields on the same slots (one index computation)."""
        self.ensure(view)
        job = view.job
        e, s = np.nonzero(mask & (job >= 0))
        if len(e):
            j = job[e, s]
            for name, v in values.items():
                v = np.asarray(v)
                self.data[name][e, j] = v if v.ndim == 0 else np.broadcast_to(v, job.shape)[e, s]


_ROWS: dict[int, np.ndarray] = {}


def _rows(E: int) -> np.ndarray:
    """``(E, 1)`` row indices for fancy indexing (cached)."""
    r = _ROWS.get(E)
    if r is None:
        r = _ROWS[E] = np.arange(E)[:, None]
    return r


class Baseline(Policy):
    """Base class of the baselines (see the module docstring).

    Subclasses set ``name``, ``needs_durations``, ``round_length``, optionally ``job_fields``
    (per-job state, see :class:`JobTable`) and ``env_fields`` (per-env state ``(E,)``), and
    implement :meth:`plan`. ``fast=False`` disables the lowering of :meth:`decide`.
    """

    job_fields: ClassVar[dict[str, tuple[type, object]]] = {}
    env_fields: ClassVar[dict[str, tuple[type, object]]] = {}
    fast: bool = True

    def __init__(self) -> None:
        self.jobs: JobTable | None = None
        self.envs: dict[str, np.ndarray] = {}

    def reset(self, view: ClusterView) -> None:
        super().reset(view)
        E = view.num_envs
        self.jobs = JobTable(E, self.job_fields)
        self.envs = {name: np.full(E, fill, dtype=dtype) for name, (dtype, fill) in self.env_fields.items()}

    def reset_envs(self, envs: np.ndarray) -> None:
        """Forget the state of the envs in the boolean mask ``envs`` (a new episode begins)."""
        if self.jobs is not None:
            self.jobs.reset_envs(envs)
        for name, (_dtype, fill) in self.env_fields.items():
            self.envs[name][envs] = fill

    def _ready(self, view: ClusterView) -> None:
        if self.jobs is None or self.jobs.E != view.num_envs:
            self.reset(view)

    @abstractmethod
    def plan(self, view: ClusterView) -> Priority | Allocation | None:
        """The decision in its natural form (see the module docstring)."""

    def decide(self, view: ClusterView) -> Priority | Allocation | None:
        self._ready(view)
        decision = self.plan(view)
        return lower(view, decision) if self.fast else decision

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in self.knobs().items())
        return f"{type(self).__name__}({knobs})"

    def knobs(self) -> dict[str, object]:
        """The policy's knobs (constructor arguments) and their values."""
        return {}


# ---------------------------------------------------------------------------------- scoring
def order_scores(view: ClusterView, keys: list[np.ndarray], valid: np.ndarray) -> np.ndarray:
    """Scores (higher first) that serve the ``valid`` slots in ascending lexicographic order of
    ``keys`` (first key most significant), ties to the earlier job; ``-inf`` elsewhere.

    The scores are unique per env (a rank), so the order never depends on slot positions.
    """
    job = view.job
    E, S = job.shape
    rows = _rows(E)
    order = np.argsort(np.where(valid, job, _NO_JOB), axis=1, kind="stable")
    for key in reversed(keys):
        k = np.where(valid, key, np.inf)[rows, order]
        order = order[rows, np.argsort(k, axis=1, kind="stable")]
    score = np.empty((E, S))
    score[rows, order] = np.arange(S, 0, -1, dtype=np.float64)
    return np.where(valid, score, -np.inf)


def serve_order(view: ClusterView, scores: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``(E, S)`` slot indices in greedy serving order: candidates by decreasing score, ties to
    the earlier job, then the non-candidates."""
    rows = _rows(cand.shape[0])
    order = np.argsort(np.where(cand, view.job, _NO_JOB), axis=1, kind="stable")
    key = np.where(cand, -scores, np.inf)[rows, order]
    return order[rows, np.argsort(key, axis=1, kind="stable")]


# ---------------------------------------------------------------------------------- greedy
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


def take_in_order(order: np.ndarray, req: np.ndarray, cand: np.ndarray, cap: np.ndarray, *,
                  backfill: bool = True) -> np.ndarray:
    """``(E, S)``: the candidates taken when serving slots in ``order`` (``(E, S)`` slot indices)
    greedily into ``cap`` (``(E,)``) GPUs, each asking ``req``; ``backfill`` skips those that do
    not fit, otherwise an env stops at the first. Prefix sums, as :func:`greedy_allocation`
    explains."""
    E, S = order.shape
    rws = _rows(E)
    r = req[rws, order]
    alive = cand[rws, order]
    acc = np.zeros((E, S), dtype=bool)
    cap = np.asarray(cap, dtype=np.int64).copy()
    pos = np.arange(S)[None, :]
    rows = np.arange(E)
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
            rp = r[rows, np.minimum(p, S - 1)]
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


def lower(view: ClusterView, decision):
    """The cheapest exact form of ``decision`` for :func:`envs.policy.execute` (see the module
    docstring): ``None`` when nothing would change; for a ``Priority`` that preempts in every env
    on a single-type cluster, the :class:`Allocation` the core's greedy would reach
    (:func:`greedy_allocation`; the core's greedy takes one pass per served job, thousands per
    round on Philly); the decision itself otherwise (non-preemptive serving costs the core one
    pass per *started* job, which is already cheap)."""
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
            head = np.where(cand & (scores == best), view.job, _NO_JOB).argmin(axis=1)
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
