"""Trace windows and offered load, on small hand-made job tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traces import clusters
from traces.schema import validate
from traces.windows import offered_load, window


def make_trace(submits, durations=None, gpus=None) -> pd.DataFrame:
    n = len(submits)
    return validate(
        pd.DataFrame({
            "job_id": [f"j{i}" for i in range(n)],
            "submit_time": submits,
            "duration": durations if durations is not None else [100.0] * n,
            "num_gpus": gpus if gpus is not None else [1] * n,
            "user": ["alice", "bob"] * (n // 2) + ["alice"] * (n % 2),
            "vc": "vc1",
            "status": "Pass",
            "gpu_type": "",
            "model": "",
        }),
        "hand-made",
    )


@pytest.fixture
def trace() -> pd.DataFrame:
    # 10 jobs at 0, 10, ..., 90 s; job i runs 100 * (i + 1) s on 1, 2, 1, 2, ... GPUs.
    return make_trace(
        [10.0 * i for i in range(10)],
        [100.0 * (i + 1) for i in range(10)],
        [1, 2] * 5,
    )


def ids(df) -> list[str]:
    return list(df["job_id"])


# --- offered_load ---------------------------------------------------------------------------


def test_offered_load_formula(trace):
    # mean GPU-seconds = mean(100 * (i + 1) * [1, 2, ...]); mean gap 10 s.
    gpu_seconds = np.array([100.0 * (i + 1) * (1 + i % 2) for i in range(10)])
    expected = gpu_seconds.mean() / (8 * 10.0)
    assert offered_load(trace, 8) == pytest.approx(expected)
    assert offered_load(trace, "tiny") == pytest.approx(expected)  # tiny has 8 GPUs
    assert offered_load(trace, clusters.small()) == pytest.approx(gpu_seconds.mean() / (64 * 10.0))


def test_offered_load_uses_first_to_last_span():
    # Irregular gaps: mean inter-arrival = (last - first) / (n - 1), independent of the middle.
    a = make_trace([5.0, 6.0, 7.0, 35.0])
    b = make_trace([5.0, 25.0, 30.0, 35.0])
    assert offered_load(a, 1) == offered_load(b, 1) == pytest.approx(100.0 / 10.0)


def test_offered_load_edge_cases():
    with pytest.raises(ValueError, match="at least 2 jobs"):
        offered_load(make_trace([0.0]), 8)
    assert offered_load(make_trace([3.0, 3.0]), 8) == np.inf
    with pytest.raises(ValueError):
        offered_load(make_trace([0.0, 1.0]), 0)
    with pytest.raises(ValueError):
        offered_load(make_trace([0.0, 1.0]), "no-such-cluster")


# --- selection ----------------------------------------------------------------------------


def test_num_jobs_selection_and_rebase(trace):
    w = window(trace, start=25.0, num_jobs=3)
    assert ids(w) == ["j3", "j4", "j5"]
    assert list(w["submit_time"]) == [0.0, 10.0, 20.0]
    assert list(w["duration"]) == [400.0, 500.0, 600.0]
    assert list(w["num_gpus"]) == [2, 1, 2]
    assert list(w["user"]) == ["bob", "alice", "bob"]


def test_start_exactly_on_a_submit_is_included(trace):
    assert ids(window(trace, start=30.0, num_jobs=2)) == ["j3", "j4"]


def test_span_selection_is_half_open(trace):
    w = window(trace, start=20.0, span=30.0)  # submits 20, 30, 40; 50 is excluded
    assert ids(w) == ["j2", "j3", "j4"]
    assert list(w["submit_time"]) == [0.0, 10.0, 20.0]
    assert ids(window(trace, start=0.0, span=np.inf)) == ids(trace)


def test_rebases_to_first_selected_job_not_to_start(trace):
    w = window(trace, start=41.0, span=30.0)  # submits 50, 60, 70
    assert ids(w) == ["j5", "j6", "j7"]
    assert w["submit_time"].iloc[0] == 0.0
    assert w.attrs["window"]["offset"] == 50.0


def test_whole_trace_window_is_the_trace(trace):
    w = window(trace, num_jobs=len(trace))
    pd.testing.assert_frame_equal(w, trace)


def test_result_is_valid_and_records_arguments(trace):
    trace.attrs["source"] = "hand-made"
    w = window(trace, start=10.0, num_jobs=4, load=0.5, cluster="tiny")
    pd.testing.assert_frame_equal(validate(w, "again"), w)
    rec = w.attrs["window"]
    assert rec["start"] == 10.0 and rec["num_jobs"] == 4 and rec["span"] is None
    assert rec["load"] == 0.5 and rec["cluster"] == "tiny" and rec["offset"] == 10.0
    assert rec["scale"] == pytest.approx(offered_load(window(trace, 10.0, 4), 8) / 0.5)
    assert w.attrs["source"] == "hand-made"
    assert "window" not in trace.attrs  # the input is not modified


def test_input_not_modified(trace):
    before = trace.copy()
    window(trace, start=15.0, num_jobs=5, load=2.0, cluster=4)
    pd.testing.assert_frame_equal(trace, before)


# --- load rescaling -----------------------------------------------------------------------


@pytest.mark.parametrize("cluster", [8, "tiny", "small", clusters.gavel()])
@pytest.mark.parametrize("load", [0.1, 0.9, 3.0])
def test_load_rescaling_hits_target(trace, load, cluster):
    w = window(trace, start=20.0, num_jobs=6, load=load, cluster=cluster)
    assert offered_load(w, cluster) == pytest.approx(load, rel=1e-12)
    # One factor on every gap: relative spacing, durations and sizes unchanged.
    plain = window(trace, start=20.0, num_jobs=6)
    scale = w.attrs["window"]["scale"]
    np.testing.assert_allclose(w["submit_time"], plain["submit_time"] * scale)
    pd.testing.assert_series_equal(w["duration"], plain["duration"])
    pd.testing.assert_series_equal(w["num_gpus"], plain["num_gpus"])


def test_doubling_load_halves_gaps(trace):
    a = window(trace, num_jobs=10, load=1.0, cluster=8)
    b = window(trace, num_jobs=10, load=2.0, cluster=8)
    np.testing.assert_allclose(a["submit_time"], 2 * b["submit_time"])


@settings(max_examples=50, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 1e4), min_size=2, max_size=40),
    durations=st.data(),
    start_frac=st.floats(0.0, 1.0),
    load=st.floats(1e-3, 1e3),
    gpus=st.integers(1, 5000),
)
def test_property_window(gaps, durations, start_frac, load, gpus):
    submits = np.concatenate(([0.0], np.cumsum(gaps)))
    durs = durations.draw(st.lists(st.floats(1.0, 1e6), min_size=len(submits), max_size=len(submits)))
    trace = make_trace(list(submits), durs, [1 + i % 3 for i in range(len(submits))])
    start = float(submits[-1]) * start_frac
    first = int(np.searchsorted(submits, start))
    n = len(submits) - first
    w = window(trace, start=start, num_jobs=n)
    assert ids(w) == ids(trace)[first:]
    assert w["submit_time"].iloc[0] == 0.0
    np.testing.assert_allclose(w["submit_time"], submits[first:] - submits[first])
    # Deterministic.
    pd.testing.assert_frame_equal(w, window(trace, start=start, num_jobs=n))
    if n >= 2 and submits[-1] > submits[first]:
        scaled = window(trace, start=start, num_jobs=n, load=load, cluster=gpus)
        assert offered_load(scaled, gpus) == pytest.approx(load, rel=1e-9)


def test_deterministic(trace):
    a = window(trace, start=12.0, span=50.0, load=0.7, cluster="small")
    b = window(trace, start=12.0, span=50.0, load=0.7, cluster="small")
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs == b.attrs


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of num_jobs"),
        ({"num_jobs": 3, "span": 10.0}, "exactly one of num_jobs"),
        ({"num_jobs": 0}, "num_jobs"),
        ({"num_jobs": 2.0}, "num_jobs"),
        ({"span": 0.0}, "span"),
        ({"span": -5.0}, "span"),
        ({"start": -1.0, "num_jobs": 2}, "start"),
        ({"start": float("nan"), "num_jobs": 2}, "start"),
        ({"start": 91.0, "num_jobs": 1}, "beyond the trace"),
        ({"start": 55.0, "span": 4.0}, "no job"),
        ({"start": 60.0, "num_jobs": 5}, "only 4 remain"),
        ({"num_jobs": 3, "load": 0.5}, "needs a cluster"),
        ({"num_jobs": 3, "load": 0.0, "cluster": 8}, "load"),
        ({"num_jobs": 3, "load": -1.0, "cluster": 8}, "load"),
        ({"num_jobs": 3, "load": 0.5, "cluster": "nope"}, "unknown cluster"),
        ({"start": 90.0, "num_jobs": 1, "load": 0.5, "cluster": 8}, "cannot rescale"),
    ],
)
def test_errors(trace, kwargs, match):
    with pytest.raises(ValueError, match=match):
        window(trace, **kwargs)


def test_cannot_rescale_simultaneous_jobs():
    t = make_trace([0.0, 5.0, 5.0, 5.0])
    with pytest.raises(ValueError, match="submitted at once"):
        window(t, start=1.0, num_jobs=3, load=1.0, cluster=8)
    assert len(window(t, start=1.0, num_jobs=3)) == 3  # fine without a load target


def test_unsorted_trace_rejected():
    t = make_trace([0.0, 10.0, 20.0]).iloc[[0, 2, 1]]
    with pytest.raises(ValueError, match="not sorted"):
        window(t, num_jobs=2)
