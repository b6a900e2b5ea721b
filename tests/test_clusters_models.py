"""Cluster presets and machine files against the published figures; the model throughput table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import require_shared
from hypothesis import given, settings
from hypothesis import strategies as st

from traces import clusters, models
from traces.paths import GAVEL_THROUGHPUTS, PAI_MACHINES, PHILLY_MACHINES

# Figures from ../shared/traces/README.md.
PHILLY_NODES = {2: 321, 8: 231}  # GPUs per machine -> machines
PAI_GPUS_PER_TYPE = {"misc": 280 * 8, "p100": 798 * 2, "t4": 497 * 2, "v100": 104 * 8, "v100m32": 135 * 8}
PAI_NODES_PER_TYPE = {"misc": 280, "p100": 798, "t4": 497, "v100": 104, "v100m32": 135}


def shared_or_skip(parts: tuple[str, ...]):
    return require_shared(*parts)


def node_histogram(spec: clusters.ClusterSpec) -> dict[int, int]:
    return {int(k): int(v) for k, v in spec.nodes["num_gpus"].value_counts().items()}


def nodes_per_type(spec: clusters.ClusterSpec) -> dict[str, int]:
    return {str(k): int(v) for k, v in spec.nodes["gpu_type"].value_counts().items()}


# --- presets --------------------------------------------------------------------------------


def test_philly_preset_matches_readme():
    spec = clusters.get("philly")
    assert spec.num_nodes == 552
    assert spec.num_gpus == 2490
    assert node_histogram(spec) == PHILLY_NODES
    assert spec.gpus_per_type() == {"v100": 2490}


def test_pai_preset_matches_readme():
    spec = clusters.get("alibaba_pai")
    assert spec.num_nodes == 1897 - 83 == 1814
    assert spec.num_gpus == 6742
    assert spec.gpus_per_type() == PAI_GPUS_PER_TYPE
    assert nodes_per_type(spec) == PAI_NODES_PER_TYPE
    assert spec.max_node_gpus() == {"misc": 8, "p100": 2, "t4": 2, "v100": 8, "v100m32": 8}


@pytest.mark.parametrize(
    ("name", "nodes", "gpus"),
    [("tiny", 2, 8), ("small", 8, 64), ("pollux", 16, 64), ("gavel", 36, 144)],
)
def test_small_presets(name, nodes, gpus):
    spec = clusters.get(name)
    assert (spec.num_nodes, spec.num_gpus) == (nodes, gpus)


def test_get_passes_specs_through_and_rejects_unknown_names():
    spec = clusters.small()
    assert clusters.get(spec) is spec
    with pytest.raises(ValueError, match="unknown cluster preset"):
        clusters.get("no-such-cluster")


# --- real machine files ---------------------------------------------------------------------


def test_philly_machine_list_equals_preset():
    spec = clusters.philly(shared_or_skip(PHILLY_MACHINES))
    preset = clusters.philly()
    assert spec.gpus_per_type() == preset.gpus_per_type() == {"v100": 2490}
    assert spec.num_nodes == preset.num_nodes == 552
    assert node_histogram(spec) == node_histogram(preset) == PHILLY_NODES


def test_pai_machine_spec_equals_preset():
    path = shared_or_skip(PAI_MACHINES)
    raw = pd.read_csv(path, header=None)
    assert len(raw) == 1897 and int((raw[4] == 0).sum()) == 83  # 83 CPU-only machines
    spec = clusters.alibaba_pai(path)
    preset = clusters.alibaba_pai()
    assert spec.gpus_per_type() == preset.gpus_per_type() == PAI_GPUS_PER_TYPE
    assert nodes_per_type(spec) == nodes_per_type(preset) == PAI_NODES_PER_TYPE
    assert spec.num_nodes == 1814 and spec.num_gpus == 6742
    # CPUs and memory per node type as carried by the preset (V100: 45 x 384 GB, 59 x 512 GB).
    def profile(s):
        return sorted(map(tuple, s.nodes[["gpu_type", "num_gpus", "cpus", "mem_gb"]].to_numpy().tolist()))

    assert profile(spec) == profile(preset)


# --- ClusterSpec validation ---------------------------------------------------------------


def nodes(gpu_types, gpus):
    n = len(gpus)
    return pd.DataFrame({"node_id": [f"n{i}" for i in range(n)], "gpu_type": gpu_types,
                         "num_gpus": gpus, "cpus": [32] * n, "mem_gb": [256] * n})


def test_cluster_spec_normalises_gpu_types():
    spec = clusters.ClusterSpec("mixed", nodes(["V100", " P100 ", "T4"], [8, 4, 2]))
    assert spec.gpu_types == ("v100", "p100", "t4")
    assert spec.num_gpus == 14


def test_cluster_spec_rejects_unknown_gpu_type():
    with pytest.raises(ValueError, match="unknown GPU type 'H100'"):
        clusters.ClusterSpec("bad", nodes(["v100", "H100"], [8, 8]))


@pytest.mark.parametrize("bad", [0, -2, 2.5])
def test_cluster_spec_rejects_bad_gpu_counts(bad):
    with pytest.raises(ValueError, match="node 1"):
        clusters.ClusterSpec("bad", nodes(["v100", "v100"], [8, bad]))


def test_cluster_spec_rejects_empty_and_incomplete_tables():
    with pytest.raises(ValueError, match="no nodes"):
        clusters.ClusterSpec("empty", nodes([], []))
    with pytest.raises(ValueError, match="lacks columns"):
        clusters.ClusterSpec("partial", nodes(["v100"], [8]).drop(columns="mem_gb"))


# --- model throughput table -----------------------------------------------------------------


def test_throughput_table_matches_gavel_measurements():
    derived = models.derive_from_gavel(shared_or_skip(GAVEL_THROUGHPUTS))
    assert set(derived["speed"]) == set(models.MODELS)
    for m in models.MODELS:
        assert set(derived["speed"][m]) == set(models.MEASURED_GPUS)
        for g in models.MEASURED_GPUS:
            assert derived["speed"][m][g] == pytest.approx(models.SPEED[m][g], abs=5e-4), (m, g)
        assert derived["scaling"][m] == pytest.approx(models.SCALING[m], abs=5e-4), m
        assert derived["locality"][m] == pytest.approx(models.LOCALITY[m], abs=5e-4), m
        for p in models.MODELS:
            assert derived["sharing"][m][p] == pytest.approx(models.SHARING[m][p], abs=5e-4), (m, p)


def test_cpu_and_memory_sensitivity():
    idx = {m: models.model_index(m) for m in models.MODELS}
    f = lambda m, c, mem=64.0: float(models.cpu_factor(np.array(idx[m]), c, mem))  # noqa: E731
    # at the knee with enough memory: exactly the nominal speed; Synergy's ideal points
    assert f("resnet18", 3.0) == 1.0 and f("resnet18", 9.0) == pytest.approx(2.4) and f("resnet18", 24.0) == pytest.approx(2.4)
    assert f("transformer", 1.0) == f("transformer", 12.0) == 1.0  # language models gain nothing
    assert f("resnet50", 1.5) == pytest.approx(0.5)  # starved below the knee
    assert f("resnet18", 3.0, 31.25) == pytest.approx(0.5)  # half the memory it caches with
    # non-decreasing in CPUs for every model
    c = np.linspace(0, 24, 97)
    for m in models.MODELS:
        assert (np.diff(models.cpu_factor(np.full(c.shape, idx[m]), c, 64.0)) >= -1e-12).all()


def test_every_gpu_type_has_figures():
    mat = models.speed_matrix(list(models.GPU_TYPES))
    assert mat.shape == (len(models.MODELS), len(models.GPU_TYPES))
    assert np.all(mat > 0)
    ref = models.GPU_TYPES.index(models.REFERENCE_GPU)
    assert np.all(mat[:, ref] == 1.0)


def trace_with(models_col, gpus):
    n = len(gpus)
    return pd.DataFrame({"job_id": [f"j{i}" for i in range(n)], "submit_time": np.arange(n, dtype=float),
                         "duration": 60.0, "num_gpus": gpus, "user": "", "vc": "", "status": "",
                         "gpu_type": "", "model": models_col})


def test_with_models_deterministic_and_seeded():
    gpus = [1, 2, 1, 4, 8, 1, 1, 16] * 25
    t = trace_with([""] * len(gpus), gpus)
    a = models.with_models(t, seed=3)
    b = models.with_models(t, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a["model"].equals(models.with_models(t, seed=4)["model"])
    assert (t["model"] == "").all()  # input left unchanged


def test_with_models_keeps_given_models():
    t = trace_with(["ResNet50", "", " lm ", ""], [1, 1, 4, 2])
    out = models.with_models(t, seed=0)
    assert out["model"].iloc[0] == "resnet50"
    assert out["model"].iloc[2] == "lm"
    assert out["model"].iloc[1] in models.MODELS
    assert out["model"].iloc[3] in models.MULTI_GPU_MODELS


def test_with_models_rejects_unknown_model():
    t = trace_with(["resnet18", "bert"], [1, 1])
    with pytest.raises(ValueError, match=r"row 1.*'bert'"):
        models.with_models(t)


@settings(max_examples=50, deadline=None)
@given(
    gpus=st.lists(st.sampled_from([1, 2, 3, 4, 8, 16, 64]), min_size=1, max_size=200),
    seed=st.integers(0, 2**32 - 1),
)
def test_multi_gpu_jobs_never_get_single_gpu_models(gpus, seed):
    drawn = models.assign_models(np.array(gpus), np.random.default_rng(seed))
    gpus = np.array(gpus)
    single_only = set(models.MODELS) - set(models.MULTI_GPU_MODELS)
    assert single_only  # the table does have single-GPU-only models
    assert not (set(drawn[gpus > 1]) & single_only)
    assert set(drawn) <= set(models.MODELS)
    filled = models.with_models(trace_with([""] * len(gpus), list(gpus)), seed=seed)
    assert set(filled["model"][gpus > 1]) <= set(models.MULTI_GPU_MODELS)


def test_single_gpu_jobs_draw_all_models():
    drawn = models.assign_models(np.ones(5000, dtype=int), np.random.default_rng(0))
    assert set(drawn) == set(models.MODELS)


def test_unknown_model_index_and_gpu_type():
    assert models.MODELS[models.model_index("Transformer")] == "transformer"
    with pytest.raises(ValueError):
        models.model_index("bert")
    with pytest.raises(ValueError):
        models.normalize_gpu_type("a100")
