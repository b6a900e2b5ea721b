"""Run any policy in the Gymnasium env: :func:`act` turns its decision into the env's action.

``act(policy, env)`` takes a :class:`envs.gpu_cluster.GpuClusterEnv` (or its ``gym.make``
wrapper) or a :class:`envs.gpu_cluster.GpuClusterVectorEnv`, asks the policy for its decision on
the engine's current state and returns the action for ``env.step``, for every env at once (no
Python loop over envs)::

    obs, info = env.reset(seed=0)
    while True:
        obs, reward, term, trunc, info = env.step(act(policy, env))

The policy sees a :class:`~envs.policy.ClusterView` of the engine's core (durations hidden
unless the env has ``known_durations=True``; a policy that needs them raises). With
``preemption=True`` and ``action_mode="pick"`` the jobs the engine has taken off their GPUs for a
round's re-pick still look *running* to the policy (with their previous allocation), as they do
in :func:`envs.simulate`. ``view.at_round_boundary`` is the engine's round flag. The policy is
reset the first time it meets an engine, and its ``reset_envs`` (if it has one, as every
:class:`baselines.base.Baseline` does) is called for envs that started a new episode since the
last call (the engine's step counter or clock went back). At every call the policy is prepared
(:meth:`~envs.policy.Policy.prepare`) and asked for its natural decision
(:meth:`~envs.policy.Policy.plan`, which is :meth:`~envs.policy.Policy.decide` unless the policy
says otherwise); the view says ``can_share=False``, as actions cannot put two jobs on the same
GPUs.

Translation (what each action mode can express):

- ``priority``: the decision's scores at the visible slots ``engine.visible``, mapped by dense rank
  into (-1, 1] (order-preserving; ties stay ties, and the env breaks them on workload order as
  the core does). Jobs the decision leaves out (score ``-inf``/NaN, jobs behind a strict
  head-of-line block, jobs an ``Allocation`` gives no GPUs, waiting jobs under ``None``) get
  ``-inf``, which the env leaves out exactly but counts in ``info["invalid_actions"]``; with
  ``exact=False`` they get -1 instead (served last, so the env may backfill them). When the env
  preempts at a round boundary but the decision does not preempt, running jobs are ranked first
  so that they keep their GPUs. An ``Allocation`` is served in workload order at each job's
  requested size (elastic sizes cannot be expressed).
- ``allocate``: the decision's GPU count and type for every visible job, at the highest priority
  level, and level 0 (do not run) for jobs it gives no GPUs (:func:`envs.allocate.encode`); the
  goodput batch choice is ``Allocation.adaptive`` (unchanged when ``None``). A ``Priority`` is
  first served as the core's greedy allocator would (:func:`envs.lowering.allocation`), preempting
  only where the env reallocates; ``None`` keeps every running job and starts nothing. An
  ``Allocation`` of a policy whose rounds are the env's (``preemption=True``, ``round_length``
  equal to the policy's) with every job visible is carried out exactly as in
  :func:`envs.simulate` (``tests/test_allocate.py``); the placement of jobs started by a
  ``Priority`` may differ (the env places new jobs in workload order, the core's greedy in score
  order). Elastic counts, GPU types and goodput batch sizes all carry over.
- ``pick``: the first job, in the decision's serving order, that the decision starts now and
  that is visible and startable; *advance* (action ``K``) when there is none. During a round's
  re-pick a decision that does not preempt re-picks the previous running set first.

What the env cannot do is lost in translation: it preempts only at round boundaries and only with
``preemption=True`` (SRTF and Tiresias preempt at every event in :func:`envs.simulate`), it shows
only ``K`` slots, and its round length is its own (``round_length`` option). With all jobs visible
and matching options a baseline makes the same decisions as in :func:`envs.simulate` (see
``tests/test_baselines.py``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from gymnasium.vector import VectorEnv

from envs.allocate import encode
from envs.core import EMPTY, RUNNING, WAITING
from envs.engine import VectorEngine
from envs.lowering import allocation, serve_order
from envs.policy import Allocation, ClusterView, Policy, Priority

__all__ = ["GymView", "act", "dense_rescale", "engine_of"]


class GymView(ClusterView):
    """A view of an engine's core in which re-pick candidates still look running (with the
    allocation they held before the re-pick phase opened)."""

    can_share = False

    def __init__(self, engine: VectorEngine) -> None:
        super().__init__(engine.core, known_durations=engine.cfg.known_durations)
        self._engine = engine

    def _repick(self) -> np.ndarray | None:
        rp = self._engine.repick_candidates
        return rp if rp.any() else None

    @property
    def status(self) -> np.ndarray:
        rp = self._repick()
        st = super().status
        return st if rp is None else np.where(rp, np.int8(RUNNING), st)

    @property
    def running(self) -> np.ndarray:
        rp = self._repick()
        run = super().running
        return run if rp is None else run | rp

    @property
    def waiting(self) -> np.ndarray:
        rp = self._repick()
        wait = super().waiting
        return wait if rp is None else wait & ~rp

    @property
    def allocated(self) -> np.ndarray:
        rp = self._repick()
        n = super().allocated
        return n if rp is None else np.where(rp, self._engine.previous_allocation[0], n)

    @property
    def gpu_type(self) -> np.ndarray:
        rp = self._repick()
        t = super().gpu_type
        return t if rp is None else np.where(rp, self._engine.previous_allocation[1], t)


@dataclass
class _Binding:
    engine: VectorEngine
    view: GymView
    raw: ClusterView
    state: object
    steps: np.ndarray
    clock: np.ndarray


_BINDINGS: weakref.WeakKeyDictionary[Policy, _Binding] = weakref.WeakKeyDictionary()


def engine_of(env) -> VectorEngine:
    """The :class:`~envs.engine.VectorEngine` behind a GpuCluster env or vector env."""
    eng = getattr(env, "engine", None)
    if eng is None:
        eng = getattr(getattr(env, "unwrapped", None), "engine", None)
    if not isinstance(eng, VectorEngine):
        raise TypeError(f"expected a GpuCluster env or vector env, got {type(env).__name__}")
    return eng


def _bind(policy: Policy, eng: VectorEngine) -> _Binding:
    """The policy's binding to ``eng``: reset the policy when it meets the engine first (or was
    reset elsewhere since), forget the envs that started a new episode since the last call."""
    b = _BINDINGS.get(policy)
    state = getattr(policy, "jobs", None)
    clock = np.array(eng.view.clock)
    if b is None or b.engine is not eng or (state is not None and b.state is not state):
        view = GymView(eng)
        policy.reset(view)
        b = _Binding(eng, view, ClusterView(eng.core, known_durations=True), getattr(policy, "jobs", None),
                     eng.steps.copy(), clock)
        _BINDINGS[policy] = b
    else:
        fresh = (eng.steps < b.steps) | (clock < b.clock)
        if fresh.any() and hasattr(policy, "reset_envs"):
            policy.reset_envs(fresh)
    b.steps = eng.steps.copy()
    b.clock = clock
    return b


def dense_rescale(values: np.ndarray, valid: np.ndarray, left_out: float) -> np.ndarray:
    """Map the ``valid`` entries of each row by dense rank into (-1, 1] (highest -> 1)."""
    E = values.shape[0]
    v = np.where(valid, values, -np.inf)
    order = np.argsort(v, axis=1, kind="stable")
    sv = np.take_along_axis(v, order, axis=1)
    sval = np.take_along_axis(valid, order, axis=1)
    step = np.concatenate([np.zeros((E, 1), dtype=bool), sv[:, 1:] != sv[:, :-1]], axis=1) & sval
    first = sval & ~np.concatenate([np.zeros((E, 1), dtype=bool), sval[:, :-1]], axis=1)
    rank_sorted = np.cumsum(step | first, axis=1) - 1  # dense rank among valid, 0 = lowest
    rank = np.empty_like(rank_sorted)
    np.put_along_axis(rank, order, rank_sorted, axis=1)
    distinct = np.where(valid, rank, -1).max(axis=1, keepdims=True) + 1
    out = -1.0 + 2.0 * (rank + 1) / np.maximum(distinct, 1)
    return np.where(valid, out, left_out)


def act(policy: Policy, env, *, exact: bool = True) -> np.ndarray | int:
    """The action of ``policy`` for the current state of ``env`` (see the module docstring).

    Returns what ``env.step`` takes: for a vector env an ``(E,)`` int array (pick), an
    ``(E, K)`` float32 array (priority) or an ``(E, K * D)`` int array (allocate); for a single
    env an int or one row.
    """
    eng = engine_of(env)
    b = _bind(policy, eng)
    view, raw = b.view, b.raw
    view.at_round_boundary = eng.preempting_now
    policy.prepare(view)
    decision = policy.plan(view)
    if eng.cfg.action_mode == "priority":
        out = _priority_action(eng, raw, decision, exact)
    elif eng.cfg.action_mode == "allocate":
        out = _allocate_action(eng, raw, decision)
    else:
        out = _pick_action(eng, raw, decision)
    single = not isinstance(getattr(env, "unwrapped", env), VectorEnv)
    if single:
        return int(out[0]) if eng.cfg.action_mode == "pick" else out[0]
    return out


def _served(raw: ClusterView, scores: np.ndarray, backfill: bool, preempt: np.ndarray) -> np.ndarray:
    """``(E, S)`` GPUs the core's greedy would give each slot (without changing anything)."""
    return allocation(raw, scores, backfill=backfill, preempt=preempt)[0]


def _priority_action(eng: VectorEngine, raw: ClusterView, decision, exact: bool) -> np.ndarray:
    st = raw.status
    run = st == RUNNING
    active = st != EMPTY
    env_preempt = eng.preempting_now
    if decision is None:
        sc = np.where(run, 1.0, -np.inf)
    elif isinstance(decision, Allocation):
        sc = np.where(active & (np.asarray(decision.n) > 0), -raw.job.astype(np.float64), -np.inf)
        sc = np.where(run & ~env_preempt[:, None], np.inf, sc)
    elif isinstance(decision, Priority):
        sc = np.asarray(decision.scores, dtype=np.float64)
        sc = np.where(np.isnan(sc) | ~active, -np.inf, sc)
        pol_preempt = np.broadcast_to(np.asarray(decision.preempt, dtype=bool), (eng.E,))
        if not decision.backfill:
            n = _served(raw, sc, False, pol_preempt & env_preempt)
            sc = np.where(active & (n == 0), -np.inf, sc)
        sc = np.where(run & (env_preempt & ~pol_preempt)[:, None], np.inf, sc)
    else:
        raise TypeError(f"a policy decision must be Priority, Allocation or None, got {type(decision).__name__}")
    v = np.take_along_axis(sc, eng.visible, axis=1)
    valid = v > -np.inf
    return dense_rescale(v, valid, -np.inf if exact else -1.0).astype(np.float32)


def _allocate_action(eng: VectorEngine, raw: ClusterView, decision) -> np.ndarray:
    """The allocate action asking for the decision's allocation (:func:`envs.allocate.encode`)."""
    st = raw.status
    run = st == RUNNING
    adaptive = None
    if decision is None:
        n, t = np.where(run, raw.allocated, 0), raw.gpu_type
    elif isinstance(decision, Allocation):
        n, t, adaptive = decision.n, decision.t, decision.adaptive
    elif isinstance(decision, Priority):
        sc = np.where(np.isnan(decision.scores) | (st == EMPTY), -np.inf, np.asarray(decision.scores, dtype=np.float64))
        pol_preempt = np.broadcast_to(np.asarray(decision.preempt, dtype=bool), (eng.E,))
        n, t = allocation(raw, sc, backfill=decision.backfill, preempt=pol_preempt & eng.reallocating)
    else:
        raise TypeError(f"a policy decision must be Priority, Allocation or None, got {type(decision).__name__}")
    return encode(eng.core, eng.layout, eng.visible, eng.alloc_mask, n, t, adaptive)


def _pick_action(eng: VectorEngine, raw: ClusterView, decision) -> np.ndarray:
    E, K = eng.E, eng.K
    st = raw.status
    S = st.shape[1]
    waiting = st == WAITING  # includes re-pick candidates
    repick = eng.repick_candidates
    job_order = -raw.job.astype(np.float64)
    if decision is None:
        target = repick
        sc = np.where(target, job_order, -np.inf)
    elif isinstance(decision, Allocation):
        target = waiting & (np.asarray(decision.n) > 0)
        sc = np.where(target, job_order, -np.inf)
    elif isinstance(decision, Priority):
        sc = np.asarray(decision.scores, dtype=np.float64)
        sc = np.where(np.isnan(sc) | ~waiting, -np.inf, sc)
        pol_preempt = np.broadcast_to(np.asarray(decision.preempt, dtype=bool), (E,))
        sc = np.where(repick & ~pol_preempt[:, None], np.inf, sc)
        # serve the waiting jobs (re-pick candidates included) on the free GPUs
        target = waiting & (_served(raw, sc, decision.backfill, np.zeros(E, dtype=bool)) > 0)
        # start order, as the core would: a preemptive decision keeps its survivors in place and
        # places the rest in workload order (ClusterCore.apply); otherwise jobs start in score order
        sc = np.where(pol_preempt[:, None], job_order, sc)
    else:
        raise TypeError(f"a policy decision must be Priority, Allocation or None, got {type(decision).__name__}")
    vis = eng.visible
    pos = np.full((E, S), -1, dtype=np.int64)
    np.put_along_axis(pos, vis, np.arange(K)[None, :].repeat(E, 0), axis=1)
    mask = eng.mask
    ok = target & (pos >= 0)
    ok &= np.take_along_axis(mask, np.maximum(pos, 0), axis=1)
    sc = np.where(repick, np.inf, sc)  # survivors of a re-pick first, so they keep their nodes
    order = serve_order(raw, sc, ok)
    first = order[:, 0]
    rows = np.arange(E)
    return np.where(ok[rows, first], pos[rows, first], K).astype(np.int64)
