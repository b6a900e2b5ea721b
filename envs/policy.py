"""The interface between schedulers and the simulation core.

Every scheduler, classic or learned, is a :class:`Policy`. A driver (:func:`envs.simulate`, the
Gym adapter :func:`envs.adapter.act`, the leaderboard) runs it the same way at every event:

1. ``policy.prepare(view)``: the policy sizes its own state for the envs in the view;
2. ``decision = policy.decide(view)`` (or :meth:`Policy.plan` for the natural form);
3. the driver carries the decision out (:func:`execute` on the core, or an env action).

The policy only reads the :class:`ClusterView` and returns a decision; it never changes the
simulator state (what-if planning works on a private copy, :meth:`ClusterView.what_if`).
A decision is:

- :class:`Priority`: a score per slot; the core's greedy gang allocator serves jobs in score
  order (most classic heuristics are exactly a score function), or
- :class:`Allocation`: GPU count and type per slot, applied as given (elastic and
  heterogeneity-aware policies), or
- ``None``: keep the current allocation.

The same policy object runs in :func:`envs.simulate` (one env, whole trace) and over the
Gymnasium vector env (many envs at once): it must work on the leading env axis and never loop
over envs.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from envs.core import RUNNING, WAITING, AllocationError, ClusterCore


def _ro(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class ClusterView:
    """Read-only view of a :class:`~envs.core.ClusterCore` (all arrays ``(E, S)`` unless noted).

    ``remaining`` (reference-seconds of work left) and ``work`` are only available when durations
    are known to the scheduler; otherwise reading them raises ``PermissionError``.
    """

    #: decisions may put a job on another job's GPUs (``Allocation.partner``); False where the
    #: driver cannot carry sharing out (the Gym adapter's actions)
    can_share: bool = True

    def __init__(self, core: ClusterCore, *, known_durations: bool = True) -> None:
        self._core = core
        self.known_durations = known_durations
        self.at_round_boundary = np.zeros(core.E, dtype=bool)

    def what_if(self) -> ClusterCore:
        """A private copy of the simulator state behind this view, for planning by trial:
        changing it changes nothing in the simulation. The copy holds the whole state, job
        durations included: a policy that must not know them uses it only to try its own
        actions (as :class:`agents.AgentPolicy` does, observing through an engine that hides
        them)."""
        core = self._core
        shared = (core.cluster, core.goodput, core.placer)  # read-only: shared, not copied
        memo: dict[int, object] = {id(x): x for x in shared if x is not None}
        twin = copy.copy(core)
        # what copy.deepcopy(core, memo) does, without its per-object dispatch for the arrays
        for name, value in vars(core).items():
            if id(value) in memo:
                twin.__dict__[name] = memo[id(value)]
            elif isinstance(value, np.ndarray):
                twin.__dict__[name] = memo[id(value)] = value.copy()
            elif not isinstance(value, (bool, int, float, str, type(None))):
                twin.__dict__[name] = copy.deepcopy(value, memo)
        return twin

    # cluster
    num_envs = property(lambda self: self._core.E)
    cluster = property(lambda self: self._core.cluster)  # the ClusterSpec
    gpu_types = property(lambda self: self._core.gpu_types)
    capacity = property(lambda self: _ro(self._core.capacity))  # (T,)
    total_gpus = property(lambda self: self._core.total_gpus)
    clock = property(lambda self: _ro(self._core.clock))  # (E,)
    free_per_node = property(lambda self: _ro(self._core.free))  # (E, N)
    node_type = property(lambda self: _ro(self._core.node_type))  # (N,)
    speed = property(lambda self: _ro(self._core.speed))  # (models, T)

    node_capacity = property(lambda self: _ro(self._core.node_cap))  # (N,) GPUs per node

    def free_per_type(self) -> np.ndarray:
        """``(E, T)`` free GPUs per type."""
        return self._core.free_per_type()

    def rate_at(self, n: np.ndarray | int, t: np.ndarray | int, *, nodes: np.ndarray | int | None = None,
                adaptive: np.ndarray | bool = False) -> np.ndarray:
        """``(E, S)`` progress rate (reference-seconds of work per second) the job in each slot
        would have on ``n`` GPUs of type index ``t`` (each broadcast to ``(E, S)``), placed on
        ``nodes`` nodes (default: the fewest that hold ``n``). ``adaptive`` asks for the
        goodput-optimal batch size of goodput-modelled jobs (:mod:`envs.goodput`); other jobs
        ignore it. 0 where ``n`` is 0. This is the simulator's exact speed model (an oracle).

        Candidates in one call: arguments of shape ``(E, S, C)`` (or broadcastable to it, e.g.
        ``n`` ``(E, S, C)`` with a scalar ``t``) give ``(E, S, C)`` rates, candidate ``c`` of
        slot ``(e, s)`` equal to what a call with that candidate alone returns (the same
        arithmetic element by element)."""
        core = self._core
        shape = core.s_job.shape
        args = [np.asarray(n, dtype=np.int64), np.asarray(t, dtype=np.int64), np.asarray(adaptive, dtype=bool)]
        if nodes is not None:
            args.append(np.asarray(nodes, dtype=np.int64))
        if max(a.ndim for a in args) <= 2:
            n, t, adaptive = (np.broadcast_to(a, shape) for a in args[:3])
            nodes = core.min_nodes(np.maximum(n, 1), t) if len(args) == 3 else np.broadcast_to(args[3], shape)
            return core.slot_rate(n, t, nodes, adaptive)
        # candidates: (E, S) arguments apply to every candidate of their slot
        args = [a[..., None] if a.ndim in (1, 2) else a for a in args]
        full = np.broadcast_shapes((*shape, 1), *(a.shape for a in args))
        if len(full) != 3 or full[:2] != shape:
            raise ValueError(f"rate_at: arguments must broadcast to (E, S) = {shape} or (E, S, C), got {full}")
        n, t, adaptive = (np.broadcast_to(a, full).ravel() for a in args[:3])
        nodes = core.min_nodes(np.maximum(n, 1), t) if len(args) == 3 else np.broadcast_to(args[3], full).ravel()
        e, s = (np.broadcast_to(i[:, :, None], full).ravel() for i in np.indices(shape))
        return core.slot_rate(n, t, nodes, adaptive, where=(e, s)).reshape(full)

    # jobs in slots
    job = property(lambda self: _ro(self._core.s_job))  # position in the env's workload, -1 empty
    status = property(lambda self: _ro(self._core.s_status))
    waiting = property(lambda self: self._core.s_status == WAITING)
    running = property(lambda self: self._core.s_status == RUNNING)
    submit = property(lambda self: _ro(self._core.s_submit))
    gpus = property(lambda self: _ro(self._core.s_gpus))  # requested
    min_gpus = property(lambda self: _ro(self._core.s_min))
    max_gpus = property(lambda self: _ro(self._core.s_max))
    model = property(lambda self: _ro(self._core.s_model))
    allocated = property(lambda self: _ro(self._core.s_n))
    gpu_type = property(lambda self: _ro(self._core.s_t))
    attained = property(lambda self: _ro(self._core.s_attained))  # GPU-seconds held so far
    progress = property(lambda self: _ro(self._core.s_done))  # reference-seconds done

    @property
    def rate(self) -> np.ndarray:
        """``(E, S)`` current progress rate (reference-seconds of work per second)."""
        self._core.refresh()
        return _ro(self._core.s_rate)

    restarting = property(lambda self: self._core.s_restart_until > self._core.clock[:, None])
    started = property(lambda self: _ro(self._core.s_started))
    restart_cost = property(lambda self: _ro(self._core.s_restart_cost))  # seconds per restart
    preemptions = property(lambda self: self._core.j_preempt[np.arange(self._core.E)[:, None], np.maximum(self._core.s_job, 0)])
    restarts = property(lambda self: self._core.j_restarts[np.arange(self._core.E)[:, None], np.maximum(self._core.s_job, 0)])
    # CPUs and memory (cores with resources=True): per node, and granted per GPU per slot
    node_cpus = property(lambda self: _ro(self._core.node_cpu))  # (N,)
    node_mem = property(lambda self: _ro(self._core.node_mem))  # (N,) GB
    free_cpus = property(lambda self: _ro(self._core.free_cpu))  # (E, N)
    free_mem = property(lambda self: _ro(self._core.free_mem))  # (E, N)
    cpus = property(lambda self: _ro(self._core.s_cpu))  # CPUs per GPU held
    mem = property(lambda self: _ro(self._core.s_mem))  # GB per GPU held
    resources = property(lambda self: self._core.resources)
    # GPU sharing, placement and network
    placement = property(lambda self: _ro(self._core.s_place))  # (E, S, N) GPUs per node
    partner = property(lambda self: _ro(self._core.s_partner))  # slot sharing this job's GPUs, -1 none
    guest = property(lambda self: _ro(self._core.s_guest))  # runs on another job's GPUs
    shift = property(lambda self: _ro(self._core.s_shift))
    network = property(lambda self: self._core.network)
    sharing = property(lambda self: _ro(self._core.sharing))  # (models, models) shared speed fraction
    comm_fraction = property(lambda self: _ro(self._core.comm))  # (models,)
    # dynamic adaptation: speed-up per phase (1 static) and the current phase
    growth = property(lambda self: _ro(self._core.s_growth))
    phase = property(lambda self: _ro(self._core.s_phase))
    dynamic_phases = property(lambda self: self._core.dynamic_phases)

    # goodput jobs (envs.goodput): kind -1 for plain jobs
    goodput = property(lambda self: self._core.goodput)  # the GoodputTable, or None
    kind = property(lambda self: _ro(self._core.s_kind))
    adaptive = property(lambda self: _ro(self._core.s_adapt))  # running at the goodput-optimal batch

    @property
    def batch_size(self) -> np.ndarray:
        """``(E, S)`` total batch size in use by running goodput jobs (0 elsewhere)."""
        core = self._core
        g = core.goodput
        out = np.zeros(core.s_job.shape)
        if g is None:
            return out
        on = (core.s_kind >= 0) & (core.s_status == RUNNING)
        e, s = np.nonzero(on)
        out[e, s] = g.batch[core.s_kind[e, s], core.s_phase[e, s], core.s_t[e, s], np.minimum(core.s_n[e, s], g.max_gpus),
                            (core.s_nodes[e, s] > 1).astype(np.int64), core.s_adapt[e, s].astype(np.int64)]
        return out

    @property
    def waited(self) -> np.ndarray:
        return np.where(self._core.s_status > 0, self._core.clock[:, None] - self._core.s_submit, 0.0)

    @property
    def work(self) -> np.ndarray:
        if not self.known_durations:
            raise PermissionError("job durations are hidden from the scheduler (known_durations=False)")
        return _ro(self._core.s_work)

    @property
    def remaining(self) -> np.ndarray:
        return self.work - self._core.s_done


@dataclass(frozen=True)
class Priority:
    """Serve jobs in decreasing ``scores`` (``(E, S)``; ``-inf``/NaN: leave out).

    ``preempt``: running jobs compete too and lose their GPUs if outranked (a bool, or an
    ``(E,)`` mask of the envs where preemption happens now). ``backfill``: skip jobs that do not
    fit (False: strict head-of-line).
    """

    scores: np.ndarray
    backfill: bool = True
    preempt: bool | np.ndarray = False


@dataclass(frozen=True)
class Allocation:
    """GPU count ``n`` and GPU type index ``t`` per slot (each ``(E, S)``), and optionally
    (``None``: unchanged, see :meth:`envs.core.ClusterCore.apply`):

    - ``adaptive`` (bool): goodput jobs train at their goodput-optimal batch size
      (:mod:`envs.goodput`) rather than their own;
    - ``partner`` (int slot, -1 none): the job shares the GPUs of the running job in that slot
      (space sharing, same count and type);
    - ``place`` (``(E, S, N)`` GPUs per node): explicit placement of jobs that (re)start (rows of
      zeros: the core's placer decides);
    - ``cpus``, ``mem`` (float per GPU, NaN: GPU-proportional): CPUs and GB of memory per GPU
      (cores built with ``resources=True``);
    - ``shift`` (bool): the job's communication is time-shifted to interleave with the other
      jobs on its network links (cores built with ``network=True``).
    """

    n: np.ndarray
    t: np.ndarray
    adaptive: np.ndarray | None = None
    partner: np.ndarray | None = None
    place: np.ndarray | None = None
    cpus: np.ndarray | None = None
    mem: np.ndarray | None = None
    shift: np.ndarray | None = None

    @property
    def extended(self) -> bool:
        """Uses more than GPU counts and types (sharing, placement, CPUs, time shifts)."""
        return any(v is not None for v in (self.partner, self.place, self.cpus, self.mem, self.shift))

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> Allocation:
        """From GPU counts per slot and GPU type, ``(E, S, T)``. A job given GPUs of two types
        would be placed twice (a gang runs on one type): :class:`AllocationError`."""
        counts = np.asarray(counts)
        if counts.ndim != 3:
            raise AllocationError(f"counts must have shape (num_envs, slots, gpu_types), got {counts.shape}")
        twice = (counts > 0).sum(axis=2) > 1
        if twice.any():
            e, s = np.argwhere(twice)[0]
            raise AllocationError(f"env {e}, slot {s}: job placed twice, on GPU types {np.flatnonzero(counts[e, s]).tolist()}; a gang runs on one GPU type")
        return cls(counts.sum(axis=2), counts.argmax(axis=2))


class Policy(ABC):
    """Base class of schedulers. Subclasses set the class attributes and implement :meth:`decide`.

    ``needs_durations``: refuses to run when durations are hidden. ``round_length``: the
    re-scheduling period the policy expects (seconds, ``None`` for event-driven only).
    """

    name: str = "policy"
    needs_durations: bool = False
    round_length: float | None = None

    def reset(self, view: ClusterView) -> None:
        """Called once before a replay or when the envs are (re)built."""
        if self.needs_durations and not view.known_durations:
            raise ValueError(f"policy {self.name!r} needs job durations, but they are hidden (known_durations=False)")

    def prepare(self, view: ClusterView) -> None:  # noqa: B027 (optional hook, empty by default)
        """Called by the driver before every decision: bring the policy's own state in line with
        ``view`` (e.g. size it for its envs). Must not change the view. Default: nothing."""

    @abstractmethod
    def decide(self, view: ClusterView) -> Priority | Allocation | None:
        """The decision at the current event of every env in ``view``."""

    def plan(self, view: ClusterView) -> Priority | Allocation | None:
        """The decision in its natural form, for drivers that translate it rather than execute
        it (the Gym adapter turns a ``Priority`` into scores or picks). :meth:`decide` may return
        an equivalent cheaper form (e.g. an ``Allocation`` for a preemptive ``Priority``).
        Default: :meth:`decide`'s result."""
        return self.decide(view)


def execute(core: ClusterCore, decision: Priority | Allocation | None, envs: np.ndarray | None = None) -> None:
    """Carry out a policy's decision on the envs in the mask ``envs`` (all by default)."""
    if decision is None:
        return
    mask = np.ones(core.E, dtype=bool) if envs is None else envs
    if isinstance(decision, Allocation):
        core.apply(decision.n, decision.t, mask, adaptive=decision.adaptive, partner=decision.partner,
                   place=decision.place, cpus=decision.cpus, mem=decision.mem, shift=decision.shift)
        return
    core.serve(np.asarray(decision.scores, dtype=np.float64), backfill=decision.backfill,
               preempt=decision.preempt, envs=mask)
