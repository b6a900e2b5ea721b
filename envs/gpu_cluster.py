"""GpuCluster-v0: schedule deep-learning training jobs on a GPU cluster.

The single environment and its natively vectorised twin live here, both thin adapters over
:class:`envs.engine.VectorEngine` (the single env is the engine with one env).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs import render as _render
from envs.engine import EnvConfig, VectorEngine

RENDER_MODES = ("ansi", "rgb_array")


def _render_mode(mode: str | None) -> str | None:
    """``mode`` if it is ``None`` or one of :data:`RENDER_MODES`; else ``ValueError``."""
    if mode is not None and mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be None or one of {RENDER_MODES}, got {mode!r}")
    return mode


def _render_env(engine: VectorEngine, e: int, mode: str | None) -> str | np.ndarray | None:
    """Env ``e`` of ``engine`` drawn in ``mode`` (:mod:`envs.render`); ``None`` without a mode."""
    if mode is None:
        return None
    state = _render.snapshot(engine.view, e, order=engine.visible[e], repick=engine.repick_candidates[e],
                             jobs_done=int(engine.core.n_done[e]), num_jobs=int(engine.core.n_jobs[e]))
    return _render.render_text(state) if mode == "ansi" else _render.render_rgb(state)


def _spaces(engine: VectorEngine) -> tuple[spaces.Box, spaces.Space]:
    obs = spaces.Box(0.0, 1.0, shape=(engine.obs_dim,), dtype=np.float32)
    if engine.cfg.action_mode == "pick":
        act: spaces.Space = spaces.Discrete(engine.K + 1)
    elif engine.cfg.action_mode == "allocate":
        act = spaces.MultiDiscrete(engine.layout.nvec)
    else:
        act = spaces.Box(-1.0, 1.0, shape=(engine.K,), dtype=np.float32)
    return obs, act


class GpuClusterEnv(gym.Env):
    """
    ## Description
    A GPU cluster (nodes of one or more GPU types) receives deep-learning training jobs from a
    trace window; the agent decides which waiting jobs start, and with preemption on, which
    running jobs keep their GPUs at each round boundary (in allocate mode also on which GPU type
    and how many GPUs each job runs). Jobs are gangs: a job runs on exactly
    its requested GPUs (one GPU type) or not at all; its speed depends on the model, the GPU
    type and whether its gang is spread over more nodes than needed; a preempted job resumes
    after a restart overhead. Time is event driven: it jumps to the next arrival, completion,
    end of a restart or round boundary.

    ## Action Space
    ``action_mode="pick"`` (default): ``Discrete(K + 1)``. Action ``i < K`` starts the job in
    visible slot ``i`` now (allowed only if it is waiting and fits on some GPU type); several
    picks can happen at one instant. Action ``K`` advances time to the next event. With
    ``preemption=True`` every round boundary opens a re-pick: running jobs become waiting
    candidates again (feature ``repick``), the agent picks the round's set afresh, a job picked
    again keeps its placement and pays nothing, and candidates not picked by the next advance
    are preempted.

    ``action_mode="priority"``: ``Box(-1, 1, (K,))``, a score per visible slot; the core's
    greedy gang allocator starts waiting jobs in score order (backfilling what fits), then time
    advances to the next event. With preemption, at round boundaries running jobs compete too
    and lose their GPUs if outranked (at every step with ``preempt_every_event=True``). Running
    jobs that are not visible keep their GPUs and waiting ones never start, unless
    ``serve_hidden=True``: then every job that is not visible ranks after the visible ones, in
    ``visible_order``, so it backfills free GPUs (and, when preempting, competes for them).

    ``action_mode="allocate"``: ``MultiDiscrete`` of ``K`` groups (one per visible slot) of four
    entries: a job's priority level, GPU type, GPU count and batch-size choice, so an agent can
    make the decisions of heterogeneity-aware and elastic schedulers (Gavel, Pollux, Sia, ...).
    The action is lowered to one :class:`envs.policy.Allocation` and carried out by
    :func:`envs.policy.execute`, the path every baseline takes (:mod:`envs.allocate`).

    ============  ==================  =======================================================
    entry         values              meaning
    ============  ==================  =======================================================
    level         ``0 .. 3``          0: do not run (preempt a running job where allowed);
                                      jobs with higher levels are served first, ties to the
                                      earlier job
    gpu_type      ``0 .. T - 1``      the GPU type (masked to types with at least the job's
                                      ``min_gpus`` GPUs available)
    gpus          ``0 .. C - 1``      ``gpus + 1`` GPUs, ``C`` the largest GPU-type pool
                                      (masked to ``[min_gpus, max_gpus]`` within what an
                                      allowed type has; a rigid job: its request only)
    batch         ``0, 1``            goodput jobs: 1 trains at the goodput-optimal batch size,
                                      0 at its own (plain jobs: 0 only)
    ============  ==================  =======================================================

    Running jobs keep their GPUs (the mask allows only their type and count, and levels above 0)
    except at a preemption point (``preemption=True``: a round boundary, or every step with
    ``preempt_every_event``), where every visible job is decided afresh: a running job given its
    type and count again keeps its placement and pays nothing; another is moved or resized (and
    pays the restart overhead) or, at level 0, preempted. Jobs that are not visible keep their
    GPUs or wait. The mask (``info["action_mask"]``, ``action_masks()``) concatenates the
    per-entry masks of every slot, the layout sb3-contrib's ``MaskablePPO`` takes for
    ``MultiDiscrete`` spaces. Entries are masked one by one, so a choice may still not fit (a
    type and a count each allowed but not together, or two jobs asking for the same GPUs): a job
    that does not get its count of its type takes what is left of its type (at least
    ``min_gpus``), else what is left of the fastest type for its model with room, else nothing.
    Time then advances to the next event.

    A forbidden action never crashes: in pick mode (a masked slot, a number outside ``0..K`` or
    not an integer, e.g. 1.7) it is replaced by *advance* (or, when nothing can happen without a
    start, by the first startable slot); in priority mode non-finite scores (NaN, +-inf) leave
    their job out; in allocate mode a masked, out-of-range or non-integer entry of a present job
    is replaced by the first allowed level or batch choice, the fastest allowed type or the
    nearest allowed count, and if nothing could then happen (jobs waiting on an idle cluster, no
    event pending) the oldest waiting jobs start on their requested GPUs.
    ``info["invalid_actions"]`` counts the episode's forbidden actions: a pick action once, a
    priority action once if any visible job got a non-finite score (scores of empty slots are
    ignored), an allocate action once if it held a forbidden entry for a present job or left the
    env stuck (entries of empty slots are ignored).

    ## Observation Space
    ``Box(0, 1, (K * F + T + 12,), float32)``: ``K`` visible slots of ``F`` features each, then
    the cluster features. Which jobs are visible is ``visible_order``: ``"arrival"`` (default:
    waiting jobs oldest first, then running jobs; a waiting job becomes visible once older
    waiting jobs have started), ``"attained"`` (every active job, least attained GPU-service
    first: LAS's order) or ``"remaining"`` (least remaining work first: SRTF's order; needs
    ``known_durations=True``); ties keep arrival order. Unbounded quantities are squashed with
    ``x / (x + c)`` (``c`` = 3600 s for times, ``K`` for counts). "Known" features are 0 unless
    ``known_durations=True``.

    ================================  ==========================================================
    slot feature (``SLOT_FEATURES``)  meaning
    ================================  ==========================================================
    present, waiting, running         the slot holds a job; its status
    repick, fits                      re-pick candidate (pick mode); may start now (the mask)
    gpus                              requested GPUs, ``log2(1 + g) / log2(1 + cluster GPUs)``
    waited, attained                  time since submission; attained GPU-service (GPU-seconds)
    allocated, restarting             GPUs held / cluster GPUs; paying a restart overhead
    remaining (known)                 remaining work (reference seconds)
    gpu_remaining (known)             remaining GPU-time: remaining work x requested GPUs
    service_rank                      share of the other active jobs with less attained service
    remaining_rank (known)            share of the other active jobs with less remaining work
    model_*                           model one-hot
    ================================  ==========================================================

    ================================  ==========================================================
    cluster feature                   meaning
    ================================  ==========================================================
    free_gpus (one per GPU type)      free GPUs of the type / its capacity
    queued, running                   waiting and running jobs (all of them, visible or not)
    since_last_event, repick_open     time since the last event (scale ``round_length``)
    finished                          fraction of the window's jobs finished
    hidden                            waiting jobs that are not visible
    queue_gpus_mean, queue_gpus_max   ``gpus`` over every waiting job
    queue_waited_mean, _max           ``waited`` over every waiting job
    queue_attained_mean               ``attained`` over every waiting job
    queue_remaining_mean (known)      ``remaining`` over every waiting job
    ================================  ==========================================================

    In allocate mode the observation continues with
    :data:`envs.observation.ALLOCATE_SLOT_FEATURES` for each visible slot (slot-major), then
    :data:`envs.observation.ALLOCATE_CLUSTER_FEATURES` (computed in NumPy,
    :func:`envs.observation.allocate_features`):

    ================================  ==========================================================
    allocate feature                  meaning
    ================================  ==========================================================
    elastic                           the job's GPU count may vary (``min_gpus < max_gpus``)
    min_gpus, max_gpus                its bounds, scaled as ``gpus``
    goodput, adaptive                 a goodput job (:mod:`envs.goodput`); at the optimal batch
    batch_gain                        goodput jobs: ``1 - own / optimal`` goodput at its request
                                      in its current phase (the gain of the adaptive batch)
    phase                             efficiency or dynamic-adaptation phase / phases
    speed (one per GPU type)          its model's speed on the type / on its fastest type
    on_type (one per GPU type)        it holds GPUs of the type
    reallocating (cluster)            running jobs may be moved, resized or preempted now
    largest_free_node (per type)      most free GPUs on one node of the type / largest node
    free_nodes (per type)             share of the type's nodes entirely free
    fragmented_free (per type)        free GPUs on partly used nodes / the type's capacity
    ================================  ==========================================================

    The action mask is in ``info["action_mask"]`` and ``action_masks()``.

    ## Rewards
    ``reward="jct"`` (default): minus the number of jobs in the system times the elapsed time,
    divided by ``reward_scale`` (3600 s): the episode return is minus the total JCT in hours.
    ``"slowdown"``: minus the sum over jobs in the system of elapsed time / job duration (the
    return is minus the total slowdown); durations below
    :data:`envs.metrics.SLOWDOWN_MIN_DURATION` (1 s) count as that floor, so the reward stays
    finite for any positive duration. ``"utilization"``: allocated GPUs / cluster GPUs times
    elapsed time / ``reward_scale``.

    ## Starting State
    A window of ``num_jobs`` consecutive jobs drawn from the trace with the env's RNG and
    re-based to time 0; the cluster is empty. The whole trace was rescaled once to the offered
    ``load`` on the cluster, so windows keep its arrival process (see :mod:`envs.engine`).

    ## Episode End
    Terminates when every job of the window has finished; truncates after ``max_steps`` steps
    (default ``50 * num_jobs``). ``info["episode_metrics"]`` then holds the metrics of DESIGN
    section 6 (avg/median/p95/p99 JCT, makespan, utilisation, rho, ...); after a truncation the
    job metrics cover the finished jobs and utilisation the simulated time (first submit to the
    clock), never exceeding 1.

    ## Jobs Larger Than the Cluster
    A job that requests more GPUs than the largest GPU-type pool of the cluster could never
    start (a gang runs on one GPU type): such jobs are dropped from the trace before its load is
    rescaled and windows are drawn (:func:`envs.workload.drop_oversize`, as
    :func:`envs.simulate` and ``train.py`` do), so every preset works with any trace. How many
    were dropped is :attr:`dropped_jobs`.

    ## Arguments
    ``gym.make("GpuCluster-v0", **options)`` with the fields of :class:`envs.engine.EnvConfig`:
    ``trace`` (``None``: a seeded synthetic Philly-like trace; or a DataFrame / path),
    ``cluster`` (preset name or :class:`traces.ClusterSpec`, default ``"tiny"``: 2 x 4 V100,
    small enough that 64-job windows of a heavy-tailed trace contend), ``num_jobs`` (window
    size, 64), ``load`` (target offered load of the whole trace, 1.0; ``None`` keeps the trace's
    arrivals), ``max_slots`` (K, 32), ``action_mode`` (``"pick"``/``"priority"``/``"allocate"``),
    ``preemption`` (False), ``round_length`` (the env's round period, with preemption),
    ``reward``, ``reward_scale``, ``known_durations`` (False), ``visible_order``
    (``"arrival"``), ``serve_hidden`` (False), ``preempt_every_event`` (False), ``max_steps``, ``trace_jobs`` /
    ``trace_seed`` (size and seed of the synthetic base trace), and ``sim``, the simulator's
    settings (:class:`envs.config.SimConfig`), whose fields may also be given as flat options:
    ``restart_overhead``, ``placer``, ``resources`` (CPU and memory model), ``network`` (link
    contention model), ``dynamic_phases``, ``elastic_fraction``, ``dynamic_fraction`` (jobs
    that speed up as their batch size grows), ``goodput``, ``restart``.

    ## Rendering
    ``render_mode`` (argument of ``__init__`` and ``gym.make``; ``None`` by default, any other
    value raises ``ValueError``): ``"ansi"``: :meth:`render` returns a text view of the current
    state: the clock, each node's GPUs as cells holding the id of their job (its position in the
    window; ``.`` free), the running jobs (GPUs, nodes, attained GPU-seconds, remaining work when
    ``known_durations``) and the first queued jobs in the order the agent sees them, with a
    count of the rest. ``"rgb_array"``: an ``(H, W, 3)`` uint8 image of the same (a grid of GPU
    cells coloured by job, the queue as bars of requested GPUs), drawn with matplotlib's Agg
    canvas. Both come from :mod:`envs.render`; rendering reads the state and changes nothing.

    ## Version History
    * v0: initial version.
    """

    metadata: ClassVar[dict] = {"render_modes": list(RENDER_MODES), "render_fps": 4}

    def __init__(self, *, render_mode: str | None = None, **options: Any) -> None:
        self.render_mode = _render_mode(render_mode)
        self.engine = VectorEngine(1, EnvConfig.from_options(**options))
        self.observation_space, self.action_space = _spaces(self.engine)
        self._mask = np.ones(self.engine.mask_size, dtype=bool)

    @property
    def config(self) -> EnvConfig:
        return self.engine.cfg

    @property
    def dropped_jobs(self) -> int:
        """Jobs of the trace dropped for requesting more GPUs than any GPU-type pool holds."""
        return self.engine.dropped_jobs

    def _info(self) -> dict[str, Any]:
        eng = self.engine
        return {
            "action_mask": self._mask.copy(),
            "clock": float(eng.core.clock[0]),
            "invalid_actions": int(eng.invalid[0]),
            "jobs_done": int(eng.core.n_done[0]),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        eng = self.engine
        if seed is not None:
            eng.rngs[0] = np.random.default_rng(seed)
        eng.reset_envs(np.array([0]))
        obs, mask = eng.observe()
        self._mask = mask[0]
        return obs[0], self._info()

    def step(self, action):
        eng = self.engine
        if eng.needs_reset[0]:
            raise RuntimeError("GpuClusterEnv.step called before reset() or after the episode ended")
        reward, term, trunc, _invalid, _live = eng.step(np.asarray([action]).reshape(1, -1) if eng.cfg.action_mode != "pick" else np.array([action]))
        obs, mask = eng.observe()
        self._mask = mask[0]
        info = self._info()
        if term[0] or trunc[0]:
            info["episode_metrics"] = eng.episode_metrics(0)
        return obs[0], float(reward[0]), bool(term[0]), bool(trunc[0]), info

    def action_masks(self) -> np.ndarray:
        """The allowed actions now (for sb3-contrib's ``MaskablePPO``)."""
        return self._mask.copy()

    def render(self) -> str | np.ndarray | None:
        """The current state as text (``"ansi"``) or an RGB image (``"rgb_array"``); ``None``
        without a render mode (see *Rendering* above)."""
        return _render_env(self.engine, 0, self.render_mode)

    def episode_results(self):
        """Per-job results of the current episode (DataFrame)."""
        return self.engine.episode_results(0)


class GpuClusterVectorEnv(VectorEnv):
    """``num_envs`` GpuCluster environments stepped as one set of NumPy arrays.

    Same options, spaces and dynamics as :class:`GpuClusterEnv`; env ``i`` reset with seed
    ``seed + i`` follows the same trajectory as a single env reset with that seed. Finished envs
    reset within the same step (``autoreset_mode = SAME_STEP``): the returned observation is
    the new episode's first, and ``infos["final_obs"]`` / ``infos["final_info"]`` (masked by
    ``infos["_final_obs"]``) hold the last observation and info of the finished episode,
    including its ``episode_metrics``.

    ``render_mode`` as for :class:`GpuClusterEnv`: :meth:`render` returns one frame per env (a
    tuple, as Gymnasium's ``SyncVectorEnv`` does); an image takes tens of milliseconds, so
    render few envs in ``"rgb_array"`` mode.
    """

    metadata: ClassVar[dict] = {"render_modes": list(RENDER_MODES), "render_fps": 4,
                                "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, *, render_mode: str | None = None, **options: Any) -> None:
        self.render_mode = _render_mode(render_mode)
        self.num_envs = int(num_envs)
        self.engine = VectorEngine(self.num_envs, EnvConfig.from_options(**options))
        self.single_observation_space, self.single_action_space = _spaces(self.engine)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._mask = np.ones((self.num_envs, self.engine.mask_size), dtype=bool)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        eng = self.engine
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
        eng.seed(seeds)
        eng.reset_envs(np.arange(self.num_envs))
        obs, self._mask = eng.observe()
        return obs, self._infos()

    def _infos(self) -> dict[str, Any]:
        eng = self.engine
        ones = np.ones(self.num_envs, dtype=bool)
        return {
            "action_mask": self._mask.copy(), "_action_mask": ones,
            "clock": eng.core.clock.copy(), "_clock": ones,
            "invalid_actions": eng.invalid.copy(), "_invalid_actions": ones,
            "jobs_done": eng.core.n_done.copy(), "_jobs_done": ones,
        }

    def step(self, actions):
        eng = self.engine
        reward, term, trunc, _invalid, _live = eng.step(np.asarray(actions))
        done = term | trunc
        obs, mask = eng.observe()
        infos = {}
        if done.any():
            self._mask = mask
            final_infos = self._infos()
            idx = np.flatnonzero(done)
            final_obs = np.empty(self.num_envs, dtype=object)
            final_info = np.empty(self.num_envs, dtype=object)
            for i, episode in zip(idx, eng.episode_metrics_many(idx), strict=True):
                final_obs[i] = obs[i].copy()
                info_i = {k: v[i] for k, v in final_infos.items() if not k.startswith("_")}
                info_i["episode_metrics"] = episode
                final_info[i] = info_i
            eng.reset_envs(idx)
            obs, mask = eng.observe()
            infos.update({"final_obs": final_obs, "_final_obs": done.copy(),
                          "final_info": final_info, "_final_info": done.copy()})
        self._mask = mask
        infos.update(self._infos())
        return obs, reward, term, trunc, infos

    @property
    def dropped_jobs(self) -> int:
        """Jobs of the trace dropped for requesting more GPUs than any GPU-type pool holds."""
        return self.engine.dropped_jobs

    def action_masks(self) -> np.ndarray:
        """``(num_envs, K + 1)`` allowed actions now."""
        return self._mask.copy()

    def render(self) -> tuple[str | np.ndarray, ...] | None:
        """One frame per env in ``render_mode`` (``None`` without one)."""
        if self.render_mode is None:
            return None
        return tuple(_render_env(self.engine, e, self.render_mode) for e in range(self.num_envs))
