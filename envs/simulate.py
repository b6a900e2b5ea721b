"""Whole-trace replay: :func:`simulate` runs one trace under one policy on the core API;
:func:`simulate_many` runs many traces as the envs of one core, one decision for all per step."""

from __future__ import annotations

import importlib
import numbers
import time
from collections.abc import Sequence
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
    return simulate_many([trace], cluster, policy, sim=sim, known_durations=known_durations, seeds=[seed],
                         progress=progress, **settings)[0]


def simulate_many(
    traces: Sequence[pd.DataFrame],
    cluster: str | ClusterSpec,
    policy: Policy | str,
    *,
    sim: SimConfig | None = None,
    known_durations: bool = True,
    seeds: Sequence[int] | int = 0,
    progress: bool = False,
    **settings: Any,
) -> list[SimulationResult]:
    """:func:`simulate` of each trace of ``traces`` (with the seed of the same position in
    ``seeds``, or one seed for all), as the envs of one core stepped together: one decision of
    ``policy`` per step serves every env (policies are vectorised over envs), so many short
    episodes cost about as many decisions as the longest one. Each env's jobs, events and metrics
    are its own; ``wall_time`` is the whole batch's. Finished envs wait (they are not advanced).

    Equal to one :func:`simulate` per trace wherever the policy's decision for an env depends only
    on that env (every baseline's; a neural policy evaluated on a batch may round its last bits
    differently from one evaluated on a single row).
    """
    sim = SimConfig.of(sim, **settings)
    traces = list(traces)
    if not traces:
        raise ValueError("simulate_many: no traces given")
    seeds = [seeds] * len(traces) if isinstance(seeds, numbers.Integral) else list(seeds)
    if len(seeds) != len(traces):
        raise ValueError(f"simulate_many: {len(traces)} traces but {len(seeds)} seeds")
    for seed in seeds:
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"simulate: seed must be an integer >= 0, got {seed!r}")
    if isinstance(policy, str):
        policy = policy_by_name(policy)
    spec = clusters.get(cluster)
    workloads, dropped = [], []
    for trace, seed in zip(traces, seeds, strict=True):
        trace, d = drop_oversize(trace, spec, goodput=sim.goodput)
        dropped.append(d)
        workloads.append(make_workload(trace, spec, seed=seed, elastic_fraction=sim.elastic_fraction,
                                       goodput=sim.goodput, restart=sim.restart, dynamic_fraction=sim.dynamic_fraction))
    if sim.round_length is None:
        sim = sim.replace(round_length=policy.round_length)
    E = len(workloads)
    core = ClusterCore(spec, E, sim=sim)
    view = ClusterView(core, known_durations=known_durations)
    policy.reset(view)
    core.load(np.arange(E), workloads)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(w.num_jobs for w in workloads), desc=f"simulate {getattr(policy, 'name', 'policy')}",
                   unit="job")
    events = np.zeros(E, dtype=np.int64)
    start = time.perf_counter()
    live = ~core.done
    while live.any():
        policy.prepare(view)
        execute(core, policy.decide(view))
        stuck = live & ~np.isfinite(core.next_event())
        if stuck.any():
            e = int(np.flatnonzero(stuck)[0])
            where = f" (trace {e})" if E > 1 else ""
            raise RuntimeError(
                f"policy {getattr(policy, 'name', policy)!r} left {int(core.n_active[e])} job(s) waiting "
                f"on an idle cluster at t={core.clock[e]:.1f}s with no future event (deadlock){where}"
            )
        stats = core.advance(live)
        view.at_round_boundary = stats.round_hit & live
        events += live
        if bar is not None and stats.completed.any():
            bar.update(int(stats.completed[live].sum()))
        live = ~core.done
    wall = time.perf_counter() - start
    if bar is not None:
        bar.close()
    out = []
    for e, workload in enumerate(workloads):
        jobs = metrics.from_core(core, e, workload.job_id)
        summary = metrics.summarize(jobs, spec.num_gpus)
        out.append(SimulationResult(jobs, summary, int(events[e]), wall,
                                    {"policy": getattr(policy, "name", str(policy)), "cluster": spec.name,
                                     "dropped_jobs": dropped[e]}))
    return out
