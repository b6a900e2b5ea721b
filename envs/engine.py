"""The decision layer shared by every Gymnasium face: episodes, observations, masks, actions.

:class:`VectorEngine` owns a :class:`~envs.core.ClusterCore` of ``num_envs`` clusters and turns
it into an RL problem (DESIGN section 4). :class:`envs.gpu_cluster.GpuClusterEnv` (one env),
:class:`envs.gpu_cluster.GpuClusterVectorEnv` (Gymnasium vector env) and
:class:`envs.sb3.GpuClusterVecEnv` (stable-baselines3 ``VecEnv``) are thin adapters over it, so
all three produce the same trajectories.

Episodes are windows of one base trace: the synthetic default (a long seeded synthetic trace
generated at the target load) or a real trace, whose arrivals are rescaled once, as a whole, to
the target offered load on the cluster. At every reset an env draws a window start from its own
RNG, takes ``num_jobs`` consecutive jobs and re-bases them to time 0 (vectorised over the envs
being reset). Windows keep the base trace's arrival rate rather than each being stretched to the
load: with heavy-tailed durations most of the offered load sits in rare multi-day jobs, and
rescaling each short window by its own demand would spread its other jobs so far apart that
they never contend.

Resets of finished envs happen inside ``step`` (same-step autoreset) and touch only those envs.

A step costs one pass of array operations over all envs: an env whose only allowed action is
to advance is not advanced automatically (that would make every step loop until the slowest env
has a choice); its mask simply allows nothing else.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from envs import allocate, metrics, observation
from envs.config import FIELDS as SIM_FIELDS
from envs.config import SimConfig
from envs.core import EMPTY, RUNNING, WAITING, ClusterCore
from envs.lowering import fastest_with_room
from envs.observation import (  # noqa: F401 (re-exported)
    CLUSTER_FEATURES,
    SLOT_FEATURES,
    VISIBLE_ORDERS,
    cluster_offsets,
    observation_size,
)
from envs.policy import ClusterView, Priority, execute
from envs.workload import Workload, drop_oversize, make_workload
from traces import clusters, models
from traces.clusters import ClusterSpec

ACTION_MODES = ("pick", "priority", "allocate")
REWARDS = ("jct", "slowdown", "utilization")


@dataclass
class EnvConfig:
    """Configuration of the GpuCluster environments (see :class:`envs.gpu_cluster.GpuClusterEnv`).

    The simulator's settings are one :class:`~envs.config.SimConfig` (``sim``); the env's own
    round period is ``round_length`` (rounds exist only with ``preemption``), so ``sim`` must
    leave its ``round_length`` unset. :meth:`from_options` accepts the simulator's settings as
    flat options too (``restart_overhead=60, network=True``).
    """

    trace: pd.DataFrame | str | None = None
    cluster: str | ClusterSpec = "tiny"
    num_jobs: int = 64
    load: float | None = 1.0
    max_slots: int = 32
    action_mode: str = "pick"
    preemption: bool = False
    round_length: float = 300.0
    """seconds between the env's round boundaries (re-picks, preemption); used only with
    ``preemption``"""
    reward: str = "jct"
    reward_scale: float = 3600.0
    known_durations: bool = False
    visible_order: str = "arrival"
    """which jobs fill the ``K`` visible slots, in which order (:data:`envs.observation.VISIBLE_ORDERS`):
    ``"arrival"`` (waiting jobs oldest first, then running ones), ``"attained"`` (every active
    job, least attained GPU-service first) or ``"remaining"`` (least remaining work first; needs
    ``known_durations``)"""
    serve_hidden: bool = False
    """priority mode: jobs beyond the ``K`` visible ones are served after the visible ones, in
    ``visible_order`` (so they backfill free GPUs and, when preempting, compete for them) rather
    than never started (running ones keep their GPUs)"""
    preempt_every_event: bool = False
    """priority and allocate modes with ``preemption``: running jobs compete for the GPUs (allocate:
    may be moved, resized or preempted) at every step (every event), not only at round boundaries
    (as SRTF does)"""
    max_steps: int | None = None
    trace_jobs: int = 20_000
    trace_seed: int = 0
    sim: SimConfig = field(default_factory=SimConfig)
    """the simulator's settings (restart overhead, placer, models, workload shaping)"""

    def __post_init__(self) -> None:
        if isinstance(self.sim, Mapping):
            self.sim = SimConfig.of(self.sim)
        if not isinstance(self.sim, SimConfig):
            raise TypeError(f"sim must be a SimConfig, got {type(self.sim).__name__}")
        if self.sim.round_length is not None:
            raise ValueError("the env's rounds are EnvConfig.round_length (with preemption); leave sim.round_length None")
        for name, low in (("num_jobs", 1), ("max_slots", 1), ("trace_jobs", 1), ("trace_seed", 0)):
            setattr(self, name, _integer(name, getattr(self, name), low))
        if self.max_steps is not None:
            self.max_steps = _integer("max_steps", self.max_steps, 1)
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        if self.visible_order not in VISIBLE_ORDERS:
            raise ValueError(f"visible_order must be one of {VISIBLE_ORDERS}, got {self.visible_order!r}")
        if self.visible_order == "remaining" and not self.known_durations:
            raise ValueError("visible_order='remaining' orders jobs by their remaining work: it needs known_durations=True")
        if self.serve_hidden and self.action_mode != "priority":
            raise ValueError("serve_hidden applies to action_mode='priority' (pick mode starts only visible jobs)")
        if self.preempt_every_event and not (self.preemption and self.action_mode in ("priority", "allocate")):
            raise ValueError("preempt_every_event needs action_mode='priority' or 'allocate' and preemption=True")
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")
        if not (np.isfinite(self.round_length) and self.round_length > 0):
            raise ValueError(f"round_length must be > 0 seconds, got {self.round_length}")
        if self.load is not None and not self.load > 0:
            raise ValueError(f"load must be > 0 or None, got {self.load}")
        if not self.reward_scale > 0:
            raise ValueError(f"reward_scale must be > 0, got {self.reward_scale}")

    @classmethod
    def from_options(cls, **options: Any) -> EnvConfig:
        """An EnvConfig from flat options: its own fields, plus :class:`~envs.config.SimConfig`
        settings folded into ``sim`` (``round_length`` is the env's). Unknown options raise
        ``TypeError``."""
        own = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - own - SIM_FIELDS)
        if unknown:
            raise TypeError(f"unknown GpuCluster options {unknown}")
        flat = {k: v for k, v in options.items() if k not in own}
        kwargs = {k: v for k, v in options.items() if k in own}
        kwargs["sim"] = SimConfig.of(kwargs.get("sim"), **flat)
        return cls(**kwargs)

    @property
    def restart_overhead(self) -> float:
        """The simulator's restart overhead (``sim.restart_overhead``; saved with agents)."""
        return self.sim.restart_overhead


def _integer(name: str, value: Any, low: int) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``low``; else ``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _base_workload(cfg: EnvConfig, spec: ClusterSpec) -> tuple[Workload, str, int]:
    """The base workload, its source and how many jobs :func:`envs.workload.drop_oversize`
    dropped (jobs larger than every GPU-type pool of the cluster)."""
    from traces import load_trace, synthetic, window

    if cfg.trace is None:
        trace = synthetic(max(cfg.trace_jobs, cfg.num_jobs), load=cfg.load or 0.9, cluster=spec, seed=cfg.trace_seed)
        source = "synthetic"
    elif isinstance(cfg.trace, pd.DataFrame):
        trace, source = cfg.trace, "trace"
    else:
        trace, source = load_trace(cfg.trace), str(cfg.trace)
    trace, dropped = drop_oversize(trace, spec, goodput=cfg.sim.goodput, source=source)
    if len(trace) < cfg.num_jobs:
        fit = f" that fit cluster {spec.name!r} ({dropped} larger than its largest GPU pool dropped)" if dropped else ""
        raise ValueError(f"{source}: has {len(trace)} jobs{fit}, fewer than num_jobs={cfg.num_jobs}")
    span = trace["submit_time"].max() - trace["submit_time"].min()
    if cfg.trace is not None and cfg.load is not None and span > 0:  # all-at-once: no rate to scale
        trace = window(trace, 0.0, num_jobs=len(trace), load=cfg.load, cluster=spec)
    workload = make_workload(trace, spec, seed=cfg.trace_seed, elastic_fraction=cfg.sim.elastic_fraction,
                             source=source, dynamic_fraction=cfg.sim.dynamic_fraction, goodput=cfg.sim.goodput,
                             restart=cfg.sim.restart)
    return workload, source, dropped


class VectorEngine:
    """``num_envs`` GpuCluster environments stepped together (see module docstring).

    ``dropped_jobs``: jobs of the trace left out for requesting more GPUs than the largest
    GPU-type pool of the cluster (:func:`envs.workload.drop_oversize`). ``mask`` is the pick
    mask ``(E, K + 1)`` (it also feeds the ``fits`` feature); in allocate mode ``alloc_mask``
    ``(E, mask_size)`` is the action mask (:func:`envs.allocate.masks`).
    """

    def __init__(self, num_envs: int = 1, config: EnvConfig | None = None, *,
                 core: ClusterCore | None = None, **kwargs) -> None:
        """With ``core``, the engine attaches to an existing core (e.g. the one
        :func:`envs.simulate` drives) to build observations and carry out picks on it; it then
        has no trace of its own and cannot reset episodes."""
        cfg = config if config is not None else EnvConfig.from_options(**kwargs)
        if config is not None and kwargs:
            raise TypeError("give either config or keyword options, not both")
        self.cfg = cfg
        self.K = int(cfg.max_slots)
        if core is None:
            self.E = int(num_envs)
            self.spec = clusters.get(cfg.cluster)
            self.base, self.source, self.dropped_jobs = _base_workload(cfg, self.spec)
            sim = cfg.sim.replace(round_length=cfg.round_length if cfg.preemption else None)
            self.core = ClusterCore(self.spec, self.E, sim=sim, min_slots=self.K)
            if self.base.goodput is not None:
                self.core.set_goodput(self.base.goodput)
        else:
            self.E, self.spec, self.core = core.E, core.cluster, core
            self.base, self.source, self.dropped_jobs = None, "attached", 0
            core.ensure_slots(self.K)
        self.view = ClusterView(self.core, known_durations=cfg.known_durations)
        self.T = self.core.T
        self.M = len(models.MODELS)
        self.F = len(SLOT_FEATURES)
        self._model_ids = np.arange(self.M)
        self._slot_ids = np.arange(self.core.S, dtype=np.int64)
        self.obs_dim = observation_size(self.K, self.T)
        #: the allocate action's layout (``None`` in the other modes)
        self.layout = allocate.AllocateLayout(self.core, self.K) if cfg.action_mode == "allocate" else None
        if self.layout is not None:
            self.obs_dim += observation.allocate_size(self.K, self.T)
        #: length of an env's action mask (``K + 1`` picks, or the allocate mode's concatenated masks)
        self.mask_size = self.K + 1 if self.layout is None else self.layout.mask_size
        #: offset of each cluster feature in the observation (``free_gpus``: the first of ``T``)
        self.cluster_offsets = cluster_offsets(self.K, self.T)
        self._gpu_table = observation.gpu_feature_table(self.core.total_gpus, self.core.total_gpus)
        self.max_steps = int(cfg.max_steps) if cfg.max_steps is not None else 50 * cfg.num_jobs
        #: each env's episode RNG; ``None`` until first needed (then fresh OS entropy), so an
        #: engine that never draws a window (a policy's private copy) builds none
        self.rngs: list[np.random.Generator | None] = [None] * self.E
        E = self.E
        self.steps = np.zeros(E, dtype=np.int64)
        self.invalid = np.zeros(E, dtype=np.int64)
        self.ep_return = np.zeros(E)
        self.last_dt = np.zeros(E)
        self.at_round = np.zeros(E, dtype=bool)
        self.repick = np.zeros((E, self.core.S), dtype=bool)
        self.prev_place = np.zeros((E, self.core.S, self.core.N), dtype=np.int32) if cfg.preemption else None
        self.prev_t = np.zeros((E, self.core.S), dtype=np.int64)
        self.prev_until = np.zeros((E, self.core.S))
        self.window_start = np.zeros(E, dtype=np.int64)
        self.vis = np.zeros((E, self.K), dtype=np.int64)
        self.ranked = np.zeros((E, self.core.S), dtype=np.int64)
        self._order = VISIBLE_ORDERS.index(cfg.visible_order)
        self._needs_reset = np.ones(E, dtype=bool)

    # ------------------------------------------------------------------ episodes
    def seed(self, seeds: list[int | None]) -> None:
        """Seed env ``i``'s RNG with ``seeds[i]``; ``None`` keeps its current stream (fresh
        entropy from construction, or a stream restored from a checkpoint), as Gymnasium keeps
        ``np_random`` unless reseeded."""
        for i, s in enumerate(seeds):
            if s is not None:
                self.rngs[i] = np.random.default_rng(s)

    def rng(self, i: int) -> np.random.Generator:
        """Env ``i``'s RNG (created from fresh OS entropy on first use when never seeded)."""
        if self.rngs[i] is None:
            self.rngs[i] = np.random.default_rng()
        return self.rngs[i]

    def reset_envs(self, envs: np.ndarray) -> None:
        """Start new episodes in the envs ``envs`` (indices): a fresh window each."""
        envs = np.asarray(envs, dtype=np.int64)
        if len(envs) == 0:
            return
        L = self.cfg.num_jobs
        b = self.base
        hi = b.num_jobs - L
        starts = np.array([self.rng(i).integers(0, hi + 1) for i in envs], dtype=np.int64)
        idx = starts[:, None] + np.arange(L)[None, :]
        submit = b.submit[idx]
        submit = submit - submit[:, :1]
        self.window_start[envs] = starts
        self.core.load(envs, {
            "submit": submit, "work": b.work[idx], "gpus": b.gpus[idx], "model": b.model[idx],
            "min_gpus": b.min_gpus[idx], "max_gpus": b.max_gpus[idx],
            "growth": b.growth[idx] if b.growth is not None else np.ones(idx.shape),
            **({"kind": b.kind[idx]} if b.kind is not None else {}),
            **({"restart": b.restart[idx]} if b.restart is not None else {}),
            "num_jobs": np.full(len(envs), L),
        })
        self._sync_slot_arrays()
        self.repick[envs] = False
        self.steps[envs] = 0
        self.invalid[envs] = 0
        self.ep_return[envs] = 0.0
        self.last_dt[envs] = 0.0
        self.at_round[envs] = False
        self._needs_reset[envs] = False
        self._refresh()

    def _sync_slot_arrays(self) -> None:
        S = self.core.S
        if self.repick.shape[1] == S:
            return
        old = self.repick.shape[1]
        grow = lambda a, fill: np.concatenate([a, np.full((self.E, S - old, *a.shape[2:]), fill, a.dtype)], axis=1)  # noqa: E731
        self.repick = grow(self.repick, False)
        self.prev_t = grow(self.prev_t, 0)
        self.prev_until = grow(self.prev_until, 0.0)
        if self.prev_place is not None:
            self.prev_place = grow(self.prev_place, 0)

    # ------------------------------------------------------------------ observation
    def visible_slots(self) -> np.ndarray:
        """``(E, K)`` slot indices shown to the agent (in ``visible_order``: by default waiting
        and re-pick jobs oldest first, then running jobs oldest first); padded with empty slots.
        Recomputes the mask too."""
        self.mask = self.action_masks()
        return self.vis

    def _refresh(self) -> None:
        """Recompute the visible slots and the action masks after the state changed."""
        self.mask = self.action_masks()
        if self.layout is not None:
            self.alloc_mask = allocate.masks(self.core, self.layout, self.vis, self.reallocating)

    def refresh(self) -> None:
        """Catch up with changes made to the core from outside (attached mode)."""
        self._sync_slot_arrays()
        self._refresh()

    # ------------------------------------------------------------------ read-only state
    @property
    def visible(self) -> np.ndarray:
        """``(E, K)`` slot index shown in each visible position (as of the last refresh)."""
        v = self.vis.view()
        v.flags.writeable = False
        return v

    @property
    def repick_candidates(self) -> np.ndarray:
        """``(E, S)`` jobs taken off their GPUs for the open re-pick phase and not picked again
        yet (all False outside pick mode with preemption)."""
        if self.prev_place is None:
            return np.zeros(self.repick.shape, dtype=bool)
        return self.repick & (self.core.s_status == WAITING)

    @property
    def previous_allocation(self) -> tuple[np.ndarray, np.ndarray]:
        """``(n, t)``, each ``(E, S)``: GPUs and GPU type each re-pick candidate held before the
        re-pick phase opened (meaningful where :attr:`repick_candidates` is True)."""
        if self.prev_place is None:
            return np.zeros(self.repick.shape, dtype=np.int64), np.zeros(self.repick.shape, dtype=np.int64)
        return self.prev_place.sum(axis=2), self.prev_t.copy()

    @property
    def needs_reset(self) -> np.ndarray:
        """``(E,)`` envs whose episode ended (or never began): they must be reset before stepping."""
        v = self._needs_reset.view()
        v.flags.writeable = False
        return v

    @property
    def preempting_now(self) -> np.ndarray:
        """``(E,)`` envs at a round boundary where the env preempts (``preemption=True``)."""
        return self.at_round & bool(self.cfg.preemption)

    @property
    def reallocating(self) -> np.ndarray:
        """``(E,)`` envs where running jobs may lose, keep or change their GPUs now: at round
        boundaries with ``preemption``, at every step with ``preempt_every_event``."""
        return (self.at_round | bool(self.cfg.preempt_every_event)) & bool(self.cfg.preemption)

    def pick(self, e: np.ndarray, a: np.ndarray) -> None:
        """Start the job in visible slot ``a`` of each env ``e`` (allowed picks only)."""
        self._pick(e, self.vis[e, a])
        self._refresh()

    def action_masks(self) -> np.ndarray:
        """``(E, K + 1)`` boolean: which actions are allowed now (pick mode semantics); also
        chooses the visible slots (:attr:`visible`)."""
        c = self.core
        vis = np.empty((self.E, self.K), dtype=np.int64)
        mask = np.empty((self.E, self.K + 1), dtype=bool)
        ranked = np.empty((self.E, c.S), dtype=np.int64)
        observation.visible_and_mask(c.s_status, c.s_job, c.s_gpus, c.free_per_type(), self.repick,
                                     c.next_event(), self.K, self._order, c.s_attained, c.s_work, c.s_done,
                                     vis, mask, ranked)
        self.vis = vis
        self.ranked = ranked
        return mask

    def observe(self) -> tuple[np.ndarray, np.ndarray]:
        """Observations ``(E, obs_dim)`` float32 in [0, 1] and action masks ``(E, mask_size)``
        (features: :mod:`envs.observation`; allocate mode appends its own)."""
        c = self.core
        largest = int(c.s_gpus.max(initial=0))
        if largest >= len(self._gpu_table):
            self._gpu_table = observation.gpu_feature_table(largest, c.total_gpus)
        obs = np.empty((self.E, self.obs_dim), dtype=np.float32)
        observation.observe(self.vis, self.mask, c.s_status, self.repick, c.s_gpus, c.s_submit, c.s_attained,
                            c.s_n, c.s_restart_until, c.s_work, c.s_done, c.s_model, c.s_job, c.clock,
                            c.free_per_type(), c.capacity, self.last_dt, c.n_done, c.n_jobs, self._gpu_table,
                            c.total_gpus, bool(self.cfg.known_durations), float(self.cfg.round_length), self.M,
                            self.F, np.empty(c.s_status.shape), obs)
        if self.layout is not None:
            base = observation_size(self.K, self.T)
            obs[:, base:] = observation.allocate_features(c, self.vis, self.reallocating, self._gpu_table)
            return obs, self.alloc_mask
        return obs, self.mask

    # ------------------------------------------------------------------ actions
    def _reward(self, stats) -> np.ndarray:
        kind, scale = self.cfg.reward, self.cfg.reward_scale
        if kind == "jct":
            return -stats.jobs_time / scale
        if kind == "slowdown":
            return -stats.slowdown_time
        return stats.gpu_time / (self.core.total_gpus * scale)

    def _advance(self, envs: np.ndarray, reward: np.ndarray) -> None:
        """Close re-pick phases, move ``envs`` to their next event, open re-pick phases."""
        c = self.core
        if self.repick[envs].any():
            closing = self.repick & envs[:, None] & (c.s_status == WAITING)
            e, s = np.nonzero(closing)
            c.record_preemptions(e, s)
            self.repick[envs] = False
        stats = c.advance(envs)
        self._sync_slot_arrays()
        reward += np.where(envs, self._reward(stats), 0.0)
        self.last_dt = np.where(envs, stats.dt, self.last_dt)
        self.at_round = np.where(envs, stats.round_hit, self.at_round)
        if self.cfg.preemption and self.cfg.action_mode == "pick":
            opening = stats.round_hit & envs
            if opening.any():
                run = (c.s_status == RUNNING) & opening[:, None]
                e, s = np.nonzero(run)
                self.prev_place[e, s] = c.s_place[e, s]
                self.prev_t[e, s] = c.s_t[e, s]
                self.prev_until[e, s] = c.s_restart_until[e, s]
                c.stop(e, s, preempted=False)
                self.repick[e, s] = True

    def _pick(self, e: np.ndarray, s: np.ndarray) -> None:
        """Start the job in slot ``s`` of each env ``e`` (validity already checked)."""
        c = self.core
        if len(e) == 0:
            return
        req = c.s_gpus[e, s]
        free_t = c.free_per_type()[e]
        room = free_t >= req[:, None]
        # a re-picked job keeps its previous type when it has room (else: the fastest with room)
        keep = None if self.prev_place is None else np.where(self.repick[e, s], self.prev_t[e, s], -1)
        t = fastest_with_room(room, c.speed[c.s_model[e, s]], keep)
        take = None
        in_place = None
        until = None
        if self.prev_place is not None:
            rep = self.repick[e, s]
            prev = self.prev_place[e, s]
            same = rep & (prev <= c.free[e]).all(axis=1)
            # a new placement avoids the nodes that un-picked re-pick candidates still hope for
            reserved = (self.prev_place[e] * (self.repick[e] & (c.s_status[e] == WAITING))[:, :, None]).sum(axis=1)
            reserved -= np.where(rep[:, None], prev, 0)
            avoid = np.maximum(c.free[e] - reserved, 0)
            room_avoid = (avoid @ c.type_onehot)[np.arange(len(e)), t] >= req
            base = np.where(room_avoid[:, None], avoid, c.free[e])
            take = c.placer(base, c.node_type, t, req)
            take = np.where(same[:, None], prev, take)
            t = np.where(same, self.prev_t[e, s], t)
            in_place = same
            until = self.prev_until[e, s]
            self.repick[e, s] = False
        c.start(e, s, t, req, take=take, in_place=in_place, restart_until=until)

    def priority(self, actions: np.ndarray, envs: np.ndarray) -> Priority:
        """Priority mode: the :class:`~envs.policy.Priority` of the scores given to the visible
        slots (``(E, K)``) in the envs ``envs``: non-finite scores leave their job out, scores
        are clipped to [-1, 1], running jobs that are not visible keep their GPUs (score
        ``inf``), and with preemption running jobs compete at round boundaries (at every step
        with ``preempt_every_event``). With ``serve_hidden`` the jobs that are not visible
        rank after the visible ones, in visible order (scores in (-2, -1))."""
        c = self.core
        scores = np.asarray(actions, dtype=np.float64).reshape(self.E, self.K)
        bad = ~np.isfinite(scores)
        full = np.full((self.E, c.S), -np.inf)
        if self.cfg.serve_hidden:
            behind = -1.0 - (1.0 + np.arange(c.S)) / (c.S + 1.0)
            np.put_along_axis(full, self.ranked, np.broadcast_to(behind, full.shape), axis=1)
        else:
            full[c.s_status == RUNNING] = np.inf
        np.put_along_axis(full, self.vis, np.where(bad, -np.inf, np.clip(scores, -1.0, 1.0)), axis=1)
        full[c.s_status == EMPTY] = -np.inf
        if not self.cfg.preemption:
            preempt = np.zeros(self.E, dtype=bool)
        else:
            preempt = envs & (self.at_round | bool(self.cfg.preempt_every_event))
        return Priority(full, preempt=preempt)

    def serve_scores(self, actions: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Priority mode: serve jobs by the scores given to the visible slots (``(E, K)``) as
        :meth:`priority` ranks them. If every score was invalid on an idle cluster, the oldest
        jobs start. Returns the ``(E,)`` envs where that happened."""
        c = self.core
        p = self.priority(actions, envs)
        c.serve(p.scores, preempt=p.preempt, envs=envs)
        stuck = envs & ~np.isfinite(c.next_event()) & (c.s_status == WAITING).any(axis=1)
        if stuck.any():
            self.serve_oldest(stuck)
        return stuck

    def serve_oldest(self, envs: np.ndarray) -> None:
        """The fallback of a stuck env: serve the waiting jobs of the envs ``envs`` oldest first."""
        c = self.core
        c.serve(np.where(c.s_status == WAITING, -c.s_job.astype(float), -np.inf), envs=envs)

    def allocate(self, actions: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Allocate mode: carry out the allocate actions (``(E, K * D)``, :mod:`envs.allocate`) of
        the envs ``envs`` through :func:`envs.policy.execute`. If an env would then be stuck (jobs
        waiting on an idle cluster with nothing left to happen), its oldest waiting jobs start on
        their requested GPUs. Returns the ``(E,)`` envs whose action was invalid (a masked or
        out-of-range value for a present job, or stuck)."""
        c = self.core
        decision, invalid = allocate.lower(c, self.layout, self.vis, self.reallocating, self.alloc_mask, actions, envs)
        execute(c, decision, envs)
        stuck = envs & ~np.isfinite(c.next_event()) & (c.s_status == WAITING).any(axis=1)
        if stuck.any():
            self.serve_oldest(stuck)
        return invalid | stuck

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply one action per env. Returns ``(reward, terminated, truncated, invalid, mask_used)``
        without resetting anything; the adapters handle observations and resets."""
        E, K = self.E, self.K
        c = self.core
        reward = np.zeros(E)
        live = ~c.done
        if self.cfg.action_mode == "pick":
            raw = np.asarray(actions).reshape(E)
            if raw.dtype.kind in "iub":
                a = raw.astype(np.int64)
                in_range = (a >= 0) & (a <= K)
            else:  # a non-integer action (1.7, NaN) is no slot: forbidden, not rounded
                f = np.asarray(raw, dtype=np.float64)
                in_range = (f >= 0) & (f <= K) & (f == np.floor(f))
                a = np.where(in_range, f, 0).astype(np.int64)
            mask = self.mask
            ok = in_range & mask[np.arange(E), np.clip(a, 0, K)]
            invalid = live & ~ok
            # a forbidden action advances time; if advancing is impossible it starts the first
            # startable visible job instead (documented in GpuClusterEnv)
            fallback = mask[:, :K].argmax(axis=1)
            a = np.where(ok, a, np.where(mask[:, K], K, fallback))
            pick = live & (a < K)
            e = np.flatnonzero(pick)
            self._pick(e, self.vis[e, a[e]])
            adv = live & (a == K)
            if adv.any():
                self._advance(adv, reward)
        elif self.cfg.action_mode == "allocate":
            invalid = self.allocate(actions, live)
            self._advance(live, reward)
        else:
            # an action with a non-finite score for any visible job is counted (that job is left out)
            present = np.take_along_axis(c.s_status, self.vis, axis=1) != EMPTY
            bad = ~np.isfinite(np.asarray(actions, dtype=np.float64).reshape(E, K)) & present
            invalid = live & bad.any(axis=1)
            self.serve_scores(actions, live)
            self._advance(live, reward)
        self._refresh()
        self.steps += live
        self.invalid += invalid
        self.ep_return += reward
        terminated = live & c.done
        truncated = live & ~terminated & (self.steps >= self.max_steps)
        self._needs_reset |= terminated | truncated
        return reward, terminated, truncated, invalid, live

    # ------------------------------------------------------------------ results
    def episode_results(self, e: int) -> pd.DataFrame:
        ids = self.base.job_id[self.window_start[e] : self.window_start[e] + self.core.n_jobs[e]]
        return metrics.from_core(self.core, e, ids)

    def episode_metrics(self, e: int) -> dict[str, float]:
        return self.episode_metrics_many(np.array([e]))[0]

    def episode_metrics_many(self, envs: np.ndarray) -> list[dict[str, float]]:
        """The episode metrics of each env in ``envs`` (:func:`envs.metrics.summarize_core_many`)
        with the episode's invalid actions, steps and return."""
        out = metrics.summarize_core_many(self.core, envs)
        for e, m in zip(np.asarray(envs).tolist(), out, strict=True):
            m["invalid_actions"] = float(self.invalid[e])
            m["steps"] = float(self.steps[e])
            m["return"] = float(self.ep_return[e])
        return out
