"""Whole-trace replay: :func:`simulate` runs one trace under one policy on the core API."""

from __future__ import annotations

import importlib
import numbers
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from envs import metrics
from envs.config import SimConfig
from envs.core import ClusterCore
from envs.policy import ClusterView, Policy, execute
from envs.workload import drop_oversize, make_workload
from traces import clusters
from traces.clusters import ClusterSpec

#: where :func:`simulate` looks up a policy given by name (``"module:function"``), loaded on first
#: use as ``gym.make`` loads an env's entry point: the baselines build on envs, so envs names them
#: only here
POLICY_ENTRY_POINT = "baselines:get"


def policy_by_name(name: str) -> Policy:
    """A fresh policy from its name, through :data:`POLICY_ENTRY_POINT` (:func:`baselines.get`:
    ``ValueError`` for an unknown name)."""
    module, attr = POLICY_ENTRY_POINT.split(":")
    return getattr(importlib.import_module(module), attr)(name)


@dataclass
class SimulationResult:
    """Per-job results, the metrics of DESIGN section 6, and run statistics."""

    jobs: pd.DataFrame
    metrics: dict[str, float]
    events: int
    wall_time: float
    info: dict = field(default_factory=dict)


def simulate(
    trace: pd.DataFrame,
    cluster: str | ClusterSpec,
    policy: Policy | str,
    *,
    sim: SimConfig | None = None,
    known_durations: bool = True,
    seed: int = 0,
    progress: bool = False,
    **settings: Any,
) -> SimulationResult:
    """Replay every job of ``trace`` on ``cluster`` under ``policy`` until all have finished.

    ``cluster`` is a :class:`~traces.clusters.ClusterSpec` or a preset name; ``policy`` a
    :class:`~envs.policy.Policy` or a baseline name (:func:`baselines.get`). Jobs requesting
    more GPUs than the largest GPU-type pool could never start: they are dropped
    (:func:`envs.workload.drop_oversize`) and counted in ``info["dropped_jobs"]``.

    ``sim`` holds the simulator's settings (:class:`envs.config.SimConfig`: restart overhead,
    round length, placer, resource and network models, and how the workload is shaped);
    settings may also be given one by one (``restart_overhead=60``), folded into ``sim``. Its
    ``round_length`` defaults to the policy's own. ``known_durations`` says whether the policy
    may read job durations. ``seed`` (an integer >= 0) drives the model draw for jobs without
    one and the elastic and dynamic draws.

    The policy is asked for a decision at every event (arrival, completion, end of a restart,
    round boundary). Raises ``RuntimeError`` if the policy leaves jobs waiting on an idle
    cluster with nothing left to happen (a deadlock) rather than looping forever.
    """
    sim = SimConfig.of(sim, **settings)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"simulate: seed must be an integer >= 0, got {seed!r}")
    if isinstance(policy, str):
        policy = policy_by_name(policy)
    spec = clusters.get(cluster)
    trace, dropped = drop_oversize(trace, spec, goodput=sim.goodput)
    workload = make_workload(trace, spec, seed=seed, elastic_fraction=sim.elastic_fraction, goodput=sim.goodput,
                             restart=sim.restart, dynamic_fraction=sim.dynamic_fraction)
    if sim.round_length is None:
        sim = sim.replace(round_length=policy.round_length)
    core = ClusterCore(spec, 1, sim=sim)
    view = ClusterView(core, known_durations=known_durations)
    policy.reset(view)
    core.load(np.array([0]), [workload])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=workload.num_jobs, desc=f"simulate {getattr(policy, 'name', 'policy')}", unit="job")
    events = 0
    start = time.perf_counter()
    while not core.done[0]:
        policy.prepare(view)
        execute(core, policy.decide(view))
        if not np.isfinite(core.next_event()[0]):
            raise RuntimeError(
                f"policy {getattr(policy, 'name', policy)!r} left {int(core.n_active[0])} job(s) waiting "
                f"on an idle cluster at t={core.clock[0]:.1f}s with no future event (deadlock)"
            )
        stats = core.advance()
        view.at_round_boundary = stats.round_hit
        events += 1
        if bar is not None and stats.completed[0]:
            bar.update(int(stats.completed[0]))
    wall = time.perf_counter() - start
    if bar is not None:
        bar.close()
    jobs = metrics.from_core(core, 0, workload.job_id)
    summary = metrics.summarize(jobs, spec.num_gpus)
    return SimulationResult(jobs, summary, events, wall, {"policy": getattr(policy, "name", str(policy)), "cluster": spec.name,
                                                     "dropped_jobs": dropped})
