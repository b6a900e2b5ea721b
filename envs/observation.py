"""What the agent sees: the named features of the observation, and the compiled kernels that
build the observation and the action mask of every env in one pass.

The observation of an env is ``K`` visible slots of :data:`SLOT_FEATURES` each (slot-major),
then the :data:`CLUSTER_FEATURES` (``free_gpus`` is one entry per GPU type). Every feature lies
in [0, 1]; unbounded quantities are squashed as ``x / (x + scale)``.

The kernels are the only implementation of the visible-slot choice, the mask and the
observation (:class:`envs.engine.VectorEngine` calls them). They evaluate the formulas given in
the docstrings operation for operation in double precision before the final cast to float32,
so they agree bit for bit with the same formulas in NumPy (``tests/test_kernels.py``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs.core.state import EMPTY, RUNNING, WAITING
from traces import models

#: features of each visible slot, in observation order (the model one-hot closes the group)
SLOT_FEATURES = ("present", "waiting", "running", "repick", "fits", "gpus", "waited", "attained", "allocated",
                 "restarting", "remaining", *tuple(f"model_{m}" for m in models.MODELS))
#: cluster features after the slots, in observation order; ``free_gpus`` is one entry per GPU type
CLUSTER_FEATURES = ("free_gpus", "queued", "running", "since_last_event", "repick_open", "finished")
SLOT = {name: i for i, name in enumerate(SLOT_FEATURES)}
#: scale (seconds) of the squashed time features ``waited``, ``attained`` and ``remaining``
TIME_SCALE = 3600.0


def observation_size(K: int, T: int) -> int:
    """Length of the observation with ``K`` visible slots on a cluster of ``T`` GPU types."""
    return K * len(SLOT_FEATURES) + T + len(CLUSTER_FEATURES) - 1


def cluster_offsets(K: int, T: int) -> dict[str, int]:
    """Offset of each cluster feature in the observation (``free_gpus``: the first of ``T``)."""
    at = {"free_gpus": K * len(SLOT_FEATURES)}
    for i, name in enumerate(CLUSTER_FEATURES[1:]):
        at[name] = at["free_gpus"] + T + i
    return at


def gpu_feature_table(largest: int, total_gpus: int) -> np.ndarray:
    """``log2(1 + g) / log2(1 + total_gpus)`` for ``g = 0 .. largest`` (the ``gpus`` feature)."""
    return np.log2(1 + np.arange(largest + 1, dtype=np.int64)) / np.log2(1 + total_gpus)


_JIT = dict(cache=True, nogil=True, error_model="numpy")
_VIS_SHIFT = 20
_VIS_LOW = (1 << _VIS_SHIFT) - 1
_P_PRESENT, _P_WAITING, _P_RUNNING, _P_REPICK, _P_FITS = (SLOT[n] for n in ("present", "waiting", "running",
                                                                              "repick", "fits"))
_P_GPUS, _P_WAITED, _P_ATTAINED, _P_ALLOCATED = (SLOT[n] for n in ("gpus", "waited", "attained", "allocated"))
_P_RESTARTING, _P_REMAINING, _P_MODEL0 = SLOT["restarting"], SLOT["remaining"], SLOT[f"model_{models.MODELS[0]}"]


@njit(**_JIT)
def _squash(x: float, scale: float) -> float:
    """``np.maximum(x, 0) / (np.maximum(x, 0) + scale)``."""
    if x < 0.0:
        x = 0.0
    return x / (x + scale)


@njit(**_JIT)
def visible_and_mask(status, job, gpus, free_t, repick, t_next, K, vis, mask):
    """Fill ``vis`` ``(E, K)`` with the slots shown to the agent (waiting jobs, then running
    ones, each by workload position; then empty slots by index) and ``mask`` ``(E, K + 1)``:
    a visible waiting job that fits the free GPUs of some type may start; advancing is allowed
    when an event is pending (``t_next`` finite) or a re-pick phase is open, and always when
    nothing else is."""
    E, S = status.shape
    T = free_t.shape[1]
    key = np.empty(S, dtype=np.int64)
    for e in range(E):
        for s in range(S):
            st = status[e, s]
            rank = 0 if st == WAITING else (1 if st == RUNNING else 2)
            j = 0 if st == EMPTY else job[e, s]
            key[s] = (rank << 58) | (j << _VIS_SHIFT) | s
        key.sort()
        any_pick = False
        any_repick = False
        for s in range(S):
            if repick[e, s]:
                any_repick = True
        for k in range(K):
            s = key[k] & _VIS_LOW
            vis[e, k] = s
            ok = False
            if status[e, s] == WAITING:
                for t in range(T):
                    if free_t[e, t] >= gpus[e, s]:
                        ok = True
                        break
            mask[e, k] = ok
            any_pick = any_pick or ok
        mask[e, K] = np.isfinite(t_next[e]) or any_repick or not any_pick


@njit(**_JIT)
def observe(vis, mask, status, repick, gpus, submit, attained, n, restart_until, work, done, model, clock,
            free_t, capacity, last_dt, n_done, n_jobs, gpu_table, total_gpus, known, round_length, n_models,
            F, obs):
    """Fill ``obs`` ``(E, obs_dim)`` (float32) with every env's observation (see the module
    docstring and :data:`SLOT_FEATURES`): per visible slot ``present``, ``waiting``,
    ``running``, ``repick``, ``fits`` (the mask), ``gpus`` (``gpu_table[gpus]``), ``waited``
    (squashed ``clock - submit``), ``attained`` (squashed), ``allocated`` (``n / total_gpus``),
    ``restarting``, ``remaining`` (squashed ``work - done`` when ``known``, else 0) and the
    model one-hot (all zero for an empty slot); then free GPUs per type over capacity, the
    squashed counts of waiting and running jobs (scale ``K``), the squashed time since the last
    event (scale ``round_length``), whether a re-pick phase is open and the finished fraction.
    ``F`` is the number of features per slot."""
    E, K = vis.shape
    S = status.shape[1]
    T = free_t.shape[1]
    for e in range(E):
        row = obs[e]
        c = clock[e]
        for k in range(K):
            s = vis[e, k]
            st = status[e, s]
            present = st != EMPTY
            running = st == RUNNING
            p = 1.0 if present else 0.0
            b = k * F
            row[b + _P_PRESENT] = p
            row[b + _P_WAITING] = 1.0 if st == WAITING else 0.0
            row[b + _P_RUNNING] = 1.0 if running else 0.0
            row[b + _P_REPICK] = 1.0 if repick[e, s] else 0.0
            row[b + _P_FITS] = 1.0 if mask[e, k] else 0.0
            row[b + _P_GPUS] = gpu_table[gpus[e, s] if present else 0]
            row[b + _P_WAITED] = _squash((c - submit[e, s]) * p, 3600.0)
            row[b + _P_ATTAINED] = _squash(attained[e, s], 3600.0)
            row[b + _P_ALLOCATED] = n[e, s] / total_gpus
            row[b + _P_RESTARTING] = 1.0 if (running and restart_until[e, s] > c) else 0.0
            row[b + _P_REMAINING] = _squash((work[e, s] - done[e, s]) * p, 3600.0) if known else 0.0
            m = model[e, s]
            for i in range(n_models):
                row[b + _P_MODEL0 + i] = 1.0 if (present and m == i) else 0.0
        at = K * F
        for t in range(T):
            row[at + t] = free_t[e, t] / capacity[t]
        q = 0
        r = 0
        rp = False
        for s in range(S):
            if status[e, s] == WAITING:
                q += 1
            elif status[e, s] == RUNNING:
                r += 1
            if repick[e, s]:
                rp = True
        at += T
        row[at] = _squash(float(q), float(K))
        row[at + 1] = _squash(float(r), float(K))
        row[at + 2] = _squash(last_dt[e], round_length)
        row[at + 3] = 1.0 if rp else 0.0
        row[at + 4] = n_done[e] / max(n_jobs[e], 1) if n_jobs[e] > 0 else 0.0
