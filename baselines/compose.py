"""Composition: an admission policy x a scheduling policy x a placement policy.

Blox (Agarwal et al., EuroSys'24; ``../shared/papers/modern.md`` section 9) builds a scheduler
from parts that combine freely: each round, an **admission** policy decides which newly arrived
jobs the scheduler may see, a **scheduling** policy orders the jobs it sees, a **placement**
policy decides on which GPUs the jobs it starts run. :func:`compose` does the same with the
project's parts, each kept in one place:

- scheduling: any registered baseline (``baselines.get``); rule-based ones (FIFO, SJF, SRTF, LAS,
  Tiresias, Gandiva, Themis...) compose with every admission and placement policy;
- admission (:data:`ADMISSIONS`):

  - ``"all"`` (default): every job is seen as soon as it arrives (what every baseline does);
  - ``"load"``: Blox's load-based accept (``admission_control/load_based_accept.py``): arrivals
    wait in an overflow queue, outside the scheduler's view, and are admitted from its head in
    arrival order (strict FIFO: the head blocks later jobs) while the GPUs requested by the
    admitted, unfinished jobs (running or waiting) stay within ``factor`` x the cluster's GPUs
    (``factor=1.2``, Blox's setting; it also uses 1.4). When nothing is admitted the head is
    admitted whatever its size, so a job larger than the limit cannot block the cluster forever;
    this is the only way admitted demand exceeds the limit while jobs are held;
  - ``"jobs"``: at most ``max_jobs`` admitted, unfinished jobs (the same queue, counting jobs);

  admission happens at every decision (arrivals, completions, rounds), not only at round
  boundaries as in Blox; an admitted job stays admitted until it finishes, preempted or not;
  held jobs wait, and their waiting counts in their JCT;
- placement (:data:`PLACEMENTS`): ``None`` (default) keeps the scheduler's own (the core's placer,
  ``SimConfig.placer``, or what the scheduler chooses itself); ``"consolidate"`` and ``"spread"``
  place the jobs the scheduler starts with :mod:`envs.placement`'s placers, in the order the core
  would place them (serving order for jobs started on free GPUs, workload order after
  preemption), so ``"consolidate"`` reproduces the core's default placement exactly;
  ``"cassini"`` is :class:`baselines.cassini.Cassini` with the scheduler as its host (network
  model; knobs in ``placement_knobs``); ``"synergy"`` places the scheduler's jobs and divides CPUs
  and memory by Synergy's TUNE (:func:`baselines.synergy.plan_resources`; resource model;
  ``placement_knobs={"mode": "greedy"}`` or ``"proportional"`` for its variants), re-divided at
  round boundaries and whenever the scheduler starts or stops a job.

The composed policy is a :class:`~baselines.base.Baseline`: it runs in :func:`envs.simulate` and
the leaderboard like any other, and ``baselines.get(name, admission=..., placement=...)`` builds
one. The default composition (``admission="all"``, ``placement=None``) decides exactly as the
scheduler alone. What the scheduler sees under admission is the simulator's view with the held
jobs shown as empty slots; whatever it decides, held jobs get no GPUs.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import numpy as np

from baselines.base import (
    EMPTY,
    RUNNING,
    WAITING,
    Baseline,
    BaselineKnobs,
    order_scores,
    serve_order,
    take_in_order,
)
from envs import placement as placers
from envs.lowering import allocation
from envs.policy import Allocation, ClusterView, Priority

__all__ = ["ADMISSIONS", "PLACEMENTS", "AcceptAll", "Admission", "AdmittedView", "Composed", "JobCapAccept",
           "LoadBasedAccept", "compose"]

_BIG = np.iinfo(np.int64).max


def _ro(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------------------------- admission
@dataclass(frozen=True)
class Admission:
    """An admission policy: which held jobs join the scheduler's view now (no knobs here)."""

    name: ClassVar[str] = "all"

    def admit(self, view: ClusterView, admitted: np.ndarray, held: np.ndarray) -> np.ndarray:
        """``(E, S)`` the ``held`` jobs (arrived, not yet admitted) admitted now, given the
        ``admitted`` unfinished jobs (both ``(E, S)`` bool over ``view``'s slots)."""
        return held.copy()

    def knobs(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AcceptAll(Admission):
    """Accept every job on arrival (Blox's accept-all)."""

    name: ClassVar[str] = "all"


def _fifo_head(view: ClusterView, held: np.ndarray, budget: np.ndarray, size: np.ndarray,
               admitted: np.ndarray) -> np.ndarray:
    """The longest arrival-order prefix of ``held`` whose ``size`` fits ``budget`` (``(E,)``), and
    the head alone in envs with nothing admitted (so the cluster is never left idle)."""
    order = serve_order(view, np.where(held, -view.submit, -np.inf), held)  # earliest first, ties to the earlier job
    took = take_in_order(order, size, held, np.maximum(budget, 0), backfill=False)
    idle = held.any(axis=1) & ~admitted.any(axis=1) & ~took.any(axis=1)
    e = np.flatnonzero(idle)
    took[e, order[e, 0]] = True
    return took


@dataclass(frozen=True)
class LoadBasedAccept(Admission):
    """Blox's load-based accept: admit in arrival order while the admitted, unfinished jobs ask
    for at most ``factor`` x the cluster's GPUs."""

    name: ClassVar[str] = "load"
    factor: float = 1.2
    """admitted GPU demand limit, in multiples of the cluster's GPUs (Blox: 1.2 or 1.4)"""

    def __post_init__(self) -> None:
        f = self.factor
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not (math.isfinite(f) and f > 0):
            raise ValueError(f"admission 'load': factor must be a finite number > 0, got {f!r}")
        object.__setattr__(self, "factor", float(f))

    def limit(self, view: ClusterView) -> int:
        """The admitted demand limit, in GPUs."""
        return math.floor(self.factor * view.total_gpus + 1e-9)

    def admit(self, view: ClusterView, admitted: np.ndarray, held: np.ndarray) -> np.ndarray:
        gpus = np.asarray(view.gpus, dtype=np.int64)
        demand = np.where(admitted, gpus, 0).sum(axis=1)
        return _fifo_head(view, held, self.limit(view) - demand, gpus, admitted)


@dataclass(frozen=True)
class JobCapAccept(Admission):
    """Admit in arrival order while fewer than ``max_jobs`` admitted jobs are unfinished."""

    name: ClassVar[str] = "jobs"
    max_jobs: int = 64
    """most admitted, unfinished jobs"""

    def __post_init__(self) -> None:
        m = self.max_jobs
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise ValueError(f"admission 'jobs': max_jobs must be an integer >= 1, got {m!r}")
        object.__setattr__(self, "max_jobs", int(m))

    def admit(self, view: ClusterView, admitted: np.ndarray, held: np.ndarray) -> np.ndarray:
        ones = np.ones(held.shape, dtype=np.int64)
        return _fifo_head(view, held, self.max_jobs - admitted.sum(axis=1), ones, admitted)


ADMISSIONS: dict[str, type[Admission]] = {c.name: c for c in (AcceptAll, LoadBasedAccept, JobCapAccept)}

#: placement policies: the scheduler's own (``None``), a placer of :mod:`envs.placement`, or a
#: placement module of a baseline
PLACEMENTS: tuple[str, ...] = ("consolidate", "spread", "cassini", "synergy")
_PLACEMENT_KNOBS = {"consolidate": (), "spread": (), "synergy": ("mode",)}


class AdmittedView:
    """The scheduler's view under admission: ``view`` with the ``held`` slots shown empty
    (``status`` EMPTY, ``job`` -1, not ``waiting``); everything else is ``view``'s."""

    def __init__(self, view: ClusterView, held: np.ndarray) -> None:
        self._view = view
        self._held = held
        self.status = _ro(np.where(held, EMPTY, view.status).astype(np.asarray(view.status).dtype))
        self.job = _ro(np.where(held, -1, view.job))

    def __getattr__(self, name: str):
        return getattr(self._view, name)

    @property
    def waiting(self) -> np.ndarray:
        return self.status == WAITING

    @property
    def running(self) -> np.ndarray:
        return self.status == RUNNING

    @property
    def at_round_boundary(self) -> np.ndarray:
        return self._view.at_round_boundary


# ---------------------------------------------------------------------------------- the policy
class Composed(Baseline):
    """A scheduler with an admission policy in front and a placement policy behind it."""

    name = "composed"
    job_fields: ClassVar[dict[str, tuple[type, object]]] = {
        "admitted": (bool, False),
        "cpu_ask": (np.float64, np.nan),  # CPUs per GPU last asked (Synergy placement)
        "mem_ask": (np.float64, np.nan),
    }

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        scheduler: str | Baseline = "fifo"
        """the scheduling policy: a registered baseline's name or a :class:`Baseline` instance"""
        scheduler_knobs: dict = field(default_factory=dict)
        """knobs of a scheduler given by name"""
        admission: str = "all"
        """the admission policy, one of :data:`ADMISSIONS`"""
        admission_knobs: dict = field(default_factory=dict)
        """its knobs (``load``: ``factor``; ``jobs``: ``max_jobs``)"""
        placement: str | None = None
        """the placement policy, one of :data:`PLACEMENTS` (``None``: the scheduler's own)"""
        placement_knobs: dict = field(default_factory=dict)
        """its knobs (``cassini``: CASSINI's knobs but ``host``; ``synergy``: ``mode``)"""

        def __post_init__(self) -> None:
            import baselines  # the registry imports this module

            sched, sk = self.scheduler, self.scheduler_knobs
            if isinstance(sched, Baseline):
                if sk:
                    raise ValueError("scheduler_knobs is for a scheduler given by name; configure the instance instead")
            elif sched not in baselines.REGISTRY:
                raise ValueError(f"unknown scheduler {sched!r}; schedulers are {baselines.names()}")
            for what, value, known in (("admission", self.admission, list(ADMISSIONS)),
                                       ("placement", self.placement, [None, *PLACEMENTS])):
                if value not in known:
                    raise ValueError(f"unknown {what} policy {value!r}; {what} policies are {known}")
            for what in ("scheduler_knobs", "admission_knobs", "placement_knobs"):
                if not isinstance(getattr(self, what) or {}, dict):
                    raise ValueError(f"{what} must be a dict, got {getattr(self, what)!r}")
            name = sched if isinstance(sched, str) else sched.name
            if self.placement is not None and name in ("cassini", "synergy", "synergy_greedy", "synergy_proportional"):
                raise ValueError(f"scheduler {name!r} places jobs itself; compose its host instead "
                                 f"(placement={self.placement!r} would replace its own placement)")
            if self.placement is None and self.placement_knobs:
                raise ValueError("placement_knobs given without a placement policy")
            allowed = _PLACEMENT_KNOBS.get(self.placement)
            if allowed is not None:
                bad = sorted(set(self.placement_knobs) - set(allowed))
                if bad:
                    raise TypeError(f"placement {self.placement!r} has no knob {', '.join(map(repr, bad))}; "
                                    f"its knobs are {list(allowed)}")
            if self.placement == "synergy":
                from baselines.synergy import MODES

                mode = self.placement_knobs.get("mode", "tune")
                if mode not in MODES:
                    raise ValueError(f"placement 'synergy': mode must be one of {MODES}, got {mode!r}")
            self._set(scheduler_knobs=dict(sk or {}), admission_knobs=dict(self.admission_knobs or {}),
                      placement_knobs=dict(self.placement_knobs or {}))

    def _derive(self) -> None:
        import baselines

        cfg = self.config
        sched = cfg.scheduler
        if isinstance(sched, str):
            sched = baselines.REGISTRY[sched](**cfg.scheduler_knobs)
        self.scheduler = sched
        try:
            self.admission = ADMISSIONS[cfg.admission](**cfg.admission_knobs)
        except TypeError as exc:
            raise TypeError(f"admission {cfg.admission!r}: {exc}") from None
        self.placement = cfg.placement
        self.inner: Baseline = sched
        self._placer = None
        if cfg.placement == "cassini":
            from baselines.cassini import Cassini

            if "host" in cfg.placement_knobs or "host_knobs" in cfg.placement_knobs:
                raise ValueError("placement 'cassini': its host is the scheduler; do not give host or host_knobs")
            self.inner = Cassini(host=sched, **cfg.placement_knobs)
        elif cfg.placement in ("consolidate", "spread"):
            self._placer = placers.get(cfg.placement)
        self._mode = cfg.placement_knobs.get("mode", "tune")
        self.needs_durations = sched.needs_durations
        self.round_length = sched.round_length
        parts = [f"{k}={v}" for k, v in (("admission", cfg.admission), ("placement", cfg.placement))
                 if v not in ("all", None)]
        self.name = sched.name if not parts else f"{sched.name}[{', '.join(parts)}]"

    def knobs(self) -> dict[str, object]:
        """The knobs with the scheduler by name (an instance contributes its own knobs as
        ``scheduler_knobs``): ``compose(**knobs())`` rebuilds an equal policy."""
        knobs = super().knobs()
        knobs["scheduler"] = self.scheduler.name
        knobs["scheduler_knobs"] = (dict(self.config.scheduler_knobs) if isinstance(self.config.scheduler, str)
                                    else self.scheduler.knobs())
        knobs["admission_knobs"] = self.admission.knobs()
        return knobs

    def reset(self, view: ClusterView) -> None:
        super().reset(view)
        self.inner.reset(view)

    def reset_envs(self, envs: np.ndarray) -> None:
        super().reset_envs(envs)
        self.inner.reset_envs(envs)

    # ------------------------------------------------------------------ admission
    def admitted(self, view: ClusterView) -> np.ndarray:
        """``(E, S)`` the unfinished jobs the scheduler may see (as of the last decision)."""
        if isinstance(self.admission, AcceptAll):
            return view.status != EMPTY
        return (view.status != EMPTY) & (self.jobs.gather("admitted", view) | view.running)

    def _admit(self, view: ClusterView) -> np.ndarray:
        """Admit held jobs; returns the jobs still held ``(E, S)``."""
        active = view.status != EMPTY
        admitted = self.admitted(view)
        held = active & ~admitted
        if held.any():
            new = self.admission.admit(view, admitted, held) & held
            if new.any():
                self.jobs.scatter("admitted", view, np.ones(new.shape, dtype=bool), new)
                held &= ~new
        return held

    # ------------------------------------------------------------------ decision
    def plan(self, view: ClusterView) -> Priority | Allocation | None:
        held = None if isinstance(self.admission, AcceptAll) else self._admit(view)
        seen = view if held is None or not held.any() else AdmittedView(view, held)
        self.inner.prepare(seen)
        decision = self.inner.plan(seen)
        if decision is None and self.placement == "synergy" and np.any(view.at_round_boundary):
            decision = Allocation(np.where(seen.running, seen.allocated, 0), np.array(seen.gpu_type))  # re-divide
        if decision is not None and (self._placer is not None or self.placement == "synergy"):
            decision = self._place(seen, decision)
        if seen is not view:
            decision = _hold(decision, held)
        return decision

    def _allocation(self, view, decision) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """The decision as GPU counts and types per slot, the order in which the core would
        place the jobs that start and the scheduler's priority order (each ``(E, S)`` slots;
        workload order for an ``Allocation``), and the parts of an ``Allocation`` that placement
        leaves as they are."""
        E = view.num_envs
        job = np.asarray(view.job)
        workload = np.argsort(np.where(job >= 0, job, _BIG), axis=1, kind="stable")
        if isinstance(decision, Allocation):
            extra = {k: getattr(decision, k) for k in ("adaptive", "partner", "place", "cpus", "mem", "shift")
                     if getattr(decision, k) is not None}
            n = np.asarray(decision.n, dtype=np.int64)
            return n, np.where(n > 0, np.asarray(decision.t, dtype=np.int64), view.gpu_type), workload, workload, extra
        if not isinstance(decision, Priority):
            raise TypeError(f"the scheduler's decision must be Priority, Allocation or None, got {type(decision).__name__}")
        preempt = np.broadcast_to(np.asarray(decision.preempt, dtype=bool), (E,))
        scores = np.asarray(decision.scores, dtype=np.float64)
        scores = np.where(np.isnan(scores), -np.inf, scores)
        n, t = allocation(view, scores, backfill=decision.backfill, preempt=preempt)
        served = serve_order(view, scores, view.waiting & (scores > -np.inf))
        order = np.where(preempt[:, None], workload, served)
        ranked = serve_order(view, scores, (view.status != EMPTY) & (scores > -np.inf))
        return np.asarray(n, dtype=np.int64), np.where(n > 0, t, view.gpu_type), order, ranked, {}

    def _place(self, view, decision) -> Priority | Allocation | None:
        n, t, order, ranked, extra = self._allocation(view, decision)
        run = view.running
        guest = np.asarray(view.guest)
        cur_p = np.where(guest, view.partner, -1)
        p = np.where(n > 0, np.asarray(extra["partner"], dtype=np.int64), -1) if "partner" in extra else cur_p
        keep = run & (n == view.allocated) & (t == view.gpu_type) & (p == cur_p)
        given = np.asarray(extra["place"]).sum(axis=2) > 0 if "place" in extra else np.zeros_like(keep)
        todo = (n > 0) & ~keep & (p < 0) & ~given
        if self.placement == "synergy":
            return self._synergy(view, n, t, ranked, keep, extra)
        if not todo.any():
            return decision
        leaving = run & ~keep & ~guest
        avail = np.asarray(view.free_per_node, dtype=np.int64) + (np.asarray(view.placement) * leaving[:, :, None]).sum(axis=1)
        if given.any():  # the scheduler's own placements go first
            avail = avail - (np.asarray(extra["place"]) * (given & ~keep)[:, :, None]).sum(axis=1)
        place = placers.place_in_order(avail, np.asarray(view.node_type), order, todo, n, t, self._placer)
        if given.any():
            place = np.where(given[:, :, None], np.asarray(extra["place"]), place)
        extra["place"] = place
        return Allocation(n, t, **extra)

    def _synergy(self, view, n, t, order, keep, extra) -> Allocation | None:
        """Synergy's placement and CPU/memory division of the scheduler's allocation (``order``:
        the scheduler's priority order, the last tie-break of Synergy's serving order)."""
        from baselines.synergy import plan_resources

        if not view.resources:
            raise ValueError("placement 'synergy' divides CPUs and memory: it needs the resource model "
                             "(resources=True)")
        if "partner" in extra or "place" in extra:
            raise ValueError(f"placement 'synergy' cannot place {self.scheduler.name!r}'s shared or pre-placed jobs")
        run = view.running
        boundary = np.array(view.at_round_boundary, dtype=bool)
        changed = ((n > 0) & ~keep).any(axis=1) | (run & ~keep).any(axis=1)
        replan = boundary | changed
        if not replan.any():
            return None
        admitted = replan[:, None] & (n > 0)
        kept = admitted & keep
        rank = np.empty(order.shape, dtype=np.float64)
        rank[np.arange(order.shape[0])[:, None], order] = np.arange(order.shape[1])
        between = (~boundary)[:, None] & kept
        serve = order_scores(view, [np.where(between, 0, 1), -n, rank], admitted)
        srv = serve_order(view, serve, admitted)
        P, pc, pm, skipped = plan_resources(
            self._mode, srv, admitted.sum(axis=1), kept, np.maximum(n, 1), t, view.model, view.job,
            view.placement, view.node_type, view.node_capacity, view.node_cpus, view.node_mem)
        placed = admitted & ~skipped
        if self._mode == "proportional":
            pc = np.full_like(pc, np.nan)
            pm = np.full_like(pm, np.nan)
        rc, rm = self.jobs.gather_many(view, ("cpu_ask", "mem_ask"))
        live = view.status != EMPTY
        re = replan[:, None]
        cpus = np.where(re & placed, pc, rc)
        mem = np.where(re & placed, pm, rm)
        self.jobs.scatter_many(view, live & re, {"cpu_ask": cpus, "mem_ask": mem})
        n_out = np.where(re, np.where(placed, n, 0), view.allocated)
        t_out = np.where(re & placed, t, view.gpu_type)
        place = np.where((re & placed)[:, :, None], P, 0)
        return Allocation(n_out, t_out, place=place, cpus=cpus, mem=mem, **extra)


def _hold(decision, held: np.ndarray):
    """The decision with the ``held`` jobs given nothing."""
    if isinstance(decision, Priority):
        scores = np.where(held, -np.inf, np.asarray(decision.scores, dtype=np.float64))
        return Priority(scores, backfill=decision.backfill, preempt=decision.preempt)
    if isinstance(decision, Allocation):
        if (np.asarray(decision.n)[held] > 0).any():
            n = np.where(held, 0, decision.n)
            return Allocation(n, decision.t, adaptive=decision.adaptive, partner=decision.partner,
                              place=decision.place, cpus=decision.cpus, mem=decision.mem, shift=decision.shift)
    return decision


def compose(scheduler: str | Baseline = "fifo", *, admission: str = "all", placement: str | None = None,
            scheduler_knobs: dict | None = None, admission_knobs: dict | None = None,
            placement_knobs: dict | None = None) -> Composed:
    """``scheduler`` (a registered baseline's name, or an instance) with the ``admission`` policy
    in front (:data:`ADMISSIONS`) and the ``placement`` policy behind (:data:`PLACEMENTS`;
    ``None``: the scheduler's own). ``ValueError`` naming the choices for an unknown part."""
    return Composed(scheduler=scheduler, scheduler_knobs=scheduler_knobs or {}, admission=admission,
                    admission_knobs=admission_knobs or {}, placement=placement, placement_knobs=placement_knobs or {})
