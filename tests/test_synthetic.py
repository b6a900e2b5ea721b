"""The synthetic generator: Philly calibration, load, determinism, Poisson arrivals, bounds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traces import clusters
from traces.models import MODELS, MULTI_GPU_MODELS
from traces.schema import COLUMNS, validate
from traces.synthetic import PHILLY_DURATION_QUANTILES, duration_mean, synthetic
from traces.windows import offered_load

PHILLY_SINGLE_GPU_FRACTION = 0.931669
PHILLY_MEDIAN_DURATION = 1144.0
PHILLY_MEAN_DURATION = 13135.93


@pytest.fixture(scope="module")
def long_trace() -> pd.DataFrame:
    return synthetic(20_000, load=0.8, cluster="philly", seed=7)


def test_canonical_schema_and_ids(long_trace):
    assert list(long_trace.columns) == list(COLUMNS)
    validate(long_trace, "synthetic")  # passes the validator unchanged
    assert long_trace["job_id"].iloc[0] == "syn-000000"
    assert long_trace["job_id"].iloc[-1] == "syn-019999"
    assert long_trace["submit_time"].iloc[0] == 0.0
    assert (np.diff(long_trace["submit_time"]) >= 0).all()
    assert set(long_trace["model"]) <= set(MODELS)
    assert (long_trace[["vc", "status", "gpu_type"]] == "").all().all()
    users = long_trace["user"]
    assert (users != "").all() and 2 <= users.nunique() <= 50


def test_single_gpu_fraction_matches_philly(long_trace):
    frac = float((long_trace["num_gpus"] == 1).mean())
    assert abs(frac - PHILLY_SINGLE_GPU_FRACTION) < 0.02


def test_duration_median_matches_philly(long_trace):
    median = float(long_trace["duration"].median())
    assert abs(median - PHILLY_MEDIAN_DURATION) / PHILLY_MEDIAN_DURATION < 0.25


def test_durations_heavy_tailed(long_trace):
    d = long_trace["duration"]
    assert d.mean() / d.median() > 5
    assert d.quantile(0.99) / d.median() > 50


def test_duration_distribution_mean_close_to_philly():
    # Analytic mean of the sampled distribution, full range and default range.
    assert duration_mean((1, 5e6)) == pytest.approx(PHILLY_MEAN_DURATION, rel=0.05)
    assert duration_mean() == pytest.approx(PHILLY_MEAN_DURATION, rel=0.05)
    # Large-sample mean agrees with the analytic one.
    d = synthetic(200_000, seed=3)["duration"]
    assert d.mean() == pytest.approx(duration_mean(), rel=0.1)


def test_embedded_quantiles_reproduce_readme_figures():
    q = dict(PHILLY_DURATION_QUANTILES)
    assert q[0.5] == PHILLY_MEDIAN_DURATION
    assert q[0.99] == pytest.approx(254_758.42, abs=1)
    levels = [p for p, _ in PHILLY_DURATION_QUANTILES]
    values = [v for _, v in PHILLY_DURATION_QUANTILES]
    assert levels[0] == 0 and levels[-1] == 1
    assert np.all(np.diff(levels) > 0) and np.all(np.diff(values) > 0)


@pytest.mark.parametrize(
    ("load", "cluster"),
    [(0.3, "small"), (0.8, "small"), (1.5, "tiny"), (0.8, "philly"), (1.0, "alibaba_pai"), (0.6, 100)],
)
def test_hits_target_load(load, cluster):
    trace = synthetic(20_000, load=load, cluster=cluster, seed=11)
    assert offered_load(trace, cluster) == pytest.approx(load, rel=0.05)
    # The Poisson process is drawn at the target rate: the correcting factor stays near 1.
    assert 0.7 < trace.attrs["synthetic"]["scale"] < 1.3


def test_load_scales_arrivals_not_jobs():
    low = synthetic(2_000, load=0.4, seed=5)
    high = synthetic(2_000, load=0.8, seed=5)
    pd.testing.assert_series_equal(low["duration"], high["duration"])
    pd.testing.assert_series_equal(low["num_gpus"], high["num_gpus"])
    np.testing.assert_allclose(low["submit_time"].to_numpy(), 2 * high["submit_time"].to_numpy())


def test_same_seed_identical_different_seed_different():
    a = synthetic(3_000, seed=42)
    b = synthetic(3_000, seed=42)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs == b.attrs
    c = synthetic(3_000, seed=43)
    assert not a["duration"].equals(c["duration"])
    assert not a["submit_time"].equals(c["submit_time"])


def test_arrivals_poisson_like(long_trace):
    gaps = np.diff(long_trace["submit_time"].to_numpy())
    cv = gaps.std() / gaps.mean()
    assert abs(cv - 1.0) < 0.05
    # Exponential gaps: P(gap > mean) = 1/e.
    assert abs((gaps > gaps.mean()).mean() - np.exp(-1)) < 0.02
    # Independent gaps: no lag-1 autocorrelation.
    assert abs(np.corrcoef(gaps[:-1], gaps[1:])[0, 1]) < 0.05


@pytest.mark.parametrize("cluster", ["tiny", "small", "pollux", 3])
def test_no_job_larger_than_cluster(cluster):
    trace = synthetic(20_000, cluster=cluster, seed=1)
    gpus = clusters.get(cluster).num_gpus if isinstance(cluster, str) else cluster
    assert trace["num_gpus"].max() <= gpus
    assert (trace["num_gpus"] > 1).any()


def test_max_gpus_caps_job_size_and_keeps_shape():
    trace = synthetic(20_000, cluster="philly", max_gpus=4, seed=2)
    assert set(trace["num_gpus"]) == {1, 2, 4}
    # Conditioning on n <= 4: 76,627 / (76,627 + 1,818 + 1,870).
    assert (trace["num_gpus"] == 1).mean() == pytest.approx(76_627 / 80_315, abs=0.01)
    assert synthetic(500, max_gpus=1)["num_gpus"].eq(1).all()


def test_large_cluster_draws_large_jobs():
    trace = synthetic(200_000, cluster="philly", seed=4)
    assert trace["num_gpus"].max() >= 64
    assert {1, 2, 4, 8, 16, 32} <= set(trace["num_gpus"])


def test_multi_gpu_jobs_get_scalable_models(long_trace):
    multi = long_trace[long_trace["num_gpus"] > 1]
    assert len(multi) > 0
    assert set(multi["model"]) <= set(MULTI_GPU_MODELS)


def test_duration_range_is_respected_without_pileup():
    trace = synthetic(20_000, duration_range=(100, 10_000), seed=9)
    d = trace["duration"]
    assert d.min() >= 100 and d.max() <= 10_000
    # Conditioned, not clipped: no mass piled up on the bounds.
    assert (d == 100).mean() < 0.001 and (d == 10_000).mean() < 0.001


@settings(max_examples=25, deadline=None)
@given(
    num_jobs=st.integers(1, 300),
    load=st.floats(0.05, 5.0),
    seed=st.integers(0, 2**32 - 1),
    cluster=st.sampled_from(["tiny", "small", "gavel", 16]),
)
def test_property_valid_and_on_target(num_jobs, load, seed, cluster):
    trace = synthetic(num_jobs, load=load, cluster=cluster, seed=seed)
    assert len(trace) == num_jobs
    assert trace["submit_time"].iloc[0] == 0.0
    cap = clusters.get(cluster).num_gpus if isinstance(cluster, str) else cluster
    assert trace["num_gpus"].max() <= cap
    assert trace["duration"].between(10, 30 * 86400).all()
    if num_jobs >= 2:
        assert offered_load(trace, cluster) == pytest.approx(load, rel=1e-9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_jobs": 0},
        {"num_jobs": -5},
        {"num_jobs": 2.5},
        {"load": 0},
        {"load": -0.5},
        {"load": float("inf")},
        {"load": float("nan")},
        {"max_gpus": 0},
        {"duration_range": (0, 100)},
        {"duration_range": (100, 10)},
        {"duration_range": (1e7, 2e7)},
        {"cluster": "no-such-cluster"},
        {"cluster": 0},
    ],
)
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        synthetic(**kwargs)

