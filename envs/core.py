"""The simulation core: many GPU clusters stepped at once as NumPy arrays.

Design
------
Every array has a leading env axis ``E``. Each env has its own clock, workload, cluster state and
episode; a step is array operations across envs. Loops run over *ranks* (the r-th arrival or
the r-th placement of an instant), never over envs.

Jobs live in two tables:

* the **job table** ``(E, J)``: the static workload of each env (submit, work, requested GPUs,
  model, elastic bounds) and its results (first start, finish, preemptions, restarts, ...);
* the **slot table** ``(E, S)``: only the *active* jobs (arrived, not finished). Arrivals take a
  free slot, completions free it, and ``S`` grows when an env needs more. Per-event cost thus
  scales with the number of active jobs, not with the trace length, which is what lets a single
  core replay all 82k Philly jobs in seconds and lets 1,024 envs step together.

Time is event driven (DESIGN section 4): the clock of each env jumps to its next event: an
arrival, a completion, the end of a restart, or a round boundary. Between events allocations are
fixed and progress is ``rate * elapsed`` computed exactly; a restarting job holds its GPUs and
makes no progress until ``restart_until``. Every decision is independent of where a job sits in
the slot table (ties break on the job's position in its workload), so a lone env and the same
env inside a wide batch follow the same trajectory.

Decisions reach the core as allocations: per slot, a GPU count and one GPU type (a synchronous
gang runs on one type; every modelled scheduler assigns one). :meth:`ClusterCore.apply` keeps
the placement of jobs whose allocation is unchanged (no restart), preempts jobs that lose their
GPUs, and places the rest with a pluggable placer (:mod:`envs.placement`). :meth:`greedy` is the
shared gang allocator that serves jobs in priority order. Invalid allocations raise
:class:`AllocationError` before any state changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from envs import placement
from envs.goodput import GoodputTable
from envs.workload import Workload
from traces import models
from traces.clusters import ClusterSpec

EMPTY, WAITING, RUNNING = 0, 1, 2
_INF = np.inf
_NO_JOB = np.iinfo(np.int64).max


class AllocationError(ValueError):
    """An allocation the cluster cannot carry out (names the env, job and what was wrong)."""


@dataclass(frozen=True)
class StepStats:
    """What one :meth:`ClusterCore.advance` did, per env (all arrays of shape ``(E,)``)."""

    dt: np.ndarray  # seconds elapsed
    jobs_time: np.ndarray  # integral of the number of jobs in the system (job-seconds)
    slowdown_time: np.ndarray  # integral of sum over jobs in system of 1 / work
    gpu_time: np.ndarray  # integral of allocated GPUs (GPU-seconds)
    completed: np.ndarray  # jobs finished at the event
    round_hit: np.ndarray  # the event is a round boundary


class ClusterCore:
    """Vectorised state of ``num_envs`` copies of one cluster spec.

    Arguments: ``cluster`` (spec shared by all envs; each env has its own state),
    ``num_envs``, ``restart_overhead`` (seconds a resumed or moved job holds its GPUs without
    progress), ``round_length`` (seconds between round boundaries, ``None`` for none),
    ``placer`` (name in :data:`envs.placement.PLACERS` or a callable), ``goodput`` (the
    :class:`~envs.goodput.GoodputTable` of goodput jobs; workloads bring theirs),
    ``dynamic_phases`` (parts of a dynamically adapting job's work, each faster than the last).

    Resource models, off by default (each documented where it acts):

    - ``resources``: CPUs and memory per node (the cluster spec's ``cpus``, ``mem_gb``). A job
      gets CPUs and memory per GPU on each of its nodes (a GPU-proportional share unless the
      allocation asks otherwise, never more than the node has left) and its speed scales by
      :func:`traces.models.cpu_factor` relative to a GPU-proportional share (Synergy).
    - ``network``: each node has one uplink; a job spanning nodes spends a fraction
      ``phi = 1 - LOCALITY[model]`` of its iteration communicating over the links of its nodes.
      On a link used by spanning jobs with communication fractions summing to ``L``, a job's
      communication takes ``1 + L - phi`` times longer when phases fall at random, or
      ``max(1, L)`` when every job on the link is time-shifted to interleave (CASSINI); its
      speed is divided by ``(1 - phi) + phi * slowdown`` of its worst link.
    - GPU sharing is always available through :meth:`apply`'s ``partner``: two jobs on the same
      GPUs run at Gavel's measured pairwise speeds (:data:`traces.models.SHARING`).
    """

    def __init__(
        self,
        cluster: ClusterSpec,
        num_envs: int = 1,
        *,
        restart_overhead: float = 30.0,
        round_length: float | None = None,
        placer: str | placement.Placer = "consolidate",
        min_slots: int = 8,
        goodput: GoodputTable | None = None,
        resources: bool = False,
        network: bool = False,
        dynamic_phases: int = 4,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if not np.isfinite(restart_overhead) or restart_overhead < 0:
            raise ValueError(f"restart_overhead must be a finite number >= 0, got {restart_overhead}")
        if round_length is not None and not (np.isfinite(round_length) and round_length > 0):
            raise ValueError(f"round_length must be > 0 or None, got {round_length}")
        self.cluster = cluster
        self.E = num_envs
        self.restart_overhead = float(restart_overhead)
        self.round_length = None if round_length is None else float(round_length)
        self.placer = placement.get(placer)

        self.gpu_types: tuple[str, ...] = cluster.gpu_types
        self.T = len(self.gpu_types)
        self.node_type = np.array([self.gpu_types.index(g) for g in cluster.nodes["gpu_type"]], dtype=np.int64)
        self.node_cap = cluster.nodes["num_gpus"].to_numpy(np.int64)
        self.N = len(self.node_cap)
        self.type_onehot = (self.node_type[:, None] == np.arange(self.T)[None, :]).astype(np.int64)  # (N, T)
        self.capacity = self.node_cap @ self.type_onehot  # (T,)
        self.total_gpus = int(self.node_cap.sum())
        self.max_node = np.array([self.node_cap[self.node_type == t].max() for t in range(self.T)], dtype=np.int64)
        self.speed = models.speed_matrix(self.gpu_types)  # (M, T)
        self.scaling = models.scaling_vector()
        self.locality = models.locality_vector()
        self.goodput: GoodputTable | None = None
        if goodput is not None:
            self.set_goodput(goodput)
        if int(dynamic_phases) < 1:
            raise ValueError(f"dynamic_phases must be >= 1, got {dynamic_phases}")
        self.dynamic_phases = int(dynamic_phases)
        # CPU/memory (Synergy), network contention (CASSINI) and GPU sharing (Gavel, Lucid)
        self.resources = bool(resources)
        self.network = bool(network)
        self.coupled = self.network  # rates depend on other jobs (links, shared GPUs)
        self.node_cpu = cluster.nodes["cpus"].to_numpy(np.float64)
        self.node_mem = cluster.nodes["mem_gb"].to_numpy(np.float64)
        self.fair_cpu = self.node_cpu / self.node_cap  # CPUs per GPU of a GPU-proportional share
        self.fair_mem = self.node_mem / self.node_cap
        self.comm = models.comm_fraction_vector()
        self.sharing = models.sharing_matrix()

        self._alloc_jobs(1)
        self._alloc_slots(max(8, int(min_slots)))
        self.clock = np.zeros(self.E)
        self.free = np.tile(self.node_cap, (self.E, 1))
        self.free_cpu = np.tile(self.node_cpu, (self.E, 1))
        self.free_mem = np.tile(self.node_mem, (self.E, 1))
        self._dirty = np.zeros(self.E, dtype=bool)
        self.contention = np.zeros(self.E)  # integral of jobs in system over time
        self.gpu_seconds = np.zeros(self.E)
        self.n_active = np.zeros(self.E, dtype=np.int64)
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ storage
    def _alloc_jobs(self, J: int) -> None:
        E = self.E
        self.J = J
        self.n_jobs = np.zeros(E, dtype=np.int64)
        self.next_job = np.zeros(E, dtype=np.int64)
        self.n_done = np.zeros(E, dtype=np.int64)
        self.j_submit = np.full((E, J), _INF)
        self.j_work = np.ones((E, J))
        self.j_gpus = np.ones((E, J), dtype=np.int64)
        self.j_model = np.zeros((E, J), dtype=np.int64)
        self.j_min = np.ones((E, J), dtype=np.int64)
        self.j_max = np.ones((E, J), dtype=np.int64)
        self.j_start = np.full((E, J), np.nan)
        self.j_finish = np.full((E, J), np.nan)
        self.j_preempt = np.zeros((E, J), dtype=np.int64)
        self.j_restarts = np.zeros((E, J), dtype=np.int64)
        self.j_gpu_sec = np.zeros((E, J))
        self.j_cont_submit = np.zeros((E, J))
        self.j_cont_finish = np.zeros((E, J))
        self.j_gpus_used = np.zeros((E, J), dtype=np.int64)  # GPUs at the last (re)start
        self.j_kind = np.full((E, J), -1, dtype=np.int64)  # goodput kind (-1: plain job)
        self.j_restart = np.full((E, J), np.nan)  # restart overhead (NaN: the core's default)
        self.j_growth = np.ones((E, J))  # speed-up per dynamic-adaptation phase (1: static)

    _SLOT_FIELDS = (
        ("s_job", np.int64, -1), ("s_status", np.int8, EMPTY), ("s_submit", np.float64, 0.0),
        ("s_work", np.float64, 1.0), ("s_gpus", np.int64, 1), ("s_model", np.int64, 0),
        ("s_min", np.int64, 1), ("s_max", np.int64, 1), ("s_n", np.int64, 0), ("s_t", np.int64, 0),
        ("s_rate", np.float64, 0.0), ("s_done", np.float64, 0.0), ("s_restart_until", np.float64, -_INF),
        ("s_attained", np.float64, 0.0), ("s_nodes", np.int64, 0), ("s_started", bool, False),
        ("s_inv_work", np.float64, 0.0), ("s_kind", np.int64, -1), ("s_phase", np.int64, 0),
        ("s_phase_end", np.float64, _INF), ("s_unit", np.float64, 1.0), ("s_adapt", bool, False),
        ("s_restart_cost", np.float64, 0.0), ("s_growth", np.float64, 1.0), ("s_partner", np.int64, -1),
        ("s_guest", bool, False), ("s_shift", bool, False), ("s_cpu", np.float64, 0.0), ("s_mem", np.float64, 0.0),
        ("s_cpu_ask", np.float64, np.nan), ("s_mem_ask", np.float64, np.nan), ("s_base", np.float64, 0.0),
    )
    _FILL: ClassVar[dict] = {name: fill for name, _dtype, fill in _SLOT_FIELDS}
    # what a finished job's slot must forget (the rest is overwritten when a job arrives)
    _CLEAR_FIELDS = ("s_job", "s_status", "s_n", "s_rate", "s_done", "s_restart_until",
                     "s_attained", "s_nodes", "s_started", "s_inv_work", "s_kind", "s_phase", "s_phase_end",
                     "s_adapt", "s_partner", "s_guest", "s_shift", "s_cpu", "s_mem", "s_cpu_ask", "s_mem_ask",
                     "s_base", "s_growth")

    def _alloc_slots(self, S: int) -> None:
        self.S = S
        for name, dtype, fill in self._SLOT_FIELDS:
            setattr(self, name, np.full((self.E, S), fill, dtype=dtype))
        self.s_place = np.zeros((self.E, S, self.N), dtype=np.int32)

    def ensure_slots(self, S: int) -> None:
        """Grow the slot table until it has at least ``S`` slots (state is kept)."""
        while self.S < S:
            self._grow_slots()

    def record_preemptions(self, e: np.ndarray, s: np.ndarray) -> None:
        """Count a preemption for the jobs in slots ``(e, s)`` (jobs taken off their GPUs by a
        decision rather than by :meth:`stop` with ``preempted=True``)."""
        self.j_preempt[e, self.s_job[e, s]] += 1

    def _grow_slots(self) -> None:
        old = self.S
        new = 2 * old
        for name, dtype, fill in self._SLOT_FIELDS:
            arr = np.full((self.E, new), fill, dtype=dtype)
            arr[:, :old] = getattr(self, name)
            setattr(self, name, arr)
        place = np.zeros((self.E, new, self.N), dtype=np.int32)
        place[:, :old] = self.s_place
        self.s_place = place
        self.S = new

    # ------------------------------------------------------------------ episodes
    def load(self, envs: np.ndarray, workloads: list[Workload] | dict[str, np.ndarray]) -> None:
        """Reset the envs ``envs`` (indices) to time 0 with new workloads.

        ``workloads`` is either one :class:`Workload` per env, or a dict of ``(len(envs), L)``
        arrays ``submit, work, gpus, model, min_gpus, max_gpus`` (optionally ``kind``,
        ``restart``) plus ``num_jobs`` ``(len(envs),)`` (the fast path used by the Gymnasium envs
        to reset many envs at once). Workloads with goodput jobs bring their
        :class:`~envs.goodput.GoodputTable`, which the core adopts (one table per core).
        """
        self._cache = None
        envs = np.asarray(envs, dtype=np.int64)
        if isinstance(workloads, dict):
            arrays, counts = workloads, np.asarray(workloads["num_jobs"], dtype=np.int64)
        else:
            if len(workloads) != len(envs):
                raise ValueError("one workload per env is needed")
            L = max(w.num_jobs for w in workloads)
            counts = np.array([w.num_jobs for w in workloads], dtype=np.int64)
            arrays = {}
            for key, attr, fill in (("submit", "submit", _INF), ("work", "work", 1.0), ("gpus", "gpus", 1),
                                    ("model", "model", 0), ("min_gpus", "min_gpus", 1), ("max_gpus", "max_gpus", 1),
                                    ("kind", "kind", -1), ("restart", "restart", np.nan), ("growth", "growth", 1.0)):
                a = np.full((len(envs), L), fill,
                            dtype=np.float64 if key in ("submit", "work", "restart", "growth") else np.int64)
                for i, w in enumerate(workloads):
                    v = getattr(w, attr)
                    if v is not None:
                        a[i, : w.num_jobs] = v
                arrays[key] = a
            for w in workloads:
                if w.goodput is not None:
                    self.set_goodput(w.goodput)
        L = arrays["submit"].shape[1]
        if (np.asarray(arrays.get("kind", -1)) >= 0).any() and self.goodput is None:
            raise ValueError("the workload has goodput jobs but no goodput table was given (envs.goodput)")
        for i, g in enumerate(counts):
            too_big = arrays["gpus"][i, :g] > self.capacity.max()
            if too_big.any():
                j = int(np.flatnonzero(too_big)[0])
                raise ValueError(f"job {j} requests {arrays['gpus'][i, j]} GPUs; the largest GPU pool has {self.capacity.max()}")
        if L > self.J:
            self._grow_jobs(L)
        e = envs
        self.n_jobs[e] = counts
        self.next_job[e] = 0
        self.n_done[e] = 0
        pad = np.arange(self.J)[None, :] >= counts[:, None]
        for key, dst, fill in (("submit", self.j_submit, _INF), ("work", self.j_work, 1.0), ("gpus", self.j_gpus, 1),
                               ("model", self.j_model, 0), ("min_gpus", self.j_min, 1), ("max_gpus", self.j_max, 1),
                               ("kind", self.j_kind, -1), ("restart", self.j_restart, np.nan),
                               ("growth", self.j_growth, 1.0)):
            full = np.full((len(e), self.J), fill, dtype=dst.dtype)
            full[:, :L] = arrays.get(key, fill)
            full[pad] = fill
            dst[e] = full
        self.j_start[e] = np.nan
        self.j_finish[e] = np.nan
        for arr in (self.j_preempt, self.j_restarts, self.j_gpu_sec, self.j_cont_submit, self.j_cont_finish, self.j_gpus_used):
            arr[e] = 0
        for name, _dtype, fill in self._SLOT_FIELDS:
            getattr(self, name)[e] = fill
        self.s_place[e] = 0
        self.clock[e] = 0.0
        self.free[e] = self.node_cap
        self.free_cpu[e] = self.node_cpu
        self.free_mem[e] = self.node_mem
        self.contention[e] = 0.0
        self.gpu_seconds[e] = 0.0
        self.n_active[e] = 0
        mask = np.zeros(self.E, dtype=bool)
        mask[e] = True
        self._admit(mask)

    def _grow_jobs(self, J: int) -> None:
        old = {name: getattr(self, name) for name in vars(self) if name.startswith("j_")}
        keep = (self.n_jobs.copy(), self.next_job.copy(), self.n_done.copy())
        oldJ = self.J
        self._alloc_jobs(J)
        self.n_jobs, self.next_job, self.n_done = keep
        for name, arr in old.items():
            getattr(self, name)[:, :oldJ] = arr

    # ------------------------------------------------------------------ queries
    @property
    def done(self) -> np.ndarray:
        """``(E,)``: every job of the env's workload has finished."""
        return self.n_done >= self.n_jobs

    def free_per_type(self) -> np.ndarray:
        """``(E, T)`` free GPUs per GPU type."""
        return self.free @ self.type_onehot

    def min_nodes(self, n: np.ndarray, t: np.ndarray) -> np.ndarray:
        return -(-n // self.max_node[t])

    def rate_of(self, model: np.ndarray, gpus: np.ndarray, n: np.ndarray, t: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Progress rate (reference-seconds per second) of jobs given ``n`` GPUs of type ``t`` on
        ``nodes`` nodes (all arrays broadcast together)."""
        n_safe = np.maximum(n, 1)
        rate = self.speed[model, t] * (n_safe / gpus) ** self.scaling[model]
        spread = nodes > self.min_nodes(n_safe, t)
        rate = np.where(spread, rate * self.locality[model], rate)
        return np.where(n > 0, rate, 0.0)

    def set_goodput(self, table: GoodputTable) -> None:
        """Use ``table`` for the rates of goodput jobs (its GPU types must be the cluster's)."""
        if tuple(table.gpu_types) != self.gpu_types:
            raise ValueError(f"goodput table is for GPU types {table.gpu_types}, the cluster has {self.gpu_types}")
        if self.goodput is not None and self.goodput is not table:
            if (self.j_kind >= 0).any() and self.goodput.kinds != table.kinds:
                raise ValueError("a core holds one goodput table; these workloads bring different ones")
        self.goodput = table

    def slot_rate(self, n: np.ndarray, t: np.ndarray, nodes: np.ndarray, adaptive: np.ndarray | None = None,
                  where: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Rate of the job in each slot on ``n`` GPUs of type ``t`` on ``nodes`` nodes (arrays
        ``(E, S)``, or 1-D for the slots ``where = (e, s)``), at a fixed batch size or, where
        ``adaptive``, the goodput-optimal one (goodput jobs only)."""
        idx = (slice(None), slice(None)) if where is None else where
        rate = self.rate_of(self.s_model[idx], self.s_gpus[idx], n, t, nodes)
        g = self.s_growth[idx]
        if (g != 1.0).any():
            rate = rate * self.growth_multiplier(g, self.s_phase[idx])
        if self.goodput is None:
            return rate
        kind = self.s_kind[idx]
        gp = kind >= 0
        if not gp.any():
            return rate
        g = self.goodput
        adaptive = np.zeros(kind.shape, dtype=bool) if adaptive is None else np.broadcast_to(adaptive, kind.shape)
        k = np.maximum(kind, 0)
        n_ = np.clip(n, 0, g.max_gpus)
        r = g.rate[k, self.s_phase[idx], np.clip(t, 0, self.T - 1), n_, (nodes > 1).astype(np.int64),
                   adaptive.astype(np.int64)] * self.s_unit[idx]
        return np.where(gp, np.where(n > 0, r, 0.0), rate)

    def growth_multiplier(self, growth: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """Speed of a dynamically adapting job in ``phase`` relative to its nominal speed: it
        speeds up by ``growth`` at each of ``dynamic_phases`` equal parts of its work, normalised
        so that alone it still runs for exactly its duration (``g**p / mean_q g**-q``)."""
        P = self.dynamic_phases
        q = np.arange(P)
        norm = (np.asarray(growth)[..., None] ** -q).mean(axis=-1)
        return np.asarray(growth) ** np.minimum(phase, P - 1) * norm

    def finish_estimate(self) -> np.ndarray:
        """``(E, S)`` finish time of each running job if nothing changes (inf otherwise); for a
        goodput job, the end of its current phase if that comes first (its rate then changes)."""
        run = self.s_status == RUNNING
        resume = np.maximum(self.clock[:, None], self.s_restart_until)
        target = np.minimum(self.s_work, self.s_phase_end)
        with np.errstate(divide="ignore", invalid="ignore"):
            fin = resume + (target - self.s_done) / self.s_rate
        return np.where(run, fin, _INF)

    def next_event(self) -> np.ndarray:
        """``(E,)`` time of each env's next event (inf when the env has nothing left).

        Cached until the state next changes (every mutating method drops the cache)."""
        if self.coupled:
            self._refresh()
        if self._cache is not None:
            return self._cache[0]
        fin = self.finish_estimate()
        t_fin = fin.min(axis=1)
        idx = np.minimum(self.next_job, self.J - 1)
        t_arr = np.where(self.next_job < self.n_jobs, self.j_submit[np.arange(self.E), idx], _INF)
        restarting = (self.s_status == RUNNING) & (self.s_restart_until > self.clock[:, None])
        t_rst = np.where(restarting, self.s_restart_until, _INF).min(axis=1)
        t_next = np.minimum(np.minimum(t_fin, t_arr), t_rst)
        if self.round_length is not None:
            t_round = (np.floor(self.clock / self.round_length) + 1.0) * self.round_length
            t_next = np.minimum(t_next, np.where(self.n_active > 0, t_round, _INF))
        self._cache = (t_next, fin)
        return t_next

    # ------------------------------------------------------------------ time
    def advance(self, envs: np.ndarray | None = None) -> StepStats:
        """Move the clock of each env in the boolean mask ``envs`` (all if ``None``) to its next
        event, accruing progress exactly; then retire finished jobs and admit arrivals."""
        E = self.E
        mask = np.ones(E, dtype=bool) if envs is None else np.asarray(envs, dtype=bool)
        t_next = self.next_event()
        fin = self._cache[1]
        self._cache = None
        mask = mask & np.isfinite(t_next)
        t_next = np.where(mask, t_next, self.clock)
        dt = t_next - self.clock
        run = self.s_status == RUNNING
        resume = np.maximum(self.clock[:, None], self.s_restart_until)
        # rate is 0 off the GPUs, so only running jobs progress
        self.s_done += self.s_rate * np.clip(t_next[:, None] - resume, 0.0, None)
        self.s_attained += self.s_n * dt[:, None]
        gpu_time = self.s_n.sum(axis=1) * dt
        jobs_time = self.n_active * dt
        slowdown_time = self.s_inv_work.sum(axis=1) * dt
        self.gpu_seconds += gpu_time
        self.contention += jobs_time
        round_hit = np.zeros(E, dtype=bool)
        if self.round_length is not None:
            t_round = (np.floor(self.clock / self.round_length) + 1.0) * self.round_length
            round_hit = mask & (self.n_active > 0) & (t_next >= t_round)
        self.clock = t_next

        tol = 1e-9 * np.maximum(1.0, np.abs(t_next))
        reached = run & mask[:, None] & (fin - t_next[:, None] <= tol[:, None])
        finished = reached & (self.s_phase_end >= self.s_work)
        if (reached & ~finished).any():
            self._next_phase(*np.nonzero(reached & ~finished))
        completed = finished.sum(axis=1)
        if completed.any():
            e, s = np.nonzero(finished)
            j = self.s_job[e, s]
            self.j_finish[e, j] = self.clock[e]
            self.j_cont_finish[e, j] = self.contention[e]
            self.j_gpu_sec[e, j] = self.s_attained[e, s]
            self._release(e, s)
            self._clear(e, s)
            if self.resources:
                self._top_up(np.unique(e))
            np.add.at(self.n_done, e, 1)
            np.add.at(self.n_active, e, -1)
        self._admit(mask)
        return StepStats(dt, jobs_time, slowdown_time, gpu_time, completed, round_hit)

    def _next_phase(self, e: np.ndarray, s: np.ndarray) -> None:
        """Goodput jobs that reached the end of their phase enter the next one (new rate)."""
        self.s_done[e, s] = self.s_phase_end[e, s]
        self.s_phase[e, s] += 1
        self._set_phase_end(e, s)
        self._set_base(e, s)

    def _set_base(self, e: np.ndarray, s: np.ndarray) -> None:
        """Recompute the own rate of running jobs (speed model, goodput, adaptation, CPUs)."""
        r = self.slot_rate(self.s_n[e, s], self.s_t[e, s], self.s_nodes[e, s], self.s_adapt[e, s], (e, s))
        if self.resources:
            r = r * self._cpu_relative(e, s)
        self.s_base[e, s] = r
        self.s_rate[e, s] = r
        if self.coupled:
            self._dirty[e] = True

    def _fair_share(self, take: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        on = take > 0
        return (np.where(on, self.fair_cpu[None, :], _INF).min(axis=1),
                np.where(on, self.fair_mem[None, :], _INF).min(axis=1))

    def _cpu_relative(self, e: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Speed given the CPUs and memory a job holds, relative to a GPU-proportional share."""
        fc, fm = self._fair_share(self.s_place[e, s])
        m = self.s_model[e, s]
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = models.cpu_factor(m, self.s_cpu[e, s], self.s_mem[e, s]) / models.cpu_factor(m, fc, fm)
        # a job left without CPUs crawls (1%) rather than stalls, until CPUs free up (_top_up)
        return np.maximum(np.where(np.isfinite(rel), rel, 1.0), 0.01)

    def _grant(self, e: np.ndarray, s: np.ndarray) -> None:
        """Give started jobs the CPUs and memory they ask for per GPU (NaN: a GPU-proportional
        share), or what their nodes have left if less."""
        take = self.s_place[e, s].astype(np.float64)
        on = take > 0
        fc, fm = self._fair_share(take)
        for ask_name, free, fair, dst in (("s_cpu_ask", self.free_cpu, fc, self.s_cpu),
                                          ("s_mem_ask", self.free_mem, fm, self.s_mem)):
            ask = getattr(self, ask_name)[e, s]
            ask = np.where(np.isnan(ask), fair, ask)
            with np.errstate(divide="ignore", invalid="ignore"):
                avail = np.where(on, free[e] / np.where(on, take, 1.0), _INF).min(axis=1)
            got = np.clip(np.minimum(ask, avail), 0.0, None)
            got = np.where(np.isfinite(got), got, 0.0)
            np.subtract.at(free, e, got[:, None] * take)
            dst[e, s] = got

    def refresh(self) -> None:
        """Bring ``s_rate`` up to date with the coupling between jobs (done before every event)."""
        if self.coupled:
            self._refresh()

    def _refresh(self) -> None:
        """Apply the coupling between jobs (shared GPUs, shared network links) to the rates of
        the envs whose allocations changed since the last refresh."""
        d = np.flatnonzero(self._dirty)
        if len(d) == 0:
            return
        self._dirty[d] = False
        self._cache = None
        run = self.s_status[d] == RUNNING
        model = self.s_model[d]
        factor = np.ones(run.shape)
        part = self.s_partner[d]
        has = run & (part >= 0)
        if has.any():
            pm = np.take_along_axis(model, np.maximum(part, 0), axis=1)
            pr = np.take_along_axis(self.s_status[d], np.maximum(part, 0), axis=1) == RUNNING
            factor = np.where(has & pr, self.sharing[model, pm], factor)
        if self.network:
            multi = run & (self.s_nodes[d] > 1) & ~self.s_guest[d]
            phi = np.where(multi, self.comm[model], 0.0)
            on = self.s_place[d] > 0
            load = np.einsum("es,esn->en", phi, on)
            unshifted = np.einsum("es,esn->en", (multi & ~self.s_shift[d] & (phi > 0)).astype(np.float64), on)
            slow = np.where(unshifted[:, None, :] == 0, np.maximum(1.0, load[:, None, :]),
                            1.0 + load[:, None, :] - phi[:, :, None])
            slow = np.where(on & multi[:, :, None], slow, 1.0).max(axis=2, initial=1.0)
            factor = factor / ((1.0 - phi) + phi * slow)
        self.s_rate[d] = np.where(run, self.s_base[d] * factor, self.s_rate[d])

    def _set_phase_end(self, e: np.ndarray, s: np.ndarray) -> None:
        k = self.s_kind[e, s]
        gp = k >= 0
        P = self.dynamic_phases
        ph = self.s_phase[e, s]
        dyn = (self.s_growth[e, s] != 1.0) & (ph < P - 1)
        end = np.where(dyn, (ph + 1) / P * self.s_work[e, s], _INF)
        if gp.any() and self.goodput is not None:
            b = self.goodput.bounds
            p = np.minimum(self.s_phase[e, s], b.shape[1] - 1)
            frac = b[np.maximum(k, 0), p]
            end = np.where(gp, np.where(frac >= 1.0 - 1e-12, _INF, frac * self.s_work[e, s]), end)
        self.s_phase_end[e, s] = end

    def _release(self, e: np.ndarray, s: np.ndarray) -> None:
        """Give back the GPUs, CPUs and memory of jobs leaving their GPUs (``e`` may repeat). GPUs
        shared by two jobs are freed when the last of the two leaves."""
        place = self.s_place[e, s]
        p = self.s_partner[e, s]
        has = p >= 0
        pr = np.maximum(p, 0)
        stay = np.zeros(len(e), dtype=bool)  # partners that keep running on the shared GPUs
        leaving_too = stay
        if has.any():
            leaving_too = has & np.isin(e * self.S + pr, e * self.S + s)
            stay = has & (self.s_status[e, pr] == RUNNING) & ~leaving_too
        if self.resources:
            # a job leaving a shared GPU hands its CPUs and memory to the job that stays
            give = stay
            back = ~give
            np.add.at(self.free_cpu, e[back], place[back] * self.s_cpu[e[back], s[back]][:, None])
            np.add.at(self.free_mem, e[back], place[back] * self.s_mem[e[back], s[back]][:, None])
            if give.any():
                self.s_cpu[e[give], pr[give]] += self.s_cpu[e[give], s[give]]
                self.s_mem[e[give], pr[give]] += self.s_mem[e[give], s[give]]
            self.s_cpu[e, s] = 0.0
            self.s_mem[e, s] = 0.0
        if has.any():
            keep_gpus = stay | (has & leaving_too & (s > pr))  # of a pair leaving together, one frees
            place = np.where(keep_gpus[:, None], 0, place)
            self.s_partner[e[has], pr[has]] = -1
            self.s_guest[e[has], pr[has]] = False
            self.s_partner[e, s] = -1
            self.s_guest[e, s] = False
            self._dirty[e[has]] = True
        if self.coupled:
            self._dirty[e] = True
        np.add.at(self.free, e, place)  # e repeats: accumulate
        if self.resources and stay.any():
            self._set_base(e[stay], pr[stay])

    def _top_up(self, envs: np.ndarray) -> None:
        """Running jobs holding fewer CPUs or less memory than they asked for (a GPU-proportional
        share by default) get what their nodes have free again, in workload order."""
        for name, ask_name, free, fair in (("s_cpu", "s_cpu_ask", self.free_cpu, self.fair_cpu),
                                           ("s_mem", "s_mem_ask", self.free_mem, self.fair_mem)):
            held = getattr(self, name)
            sub_run = (self.s_status[envs] == RUNNING) & (self.s_partner[envs] < 0)
            on = self.s_place[envs] > 0
            fair_s = np.where(on, fair[None, None, :], _INF).min(axis=2)
            ask = getattr(self, ask_name)[envs]
            target = np.where(np.isnan(ask), fair_s, ask)
            short = sub_run & (held[envs] < target - 1e-9) & (free[envs] > 1e-9).any(axis=1)[:, None]
            if not short.any():
                continue
            ii, ss = np.nonzero(short)
            ee = envs[ii]
            order = np.argsort(self.s_job[ee, ss], kind="stable")
            for k in order:
                e1, s1 = ee[k], ss[k]
                take = self.s_place[e1, s1].astype(np.float64)
                nodes = take > 0
                avail = (free[e1, nodes] / take[nodes]).min()
                add = min(max(avail, 0.0), target[ii[k], s1] - held[e1, s1])
                if add > 1e-9:
                    free[e1] -= add * take
                    held[e1, s1] += add
                    self._set_base(np.array([e1]), np.array([s1]))

    def _clear(self, e: np.ndarray, s: np.ndarray) -> None:
        for name in self._CLEAR_FIELDS:
            getattr(self, name)[e, s] = self._FILL[name]
        self.s_place[e, s] = 0

    def _admit(self, mask: np.ndarray) -> None:
        rows = np.arange(self.E)
        while True:
            idx = np.minimum(self.next_job, self.J - 1)
            arriving = mask & (self.next_job < self.n_jobs) & (self.j_submit[rows, idx] <= self.clock)
            if not arriving.any():
                return
            self._cache = None
            empty = self.s_status == EMPTY
            while not empty[arriving].any(axis=1).all():
                self._grow_slots()
                empty = self.s_status == EMPTY
            e = np.flatnonzero(arriving)
            s = empty[e].argmax(axis=1)
            j = self.next_job[e]
            self.s_job[e, s] = j
            self.s_status[e, s] = WAITING
            self.s_submit[e, s] = self.j_submit[e, j]
            self.s_work[e, s] = self.j_work[e, j]
            self.s_inv_work[e, s] = 1.0 / self.j_work[e, j]
            self.s_gpus[e, s] = self.j_gpus[e, j]
            self.s_model[e, s] = self.j_model[e, j]
            self.s_min[e, s] = self.j_min[e, j]
            self.s_max[e, s] = self.j_max[e, j]
            self.s_kind[e, s] = self.j_kind[e, j]
            self.s_growth[e, s] = self.j_growth[e, j]
            self.s_phase[e, s] = 0
            self.s_unit[e, s] = np.where(self.j_kind[e, j] >= 0,
                                         self.j_work[e, j] / self._kind_total(self.j_kind[e, j]), 1.0)
            self._set_phase_end(e, s)
            rc = self.j_restart[e, j]
            self.s_restart_cost[e, s] = np.where(np.isnan(rc), self.restart_overhead, rc)
            self.j_cont_submit[e, j] = self.contention[e]
            self.next_job[e] += 1
            self.n_active[e] += 1

    def _kind_total(self, kind: np.ndarray) -> np.ndarray:
        if self.goodput is None:
            return np.ones(len(kind))
        return self.goodput.total[np.maximum(kind, 0)]

    # ------------------------------------------------------------------ decisions
    def start(
        self,
        e: np.ndarray,
        s: np.ndarray,
        t: np.ndarray,
        n: np.ndarray,
        take: np.ndarray | None = None,
        in_place: np.ndarray | None = None,
        restart_until: np.ndarray | None = None,
        share: np.ndarray | None = None,
    ) -> None:
        """Start jobs (one per env in ``e``) in slots ``s`` on ``n`` GPUs of type ``t``.

        ``share`` (slot per row, -1 for none) starts a job on the GPUs of a running job (space
        sharing): it takes that job's placement without using free GPUs.

        ``take`` (``(len(e), N)``) is an explicit placement; otherwise the placer decides. The
        caller has checked that the GPUs are free. A job that ran before pays the restart
        overhead, unless ``in_place`` marks it as resuming on exactly the placement it held a
        moment ago (then ``restart_until`` restores its unfinished restart, if any). A first
        start records the job's first start time.
        """
        if len(e) == 0:
            return
        if (self.s_status[e, s] != WAITING).any():
            i = int(np.flatnonzero(self.s_status[e, s] != WAITING)[0])
            what = "already running (placed twice)" if self.s_status[e[i], s[i]] == RUNNING else "finished or absent"
            raise AllocationError(f"env {e[i]}, slot {s[i]}: cannot start a job that is {what}")
        self._cache = None
        shared = np.zeros(len(e), dtype=bool) if share is None else np.asarray(share) >= 0
        if take is None and not shared.any():
            take = self.placer(self.free[e], self.node_type, t, n)
        else:
            take = np.zeros((len(e), self.N), dtype=np.int64) if take is None else np.array(take, dtype=np.int64)
            need = ~shared & (take.sum(axis=1) == 0)
            if need.any():
                take[need] = self.placer(self.free[e[need]], self.node_type, t[need], n[need])
        if shared.any():
            take = np.array(take, copy=True)
            host = np.asarray(share)[shared]
            take[shared] = self.s_place[e[shared], host]
            self.s_partner[e[shared], host] = s[shared]
            self.s_partner[e[shared], s[shared]] = host
            self.s_guest[e[shared], s[shared]] = True
            self.coupled = True
            self._dirty[e[shared]] = True
        self.free[e] -= np.where(shared[:, None], 0, take)
        self.s_place[e, s] = take
        nodes = (take > 0).sum(axis=1)
        self.s_n[e, s] = n
        self.s_t[e, s] = t
        self.s_nodes[e, s] = nodes
        if self.resources:
            own = ~shared
            if own.any():
                self._grant(e[own], s[own])
            if shared.any():  # a guest shares its host's CPUs and memory, half each
                es, ss, hs = e[shared], s[shared], np.asarray(share)[shared]
                for name in ("s_cpu", "s_mem"):
                    arr = getattr(self, name)
                    arr[es, hs] /= 2.0
                    arr[es, ss] = arr[es, hs]
                self._set_base(es, hs)
        self.s_status[e, s] = RUNNING
        self._set_base(e, s)
        j = self.s_job[e, s]
        again = self.s_started[e, s]
        until = np.where(again, self.clock[e] + self.s_restart_cost[e, s], -_INF)
        if in_place is not None:
            again = again & ~in_place
            until = np.where(in_place, restart_until, until)
        self.s_restart_until[e, s] = until
        self.j_restarts[e[again], j[again]] += 1
        first = ~self.s_started[e, s]  # not ~again: a job resumed in place has started before
        self.j_start[e[first], j[first]] = self.clock[e[first]]
        self.s_started[e, s] = True
        self.j_gpus_used[e, j] = n

    def stop(self, e: np.ndarray, s: np.ndarray, *, preempted: bool = True) -> None:
        """Take running jobs off their GPUs (they wait again, progress kept: a checkpoint)."""
        if len(e) == 0:
            return
        self._cache = None
        self._release(e, s)
        self.s_place[e, s] = 0
        self.s_n[e, s] = 0
        self.s_rate[e, s] = 0.0
        self.s_nodes[e, s] = 0
        self.s_status[e, s] = WAITING
        self.s_restart_until[e, s] = -_INF
        if self.resources:
            self._top_up(np.unique(e))
        if preempted:
            self.j_preempt[e, self.s_job[e, s]] += 1

    def check_allocation(self, n: np.ndarray, t: np.ndarray, envs: np.ndarray, partner: np.ndarray | None = None) -> None:
        """Raise :class:`AllocationError` unless ``(n, t)`` (each ``(E, S)``, with GPU sharing
        ``partner``) is feasible."""
        n = np.asarray(n)
        t = np.asarray(t)
        if n.shape != (self.E, self.S) or t.shape != (self.E, self.S):
            raise AllocationError(f"allocation must have shape (num_envs, slots) = {(self.E, self.S)}, got {n.shape} and {t.shape}")
        m = envs[:, None]
        if (m & (n < 0)).any():
            e, s = np.argwhere(m & (n < 0))[0]
            raise AllocationError(f"env {e}, slot {s}: negative GPU count {n[e, s]}")
        bad = m & (n > 0) & (self.s_status == EMPTY)
        if bad.any():
            e, s = np.argwhere(bad)[0]
            raise AllocationError(f"env {e}, slot {s}: allocating to a finished or absent job")
        bad = m & (n > 0) & ((t < 0) | (t >= self.T))
        if bad.any():
            e, s = np.argwhere(bad)[0]
            raise AllocationError(f"env {e}, slot {s}: unknown GPU type index {t[e, s]} (cluster has {self.T})")
        bad = m & (n > 0) & ((n < self.s_min) | (n > self.s_max))
        if bad.any():
            e, s = np.argwhere(bad)[0]
            raise AllocationError(
                f"env {e}, job {self.s_job[e, s]}: {n[e, s]} GPUs outside its bounds "
                f"[{self.s_min[e, s]}, {self.s_max[e, s]}] (a rigid gang gets exactly its request)")
        guest = np.zeros(n.shape, dtype=bool)
        if partner is not None:
            guest = m & (n > 0) & (partner >= 0)
            if guest.any():
                e, s = np.nonzero(guest)
                h = partner[e, s]
                bad = (h >= self.S) | (h == s)
                hs = np.clip(h, 0, self.S - 1)
                bad |= (n[e, hs] != n[e, s]) | (t[e, hs] != t[e, s]) | (partner[e, hs] >= 0) | (self.s_status[e, hs] == EMPTY)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise AllocationError(
                        f"env {e[i]}, slot {s[i]}: cannot share the GPUs of slot {h[i]} (it must hold a job on the same "
                        "GPU count and type that shares with no one else)")
                key = e * self.S + hs
                if len(np.unique(key)) < len(key):
                    raise AllocationError("a job's GPUs can be shared with at most one other job")
        per_type = np.zeros((self.E, self.T), dtype=np.int64)
        for k in range(self.T):
            per_type[:, k] = np.where((t == k) & ~guest, n, 0).sum(axis=1)
        over = envs[:, None] & (per_type > self.capacity[None, :])
        if over.any():
            e, k = np.argwhere(over)[0]
            raise AllocationError(f"env {e}: {per_type[e, k]} GPUs of type {self.gpu_types[k]!r} allocated, cluster has {self.capacity[k]}")

    def apply(self, n: np.ndarray, t: np.ndarray, envs: np.ndarray | None = None, *, check: bool = True,
              adaptive: np.ndarray | None = None, partner: np.ndarray | None = None,
              place: np.ndarray | None = None, cpus: np.ndarray | None = None, mem: np.ndarray | None = None,
              shift: np.ndarray | None = None) -> None:
        """Make ``(n, t)`` the allocation of the envs in the boolean mask ``envs``.

        Jobs whose count and type are unchanged keep their placement and pay nothing; running
        jobs that get 0 are preempted; changed jobs are moved (and pay the restart overhead);
        new jobs are placed in workload order by the placer. ``check=False`` skips validation
        (for allocations the core computed itself, such as :meth:`greedy`'s).

        Optional parts (each ``(E, S)``; ``None`` leaves it as it is):

        - ``adaptive`` (bool): goodput jobs train at their goodput-optimal batch size rather than
          their own; switching costs no restart;
        - ``partner`` (slot, -1 none): the job shares the GPUs of the job in that slot, which
          must run on the same count and type and host no one else (space sharing); a guest
          leaves when its host is moved;
        - ``place`` (``(E, S, N)``): explicit GPUs per node for jobs that (re)start (rows of
          zeros: the placer decides); a different placement for a running job moves it;
        - ``cpus``, ``mem`` (per GPU, NaN: GPU-proportional): asked CPUs and memory; a running
          job whose ask changes is re-granted in place (the core grants what its nodes have);
        - ``shift`` (bool): the job's communication is time-shifted to interleave with others.
        """
        envs = np.ones(self.E, dtype=bool) if envs is None else np.asarray(envs, dtype=bool)
        n = np.where(envs[:, None], np.asarray(n, dtype=np.int64), self.s_n)
        t = np.where(envs[:, None] & (n > 0), np.asarray(t, dtype=np.int64), self.s_t)
        run = self.s_status == RUNNING
        live = envs[:, None] & (self.s_status != EMPTY)
        if adaptive is not None:
            adaptive = np.where(live, np.asarray(adaptive, dtype=bool), self.s_adapt)
            flip = adaptive != self.s_adapt
            if flip.any():
                self._cache = None
                self.s_adapt = adaptive
                e, s = np.nonzero(flip & run)
                self._set_base(e, s)
        if shift is not None:
            shift = np.where(live, np.asarray(shift, dtype=bool), self.s_shift)
            if (shift != self.s_shift).any():
                self._cache = None
                self.s_shift = shift
                if self.coupled:
                    self._dirty |= envs
        regrant = np.zeros_like(run)
        for ask, name in ((cpus, "s_cpu_ask"), (mem, "s_mem_ask")):
            if ask is None:
                continue
            old = getattr(self, name)
            new = np.where(live, np.asarray(ask, dtype=np.float64), old)
            changed = ~((new == old) | (np.isnan(new) & np.isnan(old)))
            if changed.any():
                setattr(self, name, new)
                regrant |= changed & run
        cur_p = np.where(self.s_guest, self.s_partner, -1)
        p = cur_p if partner is None else np.where(live & (n > 0), np.asarray(partner, dtype=np.int64), -1)
        keep = run & (n == self.s_n) & (t == self.s_t) & (p == cur_p)
        explicit = np.zeros_like(run)
        if place is not None:
            place = np.asarray(place, dtype=np.int64)
            if place.shape != (self.E, self.S, self.N):
                raise AllocationError(f"place must have shape (num_envs, slots, nodes) = {(self.E, self.S, self.N)}, got {place.shape}")
            explicit = envs[:, None] & (n > 0) & (p < 0) & (place.sum(axis=2) > 0)
            keep &= ~(explicit & (place != self.s_place).any(axis=2))
        rows = np.arange(self.E)[:, None]
        keep &= (p < 0) | keep[rows, np.maximum(p, 0)]  # a guest stays only with its host
        regrant &= keep & ~self.s_guest & (self.s_partner < 0)
        if ((n == 0) & ~run | keep).all():
            self._regrant(regrant)
            return  # nothing else changes
        if check:
            self.check_allocation(n, t, envs, partner=p)
            if place is not None:
                self._check_place(n, t, place, explicit & ~keep, run & ~keep)
        change = run & ~keep
        e, s = np.nonzero(change)
        self.stop(e, s, preempted=False)
        lost = n[e, s] == 0
        self.j_preempt[e[lost], self.s_job[e[lost], s[lost]]] += 1
        self._regrant(regrant)
        todo = (n > 0) & ~keep
        if place is not None:
            self._place_in_order(todo & explicit, n, t, place=place)
        self._place_in_order(todo & ~explicit & (p < 0), n, t)
        self._place_in_order(todo & (p >= 0), n, t, share=p)

    def _regrant(self, mask: np.ndarray) -> None:
        """Running jobs in ``mask`` whose CPU or memory ask changed are granted again in place, one
        per env at a time (each sees what the previous ones left): first those whose asks shrink,
        then the others, each group in workload order."""
        if not self.resources or not mask.any():
            return
        self._cache = None
        fc, fm = self._fair_share(self.s_place.reshape(-1, self.N))
        ask_c = np.where(np.isnan(self.s_cpu_ask), fc.reshape(self.E, self.S), self.s_cpu_ask)
        ask_m = np.where(np.isnan(self.s_mem_ask), fm.reshape(self.E, self.S), self.s_mem_ask)
        shrink = mask & (ask_c <= self.s_cpu + 1e-9) & (ask_m <= self.s_mem + 1e-9)
        for part in (shrink, mask & ~shrink):  # what shrinks first frees room for what grows
            for e, s in self._ranks(part):
                place = self.s_place[e, s]
                self.free_cpu[e] += place * self.s_cpu[e, s][:, None]
                self.free_mem[e] += place * self.s_mem[e, s][:, None]
                self._grant(e, s)
                self._set_base(e, s)

    def _check_place(self, n: np.ndarray, t: np.ndarray, place: np.ndarray, todo: np.ndarray, leaving: np.ndarray) -> None:
        e, s = np.nonzero(todo)
        if len(e) == 0:
            return
        rows = place[e, s]
        bad = rows.sum(axis=1) != n[e, s]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise AllocationError(f"env {e[i]}, slot {s[i]}: placement holds {rows[i].sum()} GPUs, allocation says {n[e[i], s[i]]}")
        wrong = ((rows > 0) & (self.node_type[None, :] != t[e, s][:, None])).any(axis=1) | (rows < 0).any(axis=1)
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise AllocationError(f"env {e[i]}, slot {s[i]}: placement uses nodes that are not of its GPU type {self.gpu_types[t[e[i], s[i]]]!r}")
        avail = self.free.copy()
        le, ls = np.nonzero(leaving & ~self.s_guest)
        np.add.at(avail, le, self.s_place[le, ls])
        need = np.zeros_like(avail)
        np.add.at(need, e, rows)
        over = need > avail
        if over.any():
            ee, node = np.argwhere(over)[0]
            raise AllocationError(f"env {ee}: placements take {need[ee, node]} GPUs of node {node}, which has {avail[ee, node]} free")

    def _place_in_order(self, todo: np.ndarray, n: np.ndarray, t: np.ndarray, *, place: np.ndarray | None = None,
                        share: np.ndarray | None = None) -> None:
        for e, s in self._ranks(todo):
            self.start(e, s, t[e, s], n[e, s], take=None if place is None else place[e, s],
                       share=None if share is None else share[e, s])

    def _ranks(self, mask: np.ndarray):
        """The slots in ``mask`` (``(E, S)``) in workload order, one per env at a time: yields
        ``(e, s)`` for the first such job of every env, then the second, ..."""
        order = np.argsort(np.where(mask, self.s_job, _NO_JOB), axis=1, kind="stable")
        counts = mask.sum(axis=1)
        for r in range(int(counts.max(initial=0))):
            e = np.flatnonzero(counts > r)
            yield e, order[e, r]

    def greedy(
        self,
        scores: np.ndarray,
        *,
        backfill: bool = True,
        preempt: bool = False,
        envs: np.ndarray | None = None,
        start_now: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The shared gang allocator: serve jobs in decreasing ``scores`` (``(E, S)``; ``-inf``
        or NaN = not a candidate), each on its requested GPU count.

        Without ``preempt``, running jobs keep their GPUs and waiting jobs fill the free ones;
        with it, running jobs compete too (a running job that is served keeps its GPU type when
        it can, so :meth:`apply` leaves it in place). ``backfill=False`` stops an env at the
        first job that does not fit (strict head-of-line, as YARN-CS FIFO). A job goes to its
        current type if running, else to the fastest type for its model with room. Ties break
        on workload order. Returns the allocation ``(n, t)`` for :meth:`apply`; with
        ``start_now`` (only without ``preempt``) each served job is also started at once, in
        score order, so nothing is left for :meth:`apply` to do.
        """
        if start_now and preempt:
            raise ValueError("start_now is for non-preemptive serving")
        E, _S = self.E, self.S
        envs = np.ones(E, dtype=bool) if envs is None else np.asarray(envs, dtype=bool)
        scores = np.where(np.isnan(scores), -_INF, scores)
        run = self.s_status == RUNNING
        if preempt:
            cand = (self.s_status != EMPTY) & envs[:, None]
            cap = np.tile(self.capacity, (E, 1))
            n_new = np.where(envs[:, None], 0, self.s_n)
        else:
            cand = (self.s_status == WAITING) & envs[:, None]
            cap = self.free_per_type()
            n_new = self.s_n.copy()
        t_new = self.s_t.copy()
        cand &= scores > -_INF
        if not cand.any():
            return n_new, t_new
        req = self.s_gpus
        job = np.where(cand, self.s_job, _NO_JOB)
        rows = np.arange(E)
        live = envs.copy()
        while live.any():
            room = cap[:, None, :] >= req[:, :, None]  # (E, S, T)
            fits = cand & room.any(axis=2)
            pool = fits if backfill else cand
            best = np.where(pool, scores, -_INF).max(axis=1)
            tie = pool & (scores == best[:, None])
            s = np.where(tie, job, _NO_JOB).argmin(axis=1)
            ok = live & tie.any(axis=1) & fits[rows, s]
            if not backfill:
                live &= ok
            else:
                live &= tie.any(axis=1)
            if not ok.any():
                break
            e = np.flatnonzero(ok)
            s = s[e]
            r = req[e, s]
            room_es = room[e, s]
            cur = self.s_t[e, s]
            keep_type = run[e, s] & room_es[np.arange(len(e)), cur]
            fastest = np.where(room_es, self.speed[self.s_model[e, s]], -_INF).argmax(axis=1)
            k = np.where(keep_type, cur, fastest)
            cap[e, k] -= r
            n_new[e, s] = r
            t_new[e, s] = k
            if start_now:
                self.start(e, s, k, r)
            cand[e, s] = False
            job[e, s] = _NO_JOB
        return n_new, t_new

    def serve(self, scores: np.ndarray, *, backfill: bool = True, preempt: np.ndarray | bool = False,
              envs: np.ndarray | None = None) -> None:
        """Serve jobs by priority (:meth:`greedy`) and carry it out: envs in the ``preempt`` mask
        re-decide their whole running set (:meth:`apply` keeps unchanged placements); the
        others start waiting jobs on free GPUs."""
        mask = np.ones(self.E, dtype=bool) if envs is None else np.asarray(envs, dtype=bool)
        preempt = np.broadcast_to(np.asarray(preempt, dtype=bool), (self.E,)) & mask
        if preempt.any():
            n, t = self.greedy(scores, backfill=backfill, preempt=True, envs=preempt)
            self.apply(n, t, preempt, check=False)
        rest = mask & ~preempt
        if rest.any():
            self.greedy(scores, backfill=backfill, envs=rest, start_now=True)
