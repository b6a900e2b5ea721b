"""The event clock: each env jumps to its next event (an arrival, a completion, the end of a
phase or a restart, a round boundary), accruing progress exactly in between."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.core.state import INF, RUNNING


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
        run = self.s_status == RUNNING
        resume = np.maximum(self.clock[:, None], self.s_restart_until)
        target = np.minimum(self.s_work, self.s_phase_end)
        with np.errstate(divide="ignore", invalid="ignore"):
            fin = resume + (target - self.s_done) / self.s_rate
        return np.where(run, fin, INF)

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
        t_arr = np.where(self.next_job < self.n_jobs, self.j_submit[np.arange(self.E), idx], INF)
        restarting = (self.s_status == RUNNING) & (self.s_restart_until > self.clock[:, None])
        t_rst = np.where(restarting, self.s_restart_until, INF).min(axis=1)
        t_next = np.minimum(np.minimum(t_fin, t_arr), t_rst)
        if self.round_length is not None:
            t_round = (np.floor(self.clock / self.round_length) + 1.0) * self.round_length
            t_next = np.minimum(t_next, np.where(self.n_active > 0, t_round, INF))
        self._cache = (t_next, fin)
        return t_next

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
