"""Simulation core, whole-trace replay and the GpuCluster Gymnasium environments."""

from envs.config import SimConfig
from envs.core import AllocationError, ClusterCore
from envs.policy import Allocation, ClusterView, Policy, Priority
from envs.simulate import SimulationResult, simulate, simulate_many
from envs.workload import Workload, make_workload

__all__ = [
    "Allocation",
    "AllocationError",
    "ClusterCore",
    "ClusterView",
    "Policy",
    "Priority",
    "SimConfig",
    "SimulationResult",
    "Workload",
    "make_workload",
    "simulate",
    "simulate_many",
]

from gymnasium.envs.registration import register, registry

from envs.engine import EnvConfig, VectorEngine
from envs.gpu_cluster import GpuClusterEnv, GpuClusterVectorEnv

if "GpuCluster-v0" not in registry:
    register(
        id="GpuCluster-v0",
        entry_point="envs.gpu_cluster:GpuClusterEnv",
        vector_entry_point="envs.gpu_cluster:GpuClusterVectorEnv",
    )

__all__ += ["EnvConfig", "GpuClusterEnv", "GpuClusterVectorEnv", "VectorEngine"]
