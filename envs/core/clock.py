"""The event clock: each env jumps to its next event (an arrival, a completion, the end of a
phase or a restart, a round boundary), accruing progress exactly in between."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.core import kernels


@dataclass(frozen=True)
class StepStats:
    """What one :meth:`ClusterCore.advance` did, per env (all arrays of shape ``(E,)``)."""

    dt: np.ndarray  # seconds elapsed
    jobs_time: np.ndarray  # integral of the number of jobs in the system (job-seconds)
    slowdown_time: np.ndarray  # integral of sum over jobs in system of 1 / work
    gpu_time: np.ndarray  # integral of allocated GPUs (GPU-seconds)
    completed: np.ndarray  # jobs finished at the event
    round_hit: np.ndarray  # the event is a round boundary


class ClockMixin:
    """:meth:`next_event` and :meth:`advance`."""

    def finish_estimate(self) -> np.ndarray:
        """``(E, S)`` finish time of each running job if nothing changes (inf otherwise); for a
        goodput job, the end of its current phase if that comes first (its rate then changes)."""
        self.next_event()
        return self._cache[1].copy()

    def next_event(self) -> np.ndarray:
        """``(E,)`` time of each env's next event (inf when the env has nothing left).

        Cached until the state next changes (every mutating method drops the cache)."""
        if self.coupled:
            self._refresh()
        if self._cache is not None:
            return self._cache[0]
        fin = np.empty(self.s_status.shape)
        t_next = np.empty(self.E)
        kernels.next_events(self.clock, self.s_status, self.s_restart_until, self.s_work, self.s_phase_end,
                            self.s_done, self.s_rate, self.next_job, self.n_jobs, self.j_submit, self.n_active,
                            self._round_length, fin, t_next)
        self._cache = (t_next, fin)
        return t_next

    @property
    def _round_length(self) -> float:
        return -1.0 if self.round_length is None else float(self.round_length)

    def advance(self, envs: np.ndarray | None = None) -> StepStats:
        """Move the clock of each env in the boolean mask ``envs`` (all if ``None``) to its next
        event, accruing progress exactly; then retire finished jobs and admit arrivals."""
        E = self.E
        mask = np.ones(E, dtype=bool) if envs is None else np.asarray(envs, dtype=bool)
        t_next = self.next_event()
        fin = self._cache[1]
        self._cache = None
        # the integral of the slowdown rate, taken before the clock moves (NumPy's summation order)
        inv_work = self.s_inv_work.sum(axis=1)
        clock, dt, gpu_time, jobs_time = np.empty(E), np.empty(E), np.empty(E), np.empty(E)
        round_hit = np.empty(E, dtype=bool)
        reached = np.empty(self.s_status.shape, dtype=bool)
        finished = np.empty(self.s_status.shape, dtype=bool)
        n_phase, n_done = kernels.accrue(
            mask, t_next, fin, self.clock, self.s_status, self.s_restart_until, self.s_rate, self.s_done,
            self.s_attained, self.s_n, self.s_phase_end, self.s_work, self.n_active, self._round_length,
            clock, dt, gpu_time, jobs_time, round_hit, reached, finished)
        slowdown_time = inv_work * dt
        self.clock = clock
        self.gpu_seconds += gpu_time
        self.contention += jobs_time
        if n_phase:
            self._next_phase(*np.nonzero(reached & ~finished))
        completed = finished.sum(axis=1) if n_done else np.zeros(E, dtype=np.int64)
        if n_done:
            self._complete(*np.nonzero(finished))
        self._admit(mask)
        return StepStats(dt, jobs_time, slowdown_time, gpu_time, completed, round_hit)

    def _complete(self, e: np.ndarray, s: np.ndarray) -> None:
        """Record the results of the jobs finishing in slots ``(e, s)`` and free their slots."""
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
