"""The simulation core: many GPU clusters stepped at once as NumPy arrays.

Design
------
Every array has a leading env axis ``E``. Each env has its own clock, workload, cluster state and
episode; a step is array operations across envs. Loops run over *ranks* (the r-th arrival or
the r-th placement of an instant), never over envs.

Jobs live in two tables (every field, its unit and meaning: :mod:`envs.core.state`):

* the **job table** ``(E, J)``: the static workload of each env (submit, work, requested GPUs,
  model, elastic bounds) and its results (first start, finish, preemptions, restarts, ...);
* the **slot table** ``(E, S)``: only the *active* jobs (arrived, not finished). Arrivals take a
  free slot, completions free it, and ``S`` grows when an env needs more. Per-event cost thus
  scales with the number of active jobs, not with the trace length, which is what lets a single
  core replay all 82k Philly jobs in seconds and lets 1,024 envs step together.

Time is event driven (DESIGN section 4): the clock of each env jumps to its next event: an
arrival, a completion, the end of a restart, or a round boundary. Between events allocations are
fixed and progress is ``rate * elapsed`` computed exactly; a restarting job holds its GPUs and
makes no progress until ``restart_until``. Every decision is independent of where a job sits in
the slot table (ties break on the job's position in its workload), so a lone env and the same
env inside a wide batch follow the same trajectory.

Decisions reach the core as allocations: per slot, a GPU count and one GPU type (a synchronous
gang runs on one type; every modelled scheduler assigns one). :meth:`ClusterCore.apply` keeps
the placement of jobs whose allocation is unchanged (no restart), preempts jobs that lose their
GPUs, and places the rest with a pluggable placer (:mod:`envs.placement`). :meth:`greedy` is the
shared gang allocator that serves jobs in priority order. Invalid allocations raise
:class:`AllocationError` before any state changes.

Modules, one per model:

=============  ==============================================================================
``state``      the job and slot tables (schema), storage, loading workloads, arrivals
``clock``      next event, advance, :class:`StepStats`
``rates``      speed model, goodput phases, dynamic adaptation (:func:`growth_multiplier`)
``resources``  CPU and memory grants (Synergy)
``coupling``   GPU sharing and network links (:func:`iteration_factor`)
``allocation`` start, stop, apply, check_allocation, greedy, serve
=============  ==============================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs import placement
from envs.config import SimConfig
from envs.core.allocation import AllocationError, AllocationMixin
from envs.core.clock import ClockMixin, StepStats
from envs.core.coupling import CouplingMixin, iteration_factor, link_loads
from envs.core.rates import RatesMixin, growth_multiplier
from envs.core.resources import ResourcesMixin
from envs.core.state import (
    EMPTY,
    JOB_FIELDS,
    RUNNING,
    SLOT_FIELDS,
    WAITING,
    WORKLOAD_KEYS,
    TablesMixin,
)
from envs.goodput import GoodputTable
from traces import models
from traces.clusters import ClusterSpec

__all__ = ["EMPTY", "JOB_FIELDS", "RUNNING", "SLOT_FIELDS", "WAITING", "WORKLOAD_KEYS", "AllocationError",
           "ClusterCore", "SimConfig", "StepStats", "growth_multiplier", "iteration_factor", "link_loads"]


class ClusterCore(TablesMixin, ClockMixin, RatesMixin, ResourcesMixin, CouplingMixin, AllocationMixin):
    """Vectorised state of ``num_envs`` copies of one cluster spec.

    Arguments: ``cluster`` (spec shared by all envs; each env has its own state),
    ``num_envs``, ``sim`` (the :class:`~envs.config.SimConfig`: restart overhead, round length,
    placer, resource and network models, dynamic phases; its workload settings are for
    :func:`envs.workload.make_workload`), ``min_slots`` (initial slot table width),
    ``goodput`` (the :class:`~envs.goodput.GoodputTable` of goodput jobs; workloads bring
    theirs). Settings may also be given one by one (``restart_overhead=60``); they are folded
    into ``sim``.

    Resource models, off by default (each documented where it acts):

    - ``resources``: CPUs and memory per node (the cluster spec's ``cpus``, ``mem_gb``). A job
      gets CPUs and memory per GPU on each of its nodes (a GPU-proportional share unless the
      allocation asks otherwise, never more than the node has left) and its speed scales by
      :func:`traces.models.cpu_factor` relative to a GPU-proportional share (Synergy).
    - ``network``: each node has one uplink; a job spanning nodes spends a fraction
      ``phi = 1 - LOCALITY[model]`` of its iteration communicating over the links of its nodes
      (:func:`iteration_factor`).
    - GPU sharing is always available through :meth:`apply`'s ``partner``: two jobs on the same
      GPUs run at Gavel's measured pairwise speeds (:data:`traces.models.SHARING`).
    """

    def __init__(
        self,
        cluster: ClusterSpec,
        num_envs: int = 1,
        *,
        sim: SimConfig | None = None,
        min_slots: int = 8,
        goodput: GoodputTable | None = None,
        **settings: Any,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        sim = SimConfig.of(sim, **settings)
        self.sim = sim
        self.cluster = cluster
        self.E = num_envs
        self.restart_overhead = sim.restart_overhead
        self.round_length = sim.round_length
        self.placer = placement.get(sim.placer)
        self.dynamic_phases = sim.dynamic_phases
        # CPU/memory (Synergy), network contention (CASSINI) and GPU sharing (Gavel, Lucid)
        self.resources = sim.resources
        self.network = sim.network
        self.coupled = self.network  # rates depend on other jobs (links, shared GPUs)

        self.gpu_types: tuple[str, ...] = cluster.gpu_types
        self.T = len(self.gpu_types)
        self.node_type = np.array([self.gpu_types.index(g) for g in cluster.nodes["gpu_type"]], dtype=np.int64)
        self.node_cap = cluster.nodes["num_gpus"].to_numpy(np.int64)
        self.N = len(self.node_cap)
        self.type_onehot = (self.node_type[:, None] == np.arange(self.T)[None, :]).astype(np.int64)  # (N, T)
        self.capacity = self.node_cap @ self.type_onehot  # (T,)
        self.total_gpus = int(self.node_cap.sum())
        self.max_node = np.array([self.node_cap[self.node_type == t].max() for t in range(self.T)], dtype=np.int64)
        self.speed = models.speed_matrix(self.gpu_types)  # (M, T)
        self.scaling = models.scaling_vector()
        self.locality = models.locality_vector()
        self.goodput: GoodputTable | None = None
        if goodput is not None:
            self.set_goodput(goodput)
        self.node_cpu = cluster.nodes["cpus"].to_numpy(np.float64)
        self.node_mem = cluster.nodes["mem_gb"].to_numpy(np.float64)
        self.fair_cpu = self.node_cpu / self.node_cap  # CPUs per GPU of a GPU-proportional share
        self.fair_mem = self.node_mem / self.node_cap
        self.comm = models.comm_fraction_vector()
        self.sharing = models.sharing_matrix()

        self._alloc_jobs(1)
        self._alloc_slots(max(8, int(min_slots)))
        self.clock = np.zeros(self.E)
        self.free = np.tile(self.node_cap, (self.E, 1))
        self.free_cpu = np.tile(self.node_cpu, (self.E, 1))
        self.free_mem = np.tile(self.node_mem, (self.E, 1))
        self._dirty = np.zeros(self.E, dtype=bool)
        self.contention = np.zeros(self.E)  # integral of jobs in system over time
        self.gpu_seconds = np.zeros(self.E)
        self.n_active = np.zeros(self.E, dtype=np.int64)
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
