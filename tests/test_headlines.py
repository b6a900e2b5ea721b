"""Cross-policy headline comparisons of the modern schedulers' papers on the Pollux workloads."""

from __future__ import annotations

import pytest

import baselines
import envs
from envs.goodput import SIA_RESTART
from traces import clusters, pollux


@pytest.fixture(scope="module")
def workload6(shared):
    return pollux.load_workload(shared("reference", "pollux", "workloads", "workload-6.csv",
                                       what="the Pollux workloads"))


def sia_mix() -> clusters.ClusterSpec:
    """Sia's simulated 64-GPU shape (6 x 4 T4, 3 x 8 slower, 2 x 8 faster GPUs)."""
    return clusters.from_counts("sia-mix", [("t4", 6, 4, 32, 256), ("k80", 3, 8, 64, 512), ("v100", 2, 8, 64, 512)])


def test_sia_beats_pollux_and_gavel_on_a_heterogeneous_cluster(workload6):
    """Sia (SOSP'23) reports 30-93% lower average JCT than Pollux and Gavel on 3-type clusters."""
    jct = {}
    for name in ("sia", "pollux", "gavel"):
        res = envs.simulate(workload6, sia_mix(), baselines.get(name), restart=SIA_RESTART)
        assert res.metrics["unfinished"] == 0
        jct[name] = res.metrics["avg_jct"]
    assert jct["sia"] < 0.85 * jct["pollux"]
    assert jct["sia"] < 0.7 * jct["gavel"]
