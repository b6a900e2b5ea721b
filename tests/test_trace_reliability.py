"""Reliability of the trace layer on odd and damaged input: re-based submit times, overflowing
GPU counts, CR line endings, round trips of any table, implausible durations and times,
non-regular files and deeply nested JSON. Each failure must be a clear TraceError naming the
file's row, column and value as written."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import baselines
from envs import simulate
from traces import load_trace, make_trace, save_trace, synthetic, validate
from traces.loaders import detect_format
from traces.schema import COLUMNS, MAX_GPUS, MIN_DURATION, STRING_COLUMNS, TraceError

CANON_HEADER = ",".join(COLUMNS) + "\n"
HELIOS_HEADER = "job_id,user,vc,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue\n"
POLLUX_HEADER = "timestamp,duration,num_gpus,gpu_time,cluster\n"
FIXTURES = Path(__file__).parent / "fixtures"
BIG = "9223372036854775808"  # 2**63: one past int64


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def raises(call, *, row: int | None, column: str | None, words: list[str]) -> TraceError:
    with pytest.raises(TraceError) as err:
        call()
    exc = err.value
    assert exc.row == row and exc.column == column, str(exc)
    for word in words:
        assert word in str(exc), f"{word!r} not in {str(exc)!r}"
    return exc


# --------------------------------------------------------------------------- re-based submit times


def dyadic_trace(shift: float) -> dict:
    """A small contended trace on ``tiny`` whose times are multiples of 1/4 s, so that adding
    ``shift`` (up to ~1e15) is exact and only the re-base can make results differ."""
    rng = np.random.default_rng(3)
    n = 24
    submit = np.cumsum(rng.integers(0, 400, n)) * 0.25
    return {
        "submit_time": submit + shift,
        "duration": rng.integers(4, 4000, n) * 0.25,
        "num_gpus": rng.choice([1, 1, 2, 4], n),
        "model": rng.choice(["resnet50", "lm", "transformer"], n),
    }


def run(trace: pd.DataFrame, policy: str) -> tuple[dict, pd.DataFrame]:
    res = simulate(trace, "tiny", baselines.get(policy), seed=0)
    return res.metrics, res.jobs


@pytest.mark.parametrize("policy", ["fifo", "tiresias"])
@pytest.mark.parametrize("shift", [1.7e9, 3.6e11, 3.6e14])
def test_simulate_results_are_invariant_to_a_shift_of_every_submit(policy, shift):
    base_metrics, base_jobs = run(make_trace(dyadic_trace(0.0)), policy)
    shifted = make_trace(dyadic_trace(shift))
    assert shifted["submit_time"][0] == 0.0
    metrics, jobs = run(shifted, policy)
    assert metrics == base_metrics
    pd.testing.assert_frame_equal(jobs, base_jobs)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_loaded_canonical_traces_are_rebased_to_the_first_submit(tmp_path, suffix):
    """Unix-epoch submits in a canonical file load as seconds from the first submit, and
    simulate as the same trace starting at 0."""
    table = make_trace(dyadic_trace(0.0))
    raw = table.copy()
    raw["submit_time"] = raw["submit_time"] + 1.7e9
    raw = raw.iloc[::-1]  # unsorted in the file: the first submit is the earliest, not row 0
    if suffix == ".csv":
        raw.to_csv(tmp_path / "t.csv", index=False)
    else:
        raw.to_parquet(tmp_path / "t.parquet", index=False)
    back = load_trace(tmp_path / f"t{suffix}")
    pd.testing.assert_frame_equal(back, table)
    assert run(back, "fifo")[0] == run(table, "fifo")[0]


def test_synthetic_trace_at_unix_epoch_times_simulates_as_at_zero():
    trace = synthetic(40, load=2.0, cluster="tiny", seed=1)
    epoch = trace.copy()
    epoch["submit_time"] = epoch["submit_time"] + 1.7e9
    rebased = make_trace(epoch)
    np.testing.assert_allclose(rebased["submit_time"], trace["submit_time"], rtol=0, atol=1e-6)
    a, b = run(trace, "fifo")[0], run(rebased, "fifo")[0]
    assert b["avg_jct"] == pytest.approx(a["avg_jct"], rel=1e-9)


def test_make_trace_keeps_times_when_asked():
    t = make_trace({"submit_time": [10.0, 20.0], "duration": [1.0, 1.0], "num_gpus": [1, 1]}, rebase=False)
    assert t["submit_time"].tolist() == [10.0, 20.0]
    assert make_trace({"submit_time": [10.0, 20.0], "duration": [1.0, 1.0], "num_gpus": [1, 1]})[
        "submit_time"
    ].tolist() == [0.0, 10.0]


# --------------------------------------------------------------------------- GPU-count overflow


def test_make_trace_and_validate_reject_gpu_counts_beyond_max_gpus_quoting_the_value():
    for value in (2**63, 2**64, MAX_GPUS + 1):
        data = {"submit_time": [0.0, 1.0], "duration": [1.0, 1.0], "num_gpus": [1, value]}
        raises(lambda d=data: make_trace(d), row=1, column="num_gpus", words=[str(value), "MAX_GPUS"])
    assert make_trace({"submit_time": [0.0], "duration": [1.0], "num_gpus": [MAX_GPUS]})["num_gpus"][0] == MAX_GPUS
    df = make_trace({"submit_time": [0.0, 1.0], "duration": [1.0, 1.0], "num_gpus": [1, 1]})
    df["num_gpus"] = np.array([1, 2**63], dtype=np.uint64)
    raises(lambda: validate(df), row=1, column="num_gpus", words=[BIG])


@pytest.mark.parametrize("value", [BIG, "18446744073709551616", "1e300", str(MAX_GPUS + 1)])
def test_canonical_csv_gpu_overflow_names_the_row_column_and_text(tmp_path, value):
    path = write(tmp_path / "c.csv", CANON_HEADER + "a,0,10,1,,,,,\nb,5,10,2,,,,,\nc,9,10," + value + ",,,,,\n")
    exc = raises(lambda: load_trace(path), row=2, column="num_gpus", words=[repr(value)])
    assert str(exc).startswith(str(path))


def test_canonical_parquet_gpu_overflow_names_the_row_and_value(tmp_path):
    df = make_trace({"submit_time": [0.0, 1.0, 2.0], "duration": [1.0, 1.0, 1.0], "num_gpus": [1, 1, 1]})
    df["num_gpus"] = np.array([1, 1, 2**63], dtype=np.uint64)
    df.to_parquet(tmp_path / "t.parquet", index=False)
    raises(lambda: load_trace(tmp_path / "t.parquet"), row=2, column="num_gpus", words=[BIG])


def test_pollux_gpu_overflow_quotes_the_file_value(tmp_path):
    path = write(tmp_path / "p.csv", POLLUX_HEADER + "2017-10-09 07:01:55,66.0,1,66.0,x\n"
                 f"2017-10-09 07:02:55,66.0,{BIG},66.0,x\n")
    raises(lambda: load_trace(path), row=1, column="num_gpus", words=[repr(BIG)])


def test_helios_gpu_overflow_names_the_file_row_after_dropped_rows(tmp_path):
    rows = [
        "a,u,v,0,4,1,COMPLETED,2020-06-09 18:41:01,,,60,0",  # CPU-only: dropped
        "b,u,v,1,4,1,COMPLETED,2020-06-09 18:41:02,,,0,0",  # zero duration: dropped
        "c,u,v,1,4,1,COMPLETED,2020-06-09 18:41:03,,,60,0",
        f"d,u,v,{BIG},4,1,COMPLETED,2020-06-09 18:41:04,,,60,0",
    ]
    path = write(tmp_path / "h.csv", HELIOS_HEADER + "\n".join(rows) + "\n")
    raises(lambda: load_trace(path), row=3, column="gpu_num", words=[repr(BIG)])


def test_alibaba_gpu_overflow_names_the_task_row_and_its_values(tmp_path):
    write(tmp_path / "pai_job_table.csv", (FIXTURES / "alibaba" / "pai_job_table.csv").read_text())
    tasks = (FIXTURES / "alibaba" / "pai_task_table.csv").read_text().splitlines()
    fields = tasks[1].split(",")
    fields[2], fields[8] = "1e300", "100.0"
    tasks[1] = ",".join(fields)
    write(tmp_path / "pai_task_table.csv", "\n".join(tasks) + "\n")
    raises(lambda: load_trace(tmp_path), row=1, column="plan_gpu", words=["'1e300'", "'100.0'", "MAX_GPUS"])


# --------------------------------------------------------------------------- line endings and round trips


def test_cr_only_line_endings_read_as_lf(tmp_path):
    text = CANON_HEADER + "a,0,10,1,u,,,,\nb,5,20,2,,,,,\n"
    lf = load_trace(write(tmp_path / "lf.csv", text))
    cr = write(tmp_path / "cr.csv", "\r\r" + text.replace("\n", "\r"))  # leading blank lines too
    assert detect_format(cr) == "csv"
    pd.testing.assert_frame_equal(load_trace(cr), lf)
    helios = (FIXTURES / "helios_cluster_log.csv").read_text()
    pd.testing.assert_frame_equal(
        load_trace(write(tmp_path / "h.csv", helios.replace("\n", "\r"))), load_trace(FIXTURES / "helios_cluster_log.csv")
    )


def test_cr_only_ragged_row_is_a_trace_error(tmp_path):
    path = write(tmp_path / "c.csv", (CANON_HEADER + "a,0,10,1,,,,,\nb,5,20\n").replace("\n", "\r"))
    raises(lambda: load_trace(path), row=1, column=None, words=["expected 9 fields", "found 3"])


def test_unreadable_csv_header_is_a_trace_error_not_a_csv_error(tmp_path):
    path = write(tmp_path / "c.csv", "x" * 200_000 + "," + CANON_HEADER)  # a field over csv's limit
    raises(lambda: load_trace(path, format="csv"), row=None, column=None, words=["malformed CSV"])


def test_save_trace_quotes_carriage_returns_and_reads_back(tmp_path):
    df = make_trace({"submit_time": [0.0, 1.0], "duration": [1.0, 2.0], "num_gpus": [1, 2],
                     "user": ["a\rb", 'c,"d"\r\n'], "vc": ["\n", "ü\u2028"]})
    save_trace(df, tmp_path / "t.csv")
    pd.testing.assert_frame_equal(load_trace(tmp_path / "t.csv"), df)


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
finite = st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False)


@st.composite
def tables(draw) -> pd.DataFrame:
    n = draw(st.integers(1, 6))
    col = {
        "job_id": draw(st.lists(texts, min_size=n, max_size=n, unique=True)),
        "submit_time": draw(st.lists(finite, min_size=n, max_size=n)),
        "duration": draw(st.lists(st.floats(MIN_DURATION, 1e15), min_size=n, max_size=n)),
        "num_gpus": draw(st.lists(st.integers(1, MAX_GPUS), min_size=n, max_size=n)),
    }
    for c in STRING_COLUMNS[1:]:
        col[c] = draw(st.lists(texts, min_size=n, max_size=n))
    return pd.DataFrame(col)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=tables(), suffix=st.sampled_from([".csv", ".csv.gz", ".parquet"]))
def test_save_then_load_is_exact_for_any_table(tmp_path, df, suffix):
    path = tmp_path / f"t{suffix}"
    save_trace(df, path)
    back = load_trace(path)
    expected = validate(df, rebase=True)
    pd.testing.assert_frame_equal(back, expected)
    assert np.array_equal(back["submit_time"].to_numpy(), expected["submit_time"].to_numpy())
    assert np.array_equal(back["duration"].to_numpy(), expected["duration"].to_numpy())


# --------------------------------------------------------------------------- durations


def test_make_trace_rejects_durations_below_the_minimum():
    raises(lambda: make_trace({"submit_time": [0.0, 1.0], "duration": [1.0, 5e-324], "num_gpus": [1, 1]}),
           row=1, column="duration", words=["5e-324", "MIN_DURATION"])
    assert make_trace({"submit_time": [0.0], "duration": [MIN_DURATION], "num_gpus": [1]})["duration"][0] == MIN_DURATION


def test_loaders_reject_durations_below_the_minimum_at_the_file_row(tmp_path):
    canon = write(tmp_path / "c.csv", CANON_HEADER + "a,0,10,1,,,,,\nb,5,5e-324,1,,,,,\n")
    raises(lambda: load_trace(canon), row=1, column="duration", words=["'5e-324'", "MIN_DURATION"])
    pollux = write(tmp_path / "p.csv", POLLUX_HEADER + "2017-10-09 07:01:55,0.0001,1,0.0001,x\n")
    raises(lambda: load_trace(pollux), row=0, column="duration", words=["'0.0001'"])
    helios = write(tmp_path / "h.csv", HELIOS_HEADER + "a,u,v,0,4,1,C,2020-06-09 18:41:01,,,60,0\n"
                   "b,u,v,1,4,1,C,2020-06-09 18:41:02,,,0.0005,0\n")
    raises(lambda: load_trace(helios), row=1, column="duration", words=["'0.0005'"])


def test_alibaba_rejects_a_job_shorter_than_the_minimum(tmp_path):
    write(tmp_path / "pai_job_table.csv", "j1,i1,u1,Terminated,100.0,700.0\n")
    write(tmp_path / "pai_task_table.csv", "j1,worker,1.0,Terminated,110.0,110.0001,600.0,29.3,100.0,V100\n")
    raises(lambda: load_trace(tmp_path), row=0, column="job_name", words=["'j1'", "MIN_DURATION"])


def test_infinite_numbers_in_a_file_name_the_row(tmp_path):
    helios = write(tmp_path / "h.csv", HELIOS_HEADER + "a,u,v,0,4,1,C,2020-06-09 18:41:01,,,60,0\n"
                   "b,u,v,1,4,1,C,2020-06-09 18:41:02,,,1e400,0\n")
    raises(lambda: load_trace(helios), row=1, column="duration", words=["'1e400'", "finite"])


# --------------------------------------------------------------------------- times, files, JSON


@pytest.mark.parametrize("when", ["1500-01-01 00:00:00", "1969-12-31 23:59:59", "2300-01-01 00:00:00"])
def test_wall_clock_times_outside_the_sane_range_are_rejected(tmp_path, when):
    helios = write(tmp_path / "h.csv", HELIOS_HEADER + f"a,u,v,1,4,1,C,2020-06-09 18:41:01,,,60,0\nb,u,v,1,4,1,C,{when},,,60,0\n")
    raises(lambda: load_trace(helios), row=1, column="submit_time", words=[repr(when), "1970-01-01"])
    pollux = write(tmp_path / "p.csv", POLLUX_HEADER + f"{when},60.0,1,60.0,x\n")
    raises(lambda: load_trace(pollux), row=0, column="timestamp", words=[repr(when)])
    philly = write(tmp_path / "j.json", '[{"jobid": "a", "status": "Pass", "vc": "v", "user": "u", '
                   f'"submitted_time": "{when}", "attempts": []}}]')
    raises(lambda: load_trace(philly), row=0, column="submitted_time", words=[repr(when)])


def test_deeply_nested_json_is_a_trace_error(tmp_path):
    path = write(tmp_path / "j.json", "[" * 200_000 + "]" * 200_000)
    assert detect_format(path) == "philly_json"
    raises(lambda: load_trace(path), row=None, column=None, words=["nested too deeply"])
    raises(lambda: load_trace(write(tmp_path / "j.gz", gzip.compress(path.read_bytes()))),
           row=None, column=None, words=["nested too deeply"])


def _finishes(call, seconds: float = 10.0) -> BaseException | None:
    """Run ``call`` in a thread; fail if it is still running after ``seconds``."""
    box: list = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # handed back to the test
            box.append(exc)
        else:
            box.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return box[0] if box else pytest.fail(f"still running after {seconds} s (blocked on a non-regular file)")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("fmt", [None, "csv", "philly_json"])
def test_named_pipe_is_a_trace_error_without_blocking(tmp_path, fmt):
    fifo = tmp_path / "trace.csv"
    os.mkfifo(fifo)
    try:
        exc = _finishes(lambda: load_trace(fifo, format=fmt))
    finally:  # release a reader blocked in open(), if any
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert isinstance(exc, TraceError) and "named pipe" in str(exc) and str(exc).startswith(str(fifo))


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_character_device_is_a_trace_error():
    exc = _finishes(lambda: load_trace("/dev/zero", format="csv"))
    assert isinstance(exc, TraceError) and "character device" in str(exc)
    exc = _finishes(lambda: detect_format("/dev/zero"))
    assert isinstance(exc, TraceError) and "character device" in str(exc)
