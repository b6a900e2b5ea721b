"""Cluster specifications: a table of nodes, each with a GPU type, GPU count, CPUs and memory.

Presets (:func:`get` by name, or call the function):

- ``tiny`` (2 x 4 V100), ``small`` (8 x 8 V100, 64 GPUs): homogeneous test clusters.
- ``pollux``: the 64-GPU cluster Pollux and Sia evaluate on, 16 nodes x 4 GPUs (T4 in the
  Pollux testbed).
- ``gavel``: a V100/P100/K80 mix in the style of Gavel's simulated cluster (3 x 12 nodes x 4).
- ``gavel_mini``: the same three types, 2 nodes x 4 GPUs each (24 GPUs: short windows contend).
- ``philly``: the Philly machine list (321 x 2 + 231 x 8 GPUs = 2,490). The GPU model was not
  disclosed; its nodes carry the reference type ``v100`` so trace durations replay unchanged.
- ``alibaba_pai``: the Alibaba PAI 2020 GPU inventory (MISC 280 x 8, P100 798 x 2, T4 497 x 2,
  V100 104 x 8, V100M32 135 x 8; CPU-only machines left out).

``philly`` and ``alibaba_pai`` carry their node counts; given ``path`` they read the published
machine file instead (``cluster_machine_list`` / ``pai_machine_spec.csv``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from traces.models import normalize_gpu_type
from traces.schema import TraceError

NODE_COLUMNS = ("node_id", "gpu_type", "num_gpus", "cpus", "mem_gb")


@dataclass(frozen=True)
class ClusterSpec:
    """A cluster: ``nodes`` has one row per node with the columns of :data:`NODE_COLUMNS`."""

    name: str
    nodes: pd.DataFrame

    def __post_init__(self) -> None:
        missing = [c for c in NODE_COLUMNS if c not in self.nodes.columns]
        if missing:
            raise ValueError(f"cluster {self.name!r}: node table lacks columns {missing}")
        if len(self.nodes) == 0:
            raise ValueError(f"cluster {self.name!r}: no nodes")
        types = [normalize_gpu_type(g, source=f"cluster {self.name!r}") for g in self.nodes["gpu_type"]]
        gpus = self.nodes["num_gpus"].to_numpy()
        if (gpus < 1).any() or (gpus != np.round(gpus)).any():
            i = int(np.flatnonzero((gpus < 1) | (gpus != np.round(gpus)))[0])
            raise ValueError(f"cluster {self.name!r}, node {i}: expected >= 1 GPUs, got {gpus[i]}")
        for col, what in (("cpus", "CPUs"), ("mem_gb", "GB of memory")):
            values = pd.to_numeric(self.nodes[col], errors="coerce").to_numpy(np.float64)
            bad = ~(np.isfinite(values) & (values >= 0))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                got = self.nodes[col].iloc[i]
                got = got.item() if isinstance(got, np.generic) else got
                raise ValueError(f"cluster {self.name!r}, node {i}, column {col!r}: expected a finite number "
                                 f">= 0 of {what}, got {got!r}")
        nodes = self.nodes.reset_index(drop=True).copy()
        nodes["gpu_type"] = types
        nodes["num_gpus"] = gpus.astype(np.int64)
        object.__setattr__(self, "nodes", nodes[list(NODE_COLUMNS)])

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def num_gpus(self) -> int:
        return int(self.nodes["num_gpus"].sum())

    @property
    def gpu_types(self) -> tuple[str, ...]:
        """GPU types present, in order of first appearance."""
        return tuple(dict.fromkeys(self.nodes["gpu_type"]))

    def gpus_per_type(self) -> dict[str, int]:
        return {g: int(n) for g, n in self.nodes.groupby("gpu_type", sort=False)["num_gpus"].sum().items()}

    def max_node_gpus(self) -> dict[str, int]:
        return {g: int(n) for g, n in self.nodes.groupby("gpu_type", sort=False)["num_gpus"].max().items()}

    def __repr__(self) -> str:
        parts = ", ".join(f"{g}: {n}" for g, n in self.gpus_per_type().items())
        return f"ClusterSpec({self.name!r}, {self.num_nodes} nodes, {self.num_gpus} GPUs: {parts})"


def from_counts(name: str, groups: list[tuple[str, int, int, int, int]]) -> ClusterSpec:
    """Build a cluster from ``(gpu_type, num_nodes, gpus_per_node, cpus, mem_gb)`` groups."""
    rows = []
    for gpu_type, count, gpus, cpus, mem in groups:
        rows += [(f"{gpu_type}-{i}", gpu_type, gpus, cpus, mem) for i in range(count)]
    return ClusterSpec(name, pd.DataFrame(rows, columns=list(NODE_COLUMNS)))


def homogeneous(num_nodes: int, gpus_per_node: int, gpu_type: str = "v100", *, cpus: int = 64,
                mem_gb: int = 512, name: str | None = None) -> ClusterSpec:
    """``num_nodes`` identical nodes."""
    return from_counts(name or f"{num_nodes}x{gpus_per_node}-{gpu_type}",
                       [(gpu_type, num_nodes, gpus_per_node, cpus, mem_gb)])


def tiny() -> ClusterSpec:
    return homogeneous(2, 4, name="tiny")


def small() -> ClusterSpec:
    return homogeneous(8, 8, name="small")


def pollux() -> ClusterSpec:
    return homogeneous(16, 4, "t4", cpus=48, mem_gb=192, name="pollux")


def gavel() -> ClusterSpec:
    return from_counts("gavel", [("v100", 12, 4, 32, 244), ("p100", 12, 4, 32, 244), ("k80", 12, 4, 32, 244)])


def gavel_mini() -> ClusterSpec:
    """Gavel's three GPU types at a scale where short windows contend: 2 nodes x 4 GPUs each."""
    return from_counts("gavel_mini", [("v100", 2, 4, 32, 244), ("p100", 2, 4, 32, 244), ("k80", 2, 4, 32, 244)])


def philly(path: str | Path | None = None) -> ClusterSpec:
    """The Philly cluster; from the carried counts, or from a ``cluster_machine_list`` file."""
    if path is None:
        return from_counts("philly", [("v100", 321, 2, 24, 256), ("v100", 231, 8, 48, 512)])
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise TraceError(str(path), f"cannot read Philly machine list: {exc}") from exc
    col = next((c for c in df.columns if c.strip().lower() == "number of gpus"), None)
    if col is None or "machineId" not in df.columns:
        raise TraceError(str(path), f"expected columns 'machineId, number of GPUs', got {list(df.columns)}")
    gpus = pd.to_numeric(df[col], errors="coerce")
    if gpus.isna().any():
        i = int(np.flatnonzero(gpus.isna())[0])
        raise TraceError(str(path), f"expected a GPU count, got {df[col].iloc[i]!r}", row=i, column=col)
    keep = gpus > 0
    nodes = pd.DataFrame({"node_id": df["machineId"][keep].astype(str), "gpu_type": "v100",
                          "num_gpus": gpus[keep].astype(int), "cpus": 0, "mem_gb": 0})
    nodes["cpus"] = np.where(nodes["num_gpus"] >= 8, 48, 24)
    nodes["mem_gb"] = np.where(nodes["num_gpus"] >= 8, 512, 256)
    return ClusterSpec("philly", nodes)


def alibaba_pai(path: str | Path | None = None) -> ClusterSpec:
    """The Alibaba PAI 2020 GPU inventory; from carried counts or ``pai_machine_spec.csv``."""
    if path is None:
        return from_counts("alibaba_pai", [
            ("misc", 280, 8, 96, 512), ("p100", 798, 2, 64, 512), ("t4", 497, 2, 96, 512),
            ("v100", 45, 8, 96, 384), ("v100", 59, 8, 96, 512), ("v100m32", 135, 8, 96, 384),
        ])
    cols = ["machine", "gpu_type", "cap_cpu", "cap_mem", "cap_gpu"]
    try:
        df = pd.read_csv(path, header=None, names=cols)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise TraceError(str(path), f"cannot read PAI machine spec: {exc}") from exc
    for c in ("cap_cpu", "cap_mem", "cap_gpu"):
        v = pd.to_numeric(df[c], errors="coerce")
        if v.isna().any():
            i = int(np.flatnonzero(v.isna())[0])
            raise TraceError(str(path), f"expected a number, got {df[c].iloc[i]!r}", row=i, column=c)
        df[c] = v
    df = df[df["cap_gpu"] > 0]
    return ClusterSpec("alibaba_pai", pd.DataFrame({
        "node_id": df["machine"].astype(str), "gpu_type": df["gpu_type"].astype(str),
        "num_gpus": df["cap_gpu"].astype(int), "cpus": df["cap_cpu"].astype(int),
        "mem_gb": df["cap_mem"].astype(int)}))


PRESETS: dict[str, Callable[[], ClusterSpec]] = {
    "tiny": tiny, "small": small, "pollux": pollux, "gavel": gavel, "gavel_mini": gavel_mini, "philly": philly,
    "alibaba_pai": alibaba_pai,
}


def get(cluster: str | ClusterSpec) -> ClusterSpec:
    """A preset by name, or ``cluster`` itself if it already is a :class:`ClusterSpec`."""
    if isinstance(cluster, ClusterSpec):
        return cluster
    if cluster not in PRESETS:
        raise ValueError(f"unknown cluster preset {cluster!r}; presets are {sorted(PRESETS)}")
    return PRESETS[cluster]()
