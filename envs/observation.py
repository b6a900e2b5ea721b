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
                 "restarting", "remaining", "gpu_remaining", "service_rank", "remaining_rank",
                 *tuple(f"model_{m}" for m in models.MODELS))
#: cluster features after the slots, in observation order; ``free_gpus`` is one entry per GPU type.
#: The ``queue_*`` features pool over every waiting job of the env, visible or not.
CLUSTER_FEATURES = ("free_gpus", "queued", "running", "since_last_event", "repick_open", "finished", "hidden",
                    "queue_gpus_mean", "queue_gpus_max", "queue_waited_mean", "queue_waited_max",
                    "queue_attained_mean", "queue_remaining_mean")
SLOT = {name: i for i, name in enumerate(SLOT_FEATURES)}
#: which jobs fill the ``K`` visible slots (:func:`visible_and_mask`) and in which order the jobs
#: beyond them are served (``EnvConfig.serve_hidden``): ``"arrival"``: waiting jobs oldest first,
#: then running ones; ``"attained"``: every active job by least attained GPU-service (LAS order);
#: ``"remaining"``: every active job by least remaining work (SRTF order; needs known durations).
#: Ties keep arrival order.
VISIBLE_ORDERS = ("arrival", "attained", "remaining")
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
_P_GPU_REMAINING, _P_SERVICE_RANK, _P_REMAINING_RANK = (SLOT[n] for n in ("gpu_remaining", "service_rank",
                                                                          "remaining_rank"))


@njit(**_JIT)
def _squash(x: float, scale: float) -> float:
    """``np.maximum(x, 0) / (np.maximum(x, 0) + scale)``."""
    if x < 0.0:
        x = 0.0
    return x / (x + scale)


@njit(**_JIT)
def prescore(order, status, attained, work, done, e, s):
    """The visible-order pre-score of slot ``s`` of env ``e`` (smaller: served first; ties by
    arrival): ``order`` 1 attained GPU-service, 2 remaining work ``work - done``, else 0."""
    if order == 1:
        return attained[e, s]
    if order == 2:
        return work[e, s] - done[e, s]
    return 0.0


@njit(**_JIT)
def visible_and_mask(status, job, gpus, free_t, repick, t_next, K, order, attained, work, done, vis, mask, ranked):
    """Fill ``vis`` ``(E, K)`` with the slots shown to the agent and ``ranked`` ``(E, S)`` with
    every slot in visible order: for ``order`` 0 (``"arrival"``) waiting jobs, then running ones,
    each by workload position; for ``order`` 1 / 2 (``"attained"`` / ``"remaining"``) every
    active job by :func:`prescore`, ties by workload position; then empty slots by index. Fill
    ``mask`` ``(E, K + 1)``: a visible waiting job that fits the free GPUs of some type may start;
    advancing is allowed when an event is pending (``t_next`` finite) or a re-pick phase is open,
    and always when nothing else is."""
    E, S = status.shape
    T = free_t.shape[1]
    key = np.empty(S, dtype=np.int64)
    pre = np.empty(S, dtype=np.float64)
    seg = np.empty(S, dtype=np.int64)
    for e in range(E):
        active = 0
        for s in range(S):
            st = status[e, s]
            if order == 0:
                rank = 0 if st == WAITING else (1 if st == RUNNING else 2)
            else:
                rank = 2 if st == EMPTY else 0
            if st != EMPTY:
                active += 1
            j = 0 if st == EMPTY else job[e, s]
            key[s] = (rank << 58) | (j << _VIS_SHIFT) | s
        key.sort()
        if order != 0 and active > 1:
            for i in range(active):
                pre[i] = prescore(order, status, attained, work, done, e, key[i] & _VIS_LOW)
            perm = np.argsort(pre[:active], kind="mergesort")
            for i in range(active):
                seg[i] = key[perm[i]]
            for i in range(active):
                key[i] = seg[i]
        for s in range(S):
            ranked[e, s] = key[s] & _VIS_LOW
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
def _rank(values, job, status, e, s, active):
    """Share of the other active jobs of env ``e`` ahead of slot ``s`` by ``values`` (ties by
    workload position ``job``): 0 first, 1 last."""
    if active <= 1:
        return 0.0
    v = values[e, s]
    j = job[e, s]
    ahead = 0
    for o in range(status.shape[1]):
        if status[e, o] != EMPTY and (values[e, o] < v or (values[e, o] == v and job[e, o] < j)):
            ahead += 1
    return ahead / (active - 1)


@njit(**_JIT)
def observe(vis, mask, status, repick, gpus, submit, attained, n, restart_until, work, done, model, job, clock,
            free_t, capacity, last_dt, n_done, n_jobs, gpu_table, total_gpus, known, round_length, n_models,
            F, remaining, obs):
    """Fill ``obs`` ``(E, obs_dim)`` (float32) with every env's observation (see the module
    docstring and :data:`SLOT_FEATURES`): per visible slot ``present``, ``waiting``,
    ``running``, ``repick``, ``fits`` (the mask), ``gpus`` (``gpu_table[gpus]``), ``waited``
    (squashed ``clock - submit``), ``attained`` (squashed GPU-seconds held), ``allocated``
    (``n / total_gpus``), ``restarting``, ``remaining`` (squashed ``work - done`` when ``known``,
    else 0), ``gpu_remaining`` (squashed ``(work - done) * gpus`` when ``known``, else 0),
    ``service_rank`` (the share of the other active jobs with less attained service, ties by
    arrival: LAS's order), ``remaining_rank`` (likewise by ``work - done``, SRTF's order, when
    ``known``, else 0) and the model one-hot (all zero for an empty slot; so are the ranks);
    then free GPUs per type over capacity, the squashed counts of waiting and running jobs
    (scale ``K``), the squashed time since the last event (scale ``round_length``), whether a
    re-pick phase is open, the finished fraction, the squashed count of waiting jobs not visible
    (scale ``K``), and over all waiting jobs (0 when none): the mean and max of ``gpus``, of
    ``waited``, the mean of ``attained`` and of ``remaining`` (0 unless ``known``). ``F`` is the
    number of features per slot; ``remaining`` ``(E, S)`` is scratch space."""
    E, K = vis.shape
    S = status.shape[1]
    T = free_t.shape[1]
    for e in range(E):
        row = obs[e]
        c = clock[e]
        active = 0
        for s in range(S):
            remaining[e, s] = work[e, s] - done[e, s]
            if status[e, s] != EMPTY:
                active += 1
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
            row[b + _P_GPU_REMAINING] = _squash((work[e, s] - done[e, s]) * gpus[e, s] * p, 3600.0) if known else 0.0
            row[b + _P_SERVICE_RANK] = _rank(attained, job, status, e, s, active) if present else 0.0
            row[b + _P_REMAINING_RANK] = _rank(remaining, job, status, e, s, active) if (present and known) else 0.0
            m = model[e, s]
            for i in range(n_models):
                row[b + _P_MODEL0 + i] = 1.0 if (present and m == i) else 0.0
        at = K * F
        for t in range(T):
            row[at + t] = free_t[e, t] / capacity[t]
        q = 0
        r = 0
        rp = False
        g_sum = 0.0
        g_max = 0.0
        w_sum = 0.0
        w_max = 0.0
        a_sum = 0.0
        rem_sum = 0.0
        for s in range(S):
            if status[e, s] == WAITING:
                q += 1
                g = gpu_table[gpus[e, s]]
                w = _squash(c - submit[e, s], 3600.0)
                g_sum += g
                g_max = max(g_max, g)
                w_sum += w
                w_max = max(w_max, w)
                a_sum += _squash(attained[e, s], 3600.0)
                if known:
                    rem_sum += _squash(work[e, s] - done[e, s], 3600.0)
            elif status[e, s] == RUNNING:
                r += 1
            if repick[e, s]:
                rp = True
        shown = 0
        for k in range(K):
            if status[e, vis[e, k]] == WAITING:
                shown += 1
        at += T
        row[at] = _squash(float(q), float(K))
        row[at + 1] = _squash(float(r), float(K))
        row[at + 2] = _squash(last_dt[e], round_length)
        row[at + 3] = 1.0 if rp else 0.0
        row[at + 4] = n_done[e] / max(n_jobs[e], 1) if n_jobs[e] > 0 else 0.0
        row[at + 5] = _squash(float(q - shown), float(K))
        nq = max(q, 1)
        row[at + 6] = g_sum / nq
        row[at + 7] = g_max
        row[at + 8] = w_sum / nq
        row[at + 9] = w_max
        row[at + 10] = a_sum / nq
        row[at + 11] = rem_sum / nq


# ---------------------------------------------------------------------------------- allocate mode
#: extra features of each visible slot in ``action_mode="allocate"``, appended after the cluster
#: features (slot-major); ``speed`` and ``on_type`` are one entry per GPU type
ALLOCATE_SLOT_FEATURES = ("elastic", "min_gpus", "max_gpus", "goodput", "adaptive", "batch_gain", "phase",
                          "speed", "on_type")
#: extra cluster features in ``action_mode="allocate"``, after the slots' extra features; all but
#: ``reallocating`` are one entry per GPU type
ALLOCATE_CLUSTER_FEATURES = ("reallocating", "largest_free_node", "free_nodes", "fragmented_free")
#: the allocate-mode features that have one entry per GPU type
PER_TYPE = frozenset({"speed", "on_type", "largest_free_node", "free_nodes", "fragmented_free"})


def _width(names: tuple[str, ...], T: int) -> int:
    return sum(T if n in PER_TYPE else 1 for n in names)


def allocate_size(K: int, T: int) -> int:
    """Length of the allocate-mode extra features for ``K`` slots and ``T`` GPU types."""
    return K * _width(ALLOCATE_SLOT_FEATURES, T) + _width(ALLOCATE_CLUSTER_FEATURES, T)


def allocate_features(core, vis: np.ndarray, realloc: np.ndarray, gpu_table: np.ndarray) -> np.ndarray:
    """``(E, allocate_size(K, T))`` float32 in [0, 1]: the allocate-mode features (NumPy).

    Per visible slot (0 for an empty slot): ``elastic`` (its GPU count may vary), ``min_gpus``,
    ``max_gpus`` (scaled as ``gpus``), ``goodput`` (a goodput-modelled job, :mod:`envs.goodput`),
    ``adaptive`` (it trains at the goodput-optimal batch size), ``batch_gain`` (goodput jobs: the
    goodput at its request on the cluster's first GPU type, in its current phase, with the optimal batch size over that with its
    own, ``g``, as ``1 - 1 / g``, so 0 = no gain), ``phase`` (the job's efficiency or
    dynamic-adaptation phase over the number of phases), ``speed`` (per GPU type: the speed of
    its model on that type over its speed on its fastest type, the throughput table) and
    ``on_type`` (per GPU type: it holds GPUs of that type). Cluster: ``reallocating`` (running
    jobs may be moved, resized or preempted now), and per GPU type ``largest_free_node`` (the
    most free GPUs on one node of the type over the largest node of the type), ``free_nodes``
    (share of its nodes entirely free) and ``fragmented_free`` (free GPUs on partly used nodes
    over the type's capacity): node-level fragmentation."""
    E, K = vis.shape
    T = core.T
    take = lambda a: np.take_along_axis(a, vis, axis=1)  # noqa: E731
    st = take(core.s_status)
    present = st != EMPTY
    p = present.astype(np.float64)
    lo, hi, kind, model = take(core.s_min), take(core.s_max), take(core.s_kind), take(core.s_model)
    goodput = present & (kind >= 0)
    top = len(gpu_table) - 1
    speed = core.speed[model]
    speed = speed / np.maximum(speed.max(axis=2, keepdims=True), 1e-12) * p[:, :, None]
    on_type = ((st == RUNNING)[:, :, None] & (take(core.s_t)[:, :, None] == np.arange(T)[None, None, :]))
    phase = take(core.s_phase).astype(np.float64)
    gain = np.zeros((E, K))
    g = core.goodput
    if g is not None and goodput.any():
        phases = g.bounds.shape[1]
        e, k = np.nonzero(goodput)
        kk, ph = kind[e, k], np.minimum(phase[e, k], phases - 1).astype(np.int64)
        req = np.minimum(take(core.s_gpus)[e, k], g.max_gpus)
        ref = 0
        own = g.rate[kk, ph, ref, req, 0, 0]
        best = g.rate[kk, ph, ref, req, 0, 1]
        gain[e, k] = np.where(own > 0, 1.0 - own / np.maximum(best, own + 1e-300), 0.0)
        n_phase = np.full((E, K), float(core.dynamic_phases))
        n_phase[e, k] = phases
    else:
        n_phase = np.full((E, K), float(core.dynamic_phases))
    slot = np.concatenate([
        np.stack([present & (lo != hi), gpu_table[np.clip(lo, 0, top)] * p, gpu_table[np.clip(hi, 0, top)] * p,
                  goodput, goodput & take(core.s_adapt), gain, np.clip(phase / n_phase, 0.0, 1.0) * p],
                 axis=2).astype(np.float64),
        speed, on_type.astype(np.float64)], axis=2).reshape(E, -1)
    free = core.free
    cols = [realloc.astype(np.float64)[:, None]]
    largest, whole, frag = (np.zeros((E, T)) for _ in range(3))
    for t in range(T):
        nodes = core.node_type == t
        cap = core.node_cap[nodes]
        f = free[:, nodes]
        largest[:, t] = f.max(axis=1, initial=0) / max(int(cap.max(initial=1)), 1)
        full = f == cap[None, :]
        whole[:, t] = full.sum(axis=1) / max(int(nodes.sum()), 1)
        frag[:, t] = np.where(full, 0, f).sum(axis=1) / max(int(core.capacity[t]), 1)
    cols += [largest, whole, frag]
    return np.concatenate([slot, *cols], axis=1).astype(np.float32)
