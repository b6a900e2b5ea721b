"""The core's state: the job and slot tables, declared once in :data:`JOB_FIELDS` and
:data:`SLOT_FIELDS`, and the code that allocates, grows, loads, admits and clears them.

Every array has a leading env axis ``E``. The **job table** ``(E, J)`` holds each env's workload
(loaded from a :class:`~envs.workload.Workload`) and the per-job results; the **slot table**
``(E, S)`` holds only the active jobs (arrived, not finished): an arrival takes a free slot, a
completion frees it, and ``S`` doubles when an env needs more. Fields copied from the job table
when a job arrives name their job field; fields marked *kept* survive the job's completion
(they are overwritten when the next job arrives or starts); ``s_place`` has a third axis, the
nodes ``N``.

Units: s = seconds of simulated time, ref-s = reference-seconds of work (seconds on the
reference GPU type at the requested count, DESIGN section 3), ref-s/s = progress rate.
The tables (rendered from the declarations below):
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.metrics import SLOWDOWN_MIN_DURATION
from envs.workload import Workload

EMPTY, WAITING, RUNNING = 0, 1, 2
"""Slot status: no job, a job waiting for GPUs, a job holding GPUs."""
INF = np.inf
NO_JOB = np.iinfo(np.int64).max  # sorts after every workload position


@dataclass(frozen=True)
class Field:
    """One column of a state table."""

    name: str
    dtype: type
    fill: object
    unit: str
    meaning: str
    source: str | None = None  # job table: Workload attribute loaded; slot table: job field copied at arrival
    kept: bool = False  # slot table: survives the job's completion (overwritten on the next arrival or start)


_f8, _i8 = np.float64, np.int64

JOB_FIELDS: tuple[Field, ...] = (
    # workload (loaded from the Workload attribute named in ``source``)
    Field("j_submit", _f8, INF, "s", "submit time (inf: padding past the env's last job)", "submit"),
    Field("j_work", _f8, 1.0, "ref-s", "work to do", "work"),
    Field("j_gpus", _i8, 1, "GPUs", "requested GPU count", "gpus"),
    Field("j_model", _i8, 0, "index", "model, an index into traces.models.MODELS", "model"),
    Field("j_min", _i8, 1, "GPUs", "fewest GPUs it may run on (== j_gpus for a rigid job)", "min_gpus"),
    Field("j_max", _i8, 1, "GPUs", "most GPUs it may run on (== j_gpus for a rigid job)", "max_gpus"),
    Field("j_kind", _i8, -1, "index", "goodput kind in the core's GoodputTable (-1: plain job)", "kind"),
    Field("j_restart", _f8, np.nan, "s", "own restart overhead (NaN: SimConfig.restart_overhead)", "restart"),
    Field("j_growth", _f8, 1.0, "factor", "speed-up per dynamic-adaptation phase (1: static)", "growth"),
    # results
    Field("j_start", _f8, np.nan, "s", "first start (NaN: never started)"),
    Field("j_finish", _f8, np.nan, "s", "completion (NaN: not finished)"),
    Field("j_preempt", _i8, 0, "count", "times taken off its GPUs by a decision"),
    Field("j_restarts", _i8, 0, "count", "restarts paid (resumed or moved after running)"),
    Field("j_gpu_sec", _f8, 0.0, "GPU-s", "GPU time held, set at completion"),
    Field("j_cont_submit", _f8, 0.0, "job-s", "the env's contention integral at arrival"),
    Field("j_cont_finish", _f8, 0.0, "job-s", "the env's contention integral at completion"),
    Field("j_gpus_used", _i8, 0, "GPUs", "GPU count at the last (re)start"),
)

SLOT_FIELDS: tuple[Field, ...] = (
    Field("s_job", _i8, -1, "index", "the job's position in its env's workload (-1: empty)"),
    Field("s_status", np.int8, EMPTY, "enum", "EMPTY, WAITING or RUNNING"),
    Field("s_submit", _f8, 0.0, "s", "submit time", "j_submit", kept=True),
    Field("s_work", _f8, 1.0, "ref-s", "work to do", "j_work", kept=True),
    Field("s_gpus", _i8, 1, "GPUs", "requested GPU count", "j_gpus", kept=True),
    Field("s_model", _i8, 0, "index", "model (traces.models.MODELS)", "j_model", kept=True),
    Field("s_min", _i8, 1, "GPUs", "fewest GPUs allowed", "j_min", kept=True),
    Field("s_max", _i8, 1, "GPUs", "most GPUs allowed", "j_max", kept=True),
    Field("s_n", _i8, 0, "GPUs", "GPUs held now (0: waiting)"),
    Field("s_t", _i8, 0, "index", "GPU type held (index into gpu_types; stale while waiting)", kept=True),
    Field("s_rate", _f8, 0.0, "ref-s/s", "progress rate now: s_base times the coupling factor"),
    Field("s_done", _f8, 0.0, "ref-s", "work done"),
    Field("s_restart_until", _f8, -INF, "s", "no progress before this time (restart in progress)"),
    Field("s_attained", _f8, 0.0, "GPU-s", "GPU time held so far"),
    Field("s_nodes", _i8, 0, "count", "nodes its gang sits on"),
    Field("s_started", bool, False, "flag", "has run before (a new start pays the restart overhead)"),
    Field("s_inv_work", _f8, 0.0, "1/ref-s", "1 / max(s_work, SLOWDOWN_MIN_DURATION) (the slowdown reward's integrand)"),
    Field("s_kind", _i8, -1, "index", "goodput kind (-1: plain job)", "j_kind"),
    Field("s_phase", _i8, 0, "index", "goodput efficiency phase or dynamic-adaptation phase"),
    Field("s_phase_end", _f8, INF, "ref-s", "work at which the current phase ends (inf: last phase)"),
    Field("s_unit", _f8, 1.0, "factor", "goodput jobs: work per unit of the goodput table's time", kept=True),
    Field("s_adapt", bool, False, "flag", "trains at its goodput-optimal batch size (no restart to switch)"),
    Field("s_restart_cost", _f8, 0.0, "s", "restart overhead this job pays", kept=True),
    Field("s_growth", _f8, 1.0, "factor", "speed-up per dynamic-adaptation phase (1: static)", "j_growth"),
    Field("s_partner", _i8, -1, "slot", "the slot sharing its GPUs (-1: none)"),
    Field("s_guest", bool, False, "flag", "runs on the GPUs of its partner (the host)"),
    Field("s_shift", bool, False, "flag", "communication time-shifted to interleave (CASSINI)"),
    Field("s_cpu", _f8, 0.0, "CPUs/GPU", "CPUs held per GPU (resource model)"),
    Field("s_mem", _f8, 0.0, "GB/GPU", "memory held per GPU (resource model)"),
    Field("s_cpu_ask", _f8, np.nan, "CPUs/GPU", "CPUs asked per GPU (NaN: a GPU-proportional share)"),
    Field("s_mem_ask", _f8, np.nan, "GB/GPU", "memory asked per GPU (NaN: a GPU-proportional share)"),
    Field("s_base", _f8, 0.0, "ref-s/s", "own rate: speed model, goodput, adaptation, CPUs (no coupling)"),
)
PLACE_FIELD = Field("s_place", np.int32, 0, "GPUs", "GPUs held on each node, shape (E, S, N)")

WORKLOAD_KEYS: tuple[str, ...] = tuple(f.source for f in JOB_FIELDS if f.source is not None)
"""The workload arrays :meth:`ClusterCore.load` reads (Workload attributes and dict keys)."""
_FILL = {f.name: f.fill for f in SLOT_FIELDS}
_CLEARED = tuple(f.name for f in SLOT_FIELDS if not f.kept)
_COPIED = tuple((f.name, f.source) for f in SLOT_FIELDS if f.source is not None)


def table(fields: tuple[Field, ...]) -> str:
    """A field list as a reStructuredText table (what the module docstring shows)."""
    rows = [(f.name, np.dtype(f.dtype).name, repr(f.fill), f.unit,
             f.meaning + (f" [from {f.source}]" if f.source else "") + (" [kept]" if f.kept else ""))
            for f in fields]
    head = ("field", "dtype", "fill", "unit", "meaning")
    w = [max(len(r[i]) for r in [*rows, head]) for i in range(5)]
    rule = "  ".join("=" * x for x in w)
    fmt = "  ".join(f"{{:<{x}}}" for x in w)
    return "\n".join([rule, fmt.format(*head), rule, *(fmt.format(*r).rstrip() for r in rows), rule])


__doc__ += "\nJob table ``(E, J)``:\n\n" + table(JOB_FIELDS) + "\n\nSlot table ``(E, S)``:\n\n" + \
    table((*SLOT_FIELDS, PLACE_FIELD)) + "\n"


class TablesMixin:
    """Allocation, growth, loading and admission of the job and slot tables."""

    # ------------------------------------------------------------------ storage
    def _alloc_jobs(self, J: int) -> None:
        E = self.E
        self.J = J
        self.n_jobs = np.zeros(E, dtype=np.int64)
        self.next_job = np.zeros(E, dtype=np.int64)
        self.n_done = np.zeros(E, dtype=np.int64)
        for f in JOB_FIELDS:
            setattr(self, f.name, np.full((E, J), f.fill, dtype=f.dtype))

    def _alloc_slots(self, S: int) -> None:
        self.S = S
        for f in SLOT_FIELDS:
            setattr(self, f.name, np.full((self.E, S), f.fill, dtype=f.dtype))
        self.s_place = np.zeros((self.E, S, self.N), dtype=PLACE_FIELD.dtype)

    def ensure_slots(self, S: int) -> None:
        """Grow the slot table until it has at least ``S`` slots (state is kept)."""
        while self.S < S:
            self._grow_slots()

    def _grow_slots(self) -> None:
        old = self.S
        new = 2 * old
        for f in SLOT_FIELDS:
            arr = np.full((self.E, new), f.fill, dtype=f.dtype)
            arr[:, :old] = getattr(self, f.name)
            setattr(self, f.name, arr)
        place = np.zeros((self.E, new, self.N), dtype=PLACE_FIELD.dtype)
        place[:, :old] = self.s_place
        self.s_place = place
        self.S = new

    def _grow_jobs(self, J: int) -> None:
        old = {f.name: getattr(self, f.name) for f in JOB_FIELDS}
        keep = (self.n_jobs.copy(), self.next_job.copy(), self.n_done.copy())
        oldJ = self.J
        self._alloc_jobs(J)
        self.n_jobs, self.next_job, self.n_done = keep
        for name, arr in old.items():
            getattr(self, name)[:, :oldJ] = arr

    def record_preemptions(self, e: np.ndarray, s: np.ndarray) -> None:
        """Count a preemption for the jobs in slots ``(e, s)`` (jobs taken off their GPUs by a
        decision rather than by :meth:`stop` with ``preempted=True``)."""
        self.j_preempt[e, self.s_job[e, s]] += 1

    # ------------------------------------------------------------------ episodes
    def load(self, envs: np.ndarray, workloads: list[Workload] | dict[str, np.ndarray]) -> None:
        """Reset the envs ``envs`` (indices) to time 0 with new workloads.

        ``workloads`` is either one :class:`Workload` per env, or a dict of ``(len(envs), L)``
        arrays named by :data:`WORKLOAD_KEYS` (``submit, work, gpus, model, min_gpus, max_gpus``
        required, the others optional) plus ``num_jobs`` ``(len(envs),)`` (the fast path used by
        the Gymnasium envs to reset many envs at once). Workloads with goodput jobs bring their
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
            for f in JOB_FIELDS:
                if f.source is None:
                    continue
                a = np.full((len(envs), L), f.fill, dtype=f.dtype)
                for i, w in enumerate(workloads):
                    v = getattr(w, f.source)
                    if v is not None:
                        a[i, : w.num_jobs] = v
                arrays[f.source] = a
            tables = [w.goodput for w in workloads if w.goodput is not None]
            if len({t.kinds for t in tables}) > 1:
                raise ValueError("a core holds one goodput table; these workloads bring tables of different "
                                 "kinds (build them from one trace, as envs.workload.make_workload does)")
            for table in tables:
                self.set_goodput(table)
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
        for f in JOB_FIELDS:
            dst = getattr(self, f.name)
            if f.source is None:
                dst[e] = f.fill
                continue
            full = np.full((len(e), self.J), f.fill, dtype=dst.dtype)
            full[:, :L] = arrays.get(f.source, f.fill)
            full[pad] = f.fill
            dst[e] = full
        for f in SLOT_FIELDS:
            getattr(self, f.name)[e] = f.fill
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

    def _admit(self, mask: np.ndarray) -> None:
        """Give every job of the envs in ``mask`` whose submit time has come a free slot."""
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
            for slot_name, job_name in _COPIED:
                getattr(self, slot_name)[e, s] = getattr(self, job_name)[e, j]
            self.s_inv_work[e, s] = 1.0 / np.maximum(self.j_work[e, j], SLOWDOWN_MIN_DURATION)
            self.s_phase[e, s] = 0
            self.s_unit[e, s] = np.where(self.j_kind[e, j] >= 0,
                                         self.j_work[e, j] / self._kind_total(self.j_kind[e, j]), 1.0)
            self._set_phase_end(e, s)
            rc = self.j_restart[e, j]
            self.s_restart_cost[e, s] = np.where(np.isnan(rc), self.restart_overhead, rc)
            self.j_cont_submit[e, j] = self.contention[e]
            self.next_job[e] += 1
            self.n_active[e] += 1

    def _clear(self, e: np.ndarray, s: np.ndarray) -> None:
        """Forget the finished jobs in slots ``(e, s)`` (fields not marked kept go back to their fill)."""
        for name in _CLEARED:
            getattr(self, name)[e, s] = _FILL[name]
        self.s_place[e, s] = 0

    # ------------------------------------------------------------------ queries
    @property
    def done(self) -> np.ndarray:
        """``(E,)``: every job of the env's workload has finished."""
        return self.n_done >= self.n_jobs

    def free_per_type(self) -> np.ndarray:
        """``(E, T)`` free GPUs per GPU type."""
        return self.free @ self.type_onehot

    def _ranks(self, mask: np.ndarray):
        """The slots in ``mask`` (``(E, S)``) in workload order, one per env at a time: yields
        ``(e, s)`` for the first such job of every env, then the second, ..."""
        order = np.argsort(np.where(mask, self.s_job, NO_JOB), axis=1, kind="stable")
        counts = mask.sum(axis=1)
        for r in range(int(counts.max(initial=0))):
            e = np.flatnonzero(counts > r)
            yield e, order[e, r]
