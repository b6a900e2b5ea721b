"""The compiled kernels agree bit for bit with the array formulas they implement, evaluated
independently here with NumPy on random states (slots empty, waiting, running, restarting,
in a goodput phase, with zero rates), and with the observation of a live env."""

from __future__ import annotations

import numpy as np
import pytest

from envs.core import kernels
from envs.core.state import EMPTY, RUNNING, WAITING
from envs.engine import VectorEngine
from envs.observation import SLOT, SLOT_FEATURES, visible_and_mask
from traces import models

INF = np.inf


def random_state(seed: int, E: int = 7, S: int = 12, J: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    status = rng.choice([EMPTY, WAITING, RUNNING], size=(E, S))
    running = status == RUNNING
    clock = rng.uniform(0, 1e4, E)
    restart_until = np.where(rng.random((E, S)) < 0.3, clock[:, None] + rng.uniform(-50, 200, (E, S)), -INF)
    work = rng.uniform(1, 1e5, (E, S))
    phase_end = np.where(rng.random((E, S)) < 0.4, work * rng.uniform(0.1, 1.0, (E, S)), INF)
    done = np.minimum(work, phase_end) * rng.uniform(0, 1, (E, S))
    rate = np.where(running, rng.choice([0.0, 0.5, 1.0, 3.7], size=(E, S)), 0.0)
    done[rng.random((E, S)) < 0.1] = np.minimum(work, phase_end)[rng.random((E, S)) < 0.1].max()
    n_jobs = rng.integers(0, J + 1, E)
    next_job = np.minimum(rng.integers(0, J + 1, E), n_jobs + rng.integers(0, 2, E))
    submit = np.sort(rng.uniform(0, 2e4, (E, J)), axis=1)
    return dict(clock=clock, status=status, restart_until=restart_until, work=work, phase_end=phase_end,
                done=done, rate=rate, next_job=next_job, n_jobs=n_jobs, submit=submit,
                n_active=(status != EMPTY).sum(axis=1), n=np.where(running, rng.integers(1, 9, (E, S)), 0),
                attained=rng.uniform(0, 1e4, (E, S)))


def reference_next(st: dict, round_length: float | None) -> tuple[np.ndarray, np.ndarray]:
    run = st["status"] == RUNNING
    resume = np.maximum(st["clock"][:, None], st["restart_until"])
    target = np.minimum(st["work"], st["phase_end"])
    with np.errstate(divide="ignore", invalid="ignore"):
        fin = np.where(run, resume + (target - st["done"]) / st["rate"], INF)
    E, J = st["submit"].shape
    idx = np.minimum(st["next_job"], J - 1)
    t_arr = np.where(st["next_job"] < st["n_jobs"], st["submit"][np.arange(E), idx], INF)
    restarting = run & (st["restart_until"] > st["clock"][:, None])
    t_rst = np.where(restarting, st["restart_until"], INF).min(axis=1)
    t_next = np.minimum(np.minimum(fin.min(axis=1), t_arr), t_rst)
    if round_length is not None:
        t_round = (np.floor(st["clock"] / round_length) + 1.0) * round_length
        t_next = np.minimum(t_next, np.where(st["n_active"] > 0, t_round, INF))
    return t_next, fin


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("round_length", [None, 300.0])
def test_next_events_equals_the_array_formulas(seed: int, round_length: float | None) -> None:
    st = random_state(seed)
    want_next, want_fin = reference_next(st, round_length)
    fin, t_next = np.empty(st["status"].shape), np.empty(len(st["clock"]))
    kernels.next_events(st["clock"], st["status"], st["restart_until"], st["work"], st["phase_end"], st["done"],
                        st["rate"], st["next_job"], st["n_jobs"], st["submit"], st["n_active"],
                        -1.0 if round_length is None else round_length, fin, t_next)
    np.testing.assert_array_equal(fin, want_fin)
    np.testing.assert_array_equal(t_next, want_next)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("round_length", [None, 300.0])
def test_accrue_equals_the_array_formulas(seed: int, round_length: float | None) -> None:
    st = random_state(seed)
    t_next, fin = reference_next(st, round_length)
    rng = np.random.default_rng(seed + 100)
    mask = rng.random(len(t_next)) < 0.8
    # reference
    m = mask & np.isfinite(t_next)
    tn = np.where(m, t_next, st["clock"])
    dt = tn - st["clock"]
    resume = np.maximum(st["clock"][:, None], st["restart_until"])
    done = st["done"] + st["rate"] * np.clip(tn[:, None] - resume, 0.0, None)
    attained = st["attained"] + st["n"] * dt[:, None]
    hit = np.zeros(len(dt), dtype=bool)
    if round_length is not None:
        hit = m & (st["n_active"] > 0) & (tn >= (np.floor(st["clock"] / round_length) + 1.0) * round_length)
    tol = 1e-9 * np.maximum(1.0, np.abs(tn))
    reached = (st["status"] == RUNNING) & m[:, None] & (fin - tn[:, None] <= tol[:, None])
    finished = reached & (st["phase_end"] >= st["work"])
    # kernel
    got_done, got_att = st["done"].copy(), st["attained"].copy()
    E, S = st["status"].shape
    out = dict(clock=np.empty(E), dt=np.empty(E), gpu=np.empty(E), jobs=np.empty(E), hit=np.empty(E, bool),
               reached=np.empty((E, S), bool), finished=np.empty((E, S), bool))
    n_phase, n_done = kernels.accrue(mask, t_next, fin, st["clock"], st["status"], st["restart_until"], st["rate"],
                                     got_done, got_att, st["n"], st["phase_end"], st["work"], st["n_active"],
                                     -1.0 if round_length is None else round_length, out["clock"], out["dt"],
                                     out["gpu"], out["jobs"], out["hit"], out["reached"], out["finished"])
    np.testing.assert_array_equal(got_done, done)
    np.testing.assert_array_equal(got_att, attained)
    np.testing.assert_array_equal(out["clock"], tn)
    np.testing.assert_array_equal(out["dt"], dt)
    np.testing.assert_array_equal(out["gpu"], st["n"].sum(axis=1) * dt)
    np.testing.assert_array_equal(out["jobs"], st["n_active"] * dt)
    np.testing.assert_array_equal(out["hit"], hit)
    np.testing.assert_array_equal(out["reached"], reached)
    np.testing.assert_array_equal(out["finished"], finished)
    assert (n_phase, n_done) == ((reached & ~finished).sum(), finished.sum())


def _squash(x: np.ndarray, scale: float) -> np.ndarray:
    x = np.maximum(x, 0.0)
    return x / (x + scale)


def reference_observation(eng: VectorEngine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The visible slots, the mask and the observation of every env by the array formulas."""
    c, K, E = eng.core, eng.K, eng.E
    st = c.s_status
    active = st != EMPTY
    job = np.where(active, c.s_job, 0)
    order = eng.cfg.visible_order
    if order == "arrival":
        group = np.where(st == WAITING, 0, np.where(st == RUNNING, 1, 2))
        pre = np.zeros(st.shape)
    else:
        group = np.where(active, 0, 2)
        pre = np.where(active, c.s_attained if order == "attained" else c.s_work - c.s_done, 0.0)
    ranked = np.lexsort((np.broadcast_to(np.arange(c.S), st.shape), job, pre, group), axis=1)
    vis = ranked[:, :K]
    np.testing.assert_array_equal(eng.ranked, ranked)
    free_t = c.free_per_type()
    startable = (st == WAITING) & (free_t[:, None, :] >= c.s_gpus[:, :, None]).any(axis=2)
    mask = np.empty((E, K + 1), dtype=bool)
    mask[:, :K] = np.take_along_axis(startable, vis, axis=1)
    mask[:, K] = np.isfinite(c.next_event()) | eng.repick.any(axis=1) | ~mask[:, :K].any(axis=1)
    g = lambda a: np.take_along_axis(a, vis, axis=1)  # noqa: E731
    s = g(st)
    present, running = s != EMPTY, s == RUNNING
    clock = c.clock[:, None]
    known = eng.cfg.known_durations
    n_active = active.sum(axis=1)[:, None, None]

    def share_ahead(values: np.ndarray) -> np.ndarray:
        v, j = g(values)[:, :, None], g(c.s_job)[:, :, None]
        ahead = (active[:, None, :] & ((values[:, None, :] < v) | ((values[:, None, :] == v) & (c.s_job[:, None, :] < j))))
        return np.where(present & (n_active[:, :, 0] > 1), ahead.sum(axis=2) / np.maximum(n_active[:, :, 0] - 1, 1), 0.0)

    remaining = c.s_work - c.s_done
    f = {
        "present": present, "waiting": s == WAITING, "running": running, "repick": g(eng.repick),
        "fits": mask[:, :K], "gpus": np.log2(1 + g(c.s_gpus) * present) / np.log2(1 + c.total_gpus),
        "waited": _squash((clock - g(c.s_submit)) * present, 3600.0), "attained": _squash(g(c.s_attained), 3600.0),
        "allocated": g(c.s_n) / c.total_gpus, "restarting": running & (g(c.s_restart_until) > clock),
        "remaining": (_squash((g(c.s_work) - g(c.s_done)) * present, 3600.0) if eng.cfg.known_durations
                      else np.zeros((E, K))),
        "gpu_remaining": (_squash(g(remaining) * g(c.s_gpus) * present, 3600.0) if known else np.zeros((E, K))),
        "service_rank": share_ahead(c.s_attained),
        "remaining_rank": share_ahead(remaining) if known else np.zeros((E, K)),
    }
    feats = np.zeros((E, K, len(SLOT_FEATURES)))
    for name, value in f.items():
        feats[:, :, SLOT[name]] = value
    for i in range(eng.M):
        feats[:, :, SLOT[f"model_{models.MODELS[i]}"]] = (g(c.s_model) == i) & present
    cluster = np.concatenate([
        free_t / c.capacity[None, :],
        _squash((st == WAITING).sum(axis=1), K)[:, None], _squash((st == RUNNING).sum(axis=1), K)[:, None],
        _squash(eng.last_dt, eng.cfg.round_length)[:, None], eng.repick.any(axis=1)[:, None],
        np.where(c.n_jobs > 0, c.n_done / np.maximum(c.n_jobs, 1), 0.0)[:, None],
        queue_features(eng, vis),
    ], axis=1)
    obs = np.concatenate([feats.reshape(E, -1), cluster], axis=1).astype(np.float32)
    return vis, mask, obs


def queue_features(eng: VectorEngine, vis: np.ndarray) -> np.ndarray:
    """The pooled cluster features over all waiting jobs (``hidden`` .. ``queue_remaining_mean``)."""
    c, K = eng.core, eng.K
    w = c.s_status == WAITING
    q = w.sum(axis=1)
    nq = np.maximum(q, 1)
    shown = np.take_along_axis(w, vis, axis=1).sum(axis=1)
    gpus = np.log2(1 + c.s_gpus) / np.log2(1 + c.total_gpus)
    waited = _squash(c.clock[:, None] - c.s_submit, 3600.0)
    rem = _squash(c.s_work - c.s_done, 3600.0) if eng.cfg.known_durations else np.zeros(w.shape)
    mean = lambda x: np.where(w, x, 0.0).sum(axis=1) / nq  # noqa: E731
    top = lambda x: np.where(w, x, 0.0).max(axis=1)  # noqa: E731
    return np.stack([_squash(q - shown, K), mean(gpus), top(gpus), mean(waited), top(waited),
                     mean(_squash(c.s_attained, 3600.0)), mean(rem)], axis=1)


@pytest.mark.parametrize("mode,preemption,known,order", [("pick", False, False, "arrival"),
                                                          ("pick", True, True, "remaining"),
                                                          ("priority", True, False, "arrival"),
                                                          ("priority", True, False, "attained"),
                                                          ("priority", True, True, "remaining")])
def test_observation_and_mask_equal_the_array_formulas(mode: str, preemption: bool, known: bool, order: str) -> None:
    eng = VectorEngine(6, cluster="small", num_jobs=40, max_slots=8, action_mode=mode, preemption=preemption,
                       known_durations=known, trace_jobs=400, visible_order=order,
                       serve_hidden=mode == "priority" and order != "arrival")
    eng.seed(list(range(6)))
    eng.reset_envs(np.arange(6))
    rng = np.random.default_rng(0)
    for step in range(150):
        vis, mask, obs = reference_observation(eng)
        np.testing.assert_array_equal(eng.vis, vis, err_msg=f"step {step}")
        np.testing.assert_array_equal(eng.mask, mask, err_msg=f"step {step}")
        got, _ = eng.observe()
        np.testing.assert_array_equal(got, obs, err_msg=f"step {step}")
        if mode == "pick":
            actions = (rng.random(mask.shape) * mask).argmax(axis=1)
        else:
            actions = rng.uniform(-1, 1, (6, 8))
        eng.step(actions)
        done = np.flatnonzero(eng.needs_reset)
        eng.reset_envs(done)


def test_the_mask_kernel_lets_an_env_with_nothing_to_do_advance() -> None:
    status = np.full((1, 4), EMPTY)
    vis, mask = np.empty((1, 2), np.int64), np.empty((1, 3), bool)
    zeros = np.zeros((1, 4))
    visible_and_mask(status, np.zeros((1, 4), np.int64), np.ones((1, 4), np.int64), np.zeros((1, 1), np.int64),
                     np.zeros((1, 4), bool), np.array([INF]), 2, 0, zeros, zeros, zeros, vis, mask,
                     np.empty((1, 4), np.int64))
    assert mask.tolist() == [[False, False, True]] and vis.tolist() == [[0, 1]]
