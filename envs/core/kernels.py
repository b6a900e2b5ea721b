"""Compiled kernels of the event clock: the finish estimate, the next event and the exact
accrual of progress between events, as loops over envs and slots.

These are the core's only implementation of those transitions (:mod:`envs.core.clock` calls
them). One compiled call replaces a few dozen NumPy calls on small arrays, which is what a step
costs when most envs hold a handful of jobs. The arithmetic is written operation for operation as
the array formulas in the docstrings, in IEEE double precision without fast-math, so the results
are bit-identical to evaluating those formulas with NumPy (``tests/test_kernels.py`` checks it on
random states).

Compiled with Numba on first use and cached on disk (``cache=True``): the first import in a fresh
environment compiles them once (a few seconds); later processes load the cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs.core.state import RUNNING

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_JIT)
def _nan_min(a: float, b: float) -> float:
    """``np.minimum(a, b)``: NaN if either is NaN."""
    if a != a or b != b:
        return np.nan
    return a if a < b else b


@njit(**_JIT)
def next_events(clock, status, restart_until, work, phase_end, done, rate, next_job, n_jobs, submit,
                n_active, round_length, fin, t_next):
    """Fill ``fin`` ``(E, S)`` with each running job's finish time if nothing changes (the end of
    its phase when that comes first; inf when not running) and ``t_next`` ``(E,)`` with each
    env's next event: the first finish, arrival or end of a restart, or the next round boundary
    (``round_length`` > 0, only while jobs are active); inf when nothing is left.

    ``fin = where(running, max(clock, restart_until) + (min(work, phase_end) - done) / rate, inf)``
    """
    E, S = status.shape
    J = submit.shape[1]
    for e in range(E):
        c = clock[e]
        t_fin = np.inf
        t_rst = np.inf
        for s in range(S):
            if status[e, s] == RUNNING:
                ru = restart_until[e, s]
                resume = c if c >= ru else ru
                w, pe = work[e, s], phase_end[e, s]
                target = w if w <= pe else pe
                f = resume + (target - done[e, s]) / rate[e, s]
                if ru > c and ru < t_rst:
                    t_rst = ru
            else:
                f = np.inf
            fin[e, s] = f
            t_fin = _nan_min(t_fin, f)
        t_arr = np.inf
        if next_job[e] < n_jobs[e]:
            t_arr = submit[e, min(next_job[e], J - 1)]
        t = _nan_min(_nan_min(t_fin, t_arr), t_rst)
        if round_length > 0.0 and n_active[e] > 0:
            t = _nan_min(t, (np.floor(c / round_length) + 1.0) * round_length)
        t_next[e] = t


@njit(**_JIT)
def accrue(mask, t_next, fin, clock, status, restart_until, rate, done, attained, n, phase_end, work,
           n_active, round_length, new_clock, dt, gpu_time, jobs_time, round_hit, reached, finished):
    """Move each env in ``mask`` whose next event ``t_next`` is finite to that event; the others
    stay (``dt = 0``). Updates ``done`` (``+= rate * max(t_next - max(clock, restart_until), 0)``),
    ``attained`` (``+= n * dt``) in place; fills ``new_clock``, ``dt``, ``gpu_time`` (``sum n *
    dt``), ``jobs_time`` (``n_active * dt``), ``round_hit`` and, per slot, ``reached`` (running
    and ``fin - t_next <= 1e-9 * max(1, |t_next|)``) and ``finished`` (reached with no phase
    left). Returns how many slots reached the end of a phase and how many finished."""
    E, S = status.shape
    n_phase = 0
    n_done = 0
    for e in range(E):
        c = clock[e]
        t = t_next[e]
        m = mask[e] and np.isfinite(t)
        if not m:
            t = c
        d = t - c
        dt[e] = d
        g = 0
        for s in range(S):
            ru = restart_until[e, s]
            resume = c if c >= ru else ru
            x = t - resume
            done[e, s] += rate[e, s] * (x if x > 0.0 else 0.0)
            attained[e, s] += n[e, s] * d
            g += n[e, s]
        gpu_time[e] = g * d
        jobs_time[e] = n_active[e] * d
        hit = False
        if round_length > 0.0 and m and n_active[e] > 0:
            hit = t >= (np.floor(c / round_length) + 1.0) * round_length
        round_hit[e] = hit
        new_clock[e] = t
        tol = 1e-9 * max(1.0, abs(t))
        for s in range(S):
            r = m and status[e, s] == RUNNING and fin[e, s] - t <= tol
            f = r and phase_end[e, s] >= work[e, s]
            reached[e, s] = r
            finished[e, s] = f
            if f:
                n_done += 1
            elif r:
                n_phase += 1
    return n_phase, n_done
