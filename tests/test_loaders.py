"""Trace loaders: the real Pollux Philly file against ../shared/traces/README.md, each raw format
on hand-made fixtures (expected rows computed by hand), errors, round trips, format detection."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from traces.loaders import FORMATS, detect_format, load_trace, local_times, save_trace
from traces.paths import PHILLY_POLLUX_CSV
from traces.schema import COLUMNS, LoadReport, TraceError, validate

FIXTURES = Path(__file__).parent / "fixtures"
PHILLY_JSON = FIXTURES / "philly_cluster_job_log.json"
HELIOS_CSV = FIXTURES / "helios_cluster_log.csv"
PAI_DIR = FIXTURES / "alibaba"
AMBIGUOUS = "ambiguous local time (repeated hour at DST end) read as the first occurrence"
NONEXISTENT = "nonexistent local time (skipped hour at DST start) shifted forward"
POLLUX_HEADER = "timestamp,duration,num_gpus,gpu_time,cluster\n"


def rows(df: pd.DataFrame) -> list[tuple]:
    return list(df[list(COLUMNS)].itertuples(index=False, name=None))


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


# --------------------------------------------------------------------------- real Philly data


@pytest.fixture(scope="module")
def philly(shared) -> pd.DataFrame:
    path = shared(*PHILLY_POLLUX_CSV, what="real Philly data")
    return load_trace(path)


def test_real_philly_jobs_and_gpus(philly):
    assert len(philly) == 82_247
    assert philly.attrs["format"] == "pollux_philly"
    report = philly.attrs["report"]
    assert isinstance(report, LoadReport)
    assert (report.rows_read, report.rows_kept, report.dropped) == (82_247, 82_247, {})
    hist = philly["num_gpus"].value_counts().sort_index().to_dict()
    assert hist == {1: 76_627, 2: 1_818, 4: 1_870, 8: 1_643, 12: 7, 16: 199, 24: 7, 32: 67, 64: 6, 128: 3}
    assert round(float((philly["num_gpus"] == 1).mean()), 6) == 0.931669
    assert philly["vc"].nunique() == 15
    assert (philly[["user", "status", "gpu_type", "model"]] == "").all().all()
    # The 65 duplicate rows of the file are real, distinct jobs: kept, each with its own id.
    assert philly.duplicated(["submit_time", "duration", "num_gpus", "vc"]).sum() == 65
    assert philly["job_id"].is_unique


def test_real_philly_durations_and_gpu_hours(philly):
    d = philly["duration"].to_numpy()
    assert np.median(d) == 1_144
    assert round(float(d.mean()), 2) == 13_135.93
    assert round(float(np.percentile(d, 99)), 2) == 254_758.42
    gpu_hours = float((d * philly["num_gpus"].to_numpy()).sum()) / 3600
    assert round(gpu_hours, 3) == 978_078.473


def test_real_philly_span_naive_and_dst_aware(philly):
    local = local_times(philly)  # naive US/Pacific wall clock, as in the file
    assert str(local.min()) == "2017-09-04 10:30:41"
    assert str(local.max()) == "2017-12-22 08:02:11"
    naive = np.sort(local.to_numpy().astype("datetime64[s]").astype(np.int64))
    naive_span = float(naive[-1] - naive[0])
    assert round(naive_span / 86_400, 2) == 108.90
    assert round(float(np.diff(naive).mean()), 4) == 114.3969
    # DST-aware: PDT -> PST on 2017-11-05 makes the real span exactly one hour longer.
    submit = philly["submit_time"].to_numpy()
    assert submit[0] == 0.0 and np.all(np.diff(submit) >= 0)
    assert submit[-1] == naive_span + 3600
    # The 7 submits in the repeated hour 01:00-01:59 on 2017-11-05 are counted as repaired.
    assert philly.attrs["report"].repaired == {AMBIGUOUS: 7}
    assert philly.attrs["time_origin"] == pd.Timestamp("2017-09-04 10:30:41", tz="US/Pacific")


def test_real_philly_row_53(philly):
    job = philly[philly["job_id"] == "philly-53"]
    assert len(job) == 1
    assert str(local_times(philly)[job.index[0]]) == "2017-10-07 01:11:39"
    assert job["duration"].item() == 193_256
    assert job["num_gpus"].item() == 8
    assert job["vc"].item() == "ee9e8c"


def test_real_philly_detect_and_wrong_format(shared):
    path = shared(*PHILLY_POLLUX_CSV, what="real Philly data")
    assert detect_format(path) == "pollux_philly"
    with pytest.raises(TraceError) as err:
        load_trace(path, format="helios")
    msg = str(err.value)
    assert str(path) in msg and "Helios" in msg and "'gpu_num'" in msg and "'timestamp'" in msg


def test_real_philly_round_trip(philly, tmp_path):
    for name in ("philly.csv", "philly.parquet"):
        save_trace(philly, tmp_path / name)
        back = load_trace(tmp_path / name)
        pd.testing.assert_frame_equal(back, philly)


# --------------------------------------------------------------------------- fixtures


def test_philly_json_fixture():
    df = load_trace(PHILLY_JSON)
    assert df.attrs["format"] == "philly_json"
    # Origin: job ..._0008, 2017-10-01 08:00:00 PDT. Hand-computed:
    # _14199: submit 10-07 01:11:39 PDT = 5 d 17:11:39 later; attempts 74 s + 193,182 s; 8 GPUs.
    # _0002: attempt 0 has no start (skipped); 3,600 s on 1 GPU + 1,800 s on 2 GPUs -> first: 1.
    # _0001: attempts 00:40-01:30 PDT (3,000 s) and 01:40 PDT-03:00 PST (8,400 s: one hour
    #        more than the naive strings say); 4+4 GPUs on two machines.
    # _0011: 12-01 09:59 PST = 61 d 2:59 later, +1 h for PDT->PST; inverted attempt skipped.
    assert rows(df) == [
        ("application_0000000000000_0008", 0.0, 600.0, 1, "u1", "11cb48", "Pass", "", ""),
        ("application_1506638472019_14199", 493_899.0, 193_256.0, 8, "ce2f4c", "ee9e8c", "Pass", "", ""),
        ("application_0000000000000_0002", 1_656_000.0, 5_400.0, 1, "", "11cb48", "Failed", "", ""),
        ("application_0000000000000_0001", 2_997_000.0, 11_400.0, 8, "u2", "6214e9", "Killed", "", ""),
        ("application_0000000000000_0011", 5_281_140.0, 300.0, 4, "u5", "ee9e8c", "Pass", "", ""),
    ]
    report = df.attrs["report"]
    assert (report.rows_read, report.rows_kept) == (12, 5)
    assert report.dropped == {
        "no submitted_time": 1,
        "no scheduling attempts": 1,
        "still running (status Running, or last attempt without end_time)": 2,
        "no usable attempt (none with start_time and end_time, end >= start)": 1,
        "zero GPUs in every usable attempt": 1,
        "zero run time (usable attempts sum to 0 s)": 1,
    }
    assert report.repaired == {
        "attempts without start_time or end_time skipped": 1,
        "attempts with end_time before start_time skipped": 1,
        "jobs whose usable attempts differ in GPU count (first attempt's count kept)": 1,
        AMBIGUOUS: 2,
    }
    assert [str(t) for t in local_times(df)] == [
        "2017-10-01 08:00:00",
        "2017-10-07 01:11:39",
        "2017-10-20 12:00:00",
        "2017-11-05 00:30:00",
        "2017-12-01 09:59:00",
    ]


def test_helios_fixture():
    df = load_trace(HELIOS_CSV)
    assert df.attrs["format"] == "helios"
    # Origin 2020-06-09 18:40:00 (job 1425516, listed after the others: output is sorted).
    assert rows(df) == [
        ("1425516", 0.0, 86_400.0, 16, "uzqls", "vc6YE", "TIMEOUT", "", ""),
        ("1425511", 61.0, 36_848.0, 1, "uXBbc", "vcJkd", "COMPLETED", "", ""),
        ("1425512", 87.0, 249.0, 4, "uVMrF", "vchbv", "FAILED", "", ""),
        ("1425513", 88.0, 675_233.0, 1, "uzqls", "vcpDC", "CANCELLED", "", ""),
    ]
    report = df.attrs["report"]
    assert report.rows_read == 7
    assert report.dropped == {"CPU-only job (gpu_num 0)": 1, "zero or missing duration": 2}
    assert report.repaired == {}
    assert str(local_times(df)[1]) == "2020-06-09 18:41:01"


@pytest.mark.parametrize("path", [PAI_DIR, PAI_DIR / "pai_job_table.csv", PAI_DIR / "pai_task_table.csv"])
def test_alibaba_fixture(path):
    df = load_trace(path)
    assert df.attrs["format"] == "alibaba_pai"
    # j2: ps (CPU) + worker 4 x 100% (4) + evaluator 1 x 25% (ceil -> 1) = 5 GPUs; types P100 and
    #     T4: the larger task's wins; duration 990 - 60. j1: 2 x 50% -> 1 GPU; 650 - 110.
    # j3: 3 x 50% -> 2 GPUs; its CPU task has no times and is ignored; 390 - 210.
    assert rows(df) == [
        ("j2", 0.0, 930.0, 5, "u2", "", "Terminated", "p100", ""),
        ("j1", 50.0, 540.0, 1, "u1", "", "Terminated", "v100m32", ""),
        ("j3", 150.0, 180.0, 2, "u1", "", "Failed", "misc", ""),
    ]
    report = df.attrs["report"]
    assert (report.rows_read, report.rows_kept) == (8, 3)
    assert report.dropped == {
        "no task rows in pai_task_table": 1,  # j7
        "CPU-only job (0 GPUs: plan_gpu 0 or missing in every task)": 1,  # j4
        "no submit time (job start_time missing)": 1,  # j6
        "no task with both start_time and end_time (e.g. Waiting or Running)": 1,  # j5
        "non-positive duration (last task end <= first task start)": 1,  # j8
    }
    assert report.repaired == {
        "task rows whose job_name is not in pai_job_table (ignored)": 1,  # j9
        "jobs whose GPU tasks name several GPU types (type of the largest task kept)": 1,  # j2
        "jobs with tasks lacking start_time or end_time (ignored for duration)": 1,  # j3
    }
    with pytest.raises(ValueError, match="no wall-clock times"):
        local_times(df)


def test_alibaba_header_row_and_gzip(tmp_path):
    job = "job_name,inst_id,user,status,start_time,end_time\n" + (PAI_DIR / "pai_job_table.csv").read_text()
    (tmp_path / "pai_job_table.csv.gz").write_bytes(gzip.compress(job.encode()))
    (tmp_path / "pai_task_table.csv").write_bytes((PAI_DIR / "pai_task_table.csv").read_bytes())
    df = load_trace(tmp_path)
    assert rows(df) == rows(load_trace(PAI_DIR))


def test_pollux_dst_edges(tmp_path):
    path = write(
        tmp_path / "dst.csv",
        POLLUX_HEADER
        + "2017-11-05 01:30:00,10.0,1,10.0,a\n"  # ambiguous: read as PDT (08:30 UTC)
        + "2017-03-12 02:30:00,20.0,2,40.0,b\n"  # nonexistent: shifted to 03:00 PDT (10:00 UTC)
        + "2017-03-12 01:00:00,30.0,1,30.0,a\n",  # PST (09:00 UTC): the origin
    )
    df = load_trace(path)
    assert rows(df) == [
        ("philly-2", 0.0, 30.0, 1, "", "a", "", "", ""),
        ("philly-1", 3_600.0, 20.0, 2, "", "b", "", "", ""),
        ("philly-0", 238 * 86_400 - 1_800.0, 10.0, 1, "", "a", "", "", ""),
    ]
    assert df.attrs["report"].repaired == {AMBIGUOUS: 1, NONEXISTENT: 1}
    assert [str(t) for t in local_times(df)] == [
        "2017-03-12 01:00:00",
        "2017-03-12 03:00:00",
        "2017-11-05 01:30:00",
    ]


def test_report_is_logged(caplog):
    with caplog.at_level("INFO", logger="traces.loaders"):
        load_trace(HELIOS_CSV)
    assert "read 7, kept 4" in caplog.text and "CPU-only job" in caplog.text


# --------------------------------------------------------------------------- errors

GOOD_POLLUX = POLLUX_HEADER + "2017-10-09 07:01:55,66.0,1,66.0,11cb48\n2017-10-09 06:13:03,2951.0,2,5902.0,6214e9\n"
HELIOS_HEADER = "job_id,user,vc,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue\n"
HELIOS_ROW = "1,u,vc,1,1,1,COMPLETED,2020-06-09 18:41:01,2020-06-09 18:41:01,2020-06-09 18:42:01,60,0\n"
CANON_HEADER = ",".join(COLUMNS) + "\n"
_GZ = gzip.compress((GOOD_POLLUX * 50).encode())
TRUNCATED_GZIP = _GZ[: len(_GZ) // 2]

ERROR_CASES = [
    # name, file name, content, format, row, column, words in the message
    ("missing column", "p.csv", POLLUX_HEADER.replace(",cluster", "") + "2017-10-09 07:01:55,66.0,1,66.0\n", "pollux_philly", None, "cluster", ["missing columns ['cluster']"]),
    ("extra column", "p.csv", POLLUX_HEADER.replace("\n", ",extra\n") + "2017-10-09 07:01:55,66.0,1,66.0,11cb48,x\n", None, None, "extra", ["unexpected columns ['extra']"]),
    ("bad time", "p.csv", GOOD_POLLUX + "2017-13-45 07:01:55,66.0,1,66.0,11cb48\n", None, 2, "timestamp", ["YYYY-MM-DD HH:MM:SS", "2017-13-45"]),
    ("missing time", "p.csv", POLLUX_HEADER + ",66.0,1,66.0,11cb48\n", "pollux_philly", 0, "timestamp", ["expected a time"]),
    ("negative duration", "p.csv", GOOD_POLLUX + "2017-10-09 07:01:55,-5.0,1,-5.0,11cb48\n", None, 2, "duration", ["> 0", "-5.0"]),
    ("NaN duration", "p.csv", GOOD_POLLUX + "2017-10-09 07:01:55,nan,1,nan,11cb48\n", None, 2, "duration", ["> 0", "nan"]),
    ("empty duration", "p.csv", POLLUX_HEADER + "2017-10-09 07:01:55,,1,66.0,11cb48\n", "pollux_philly", 0, "duration", ["empty field"]),
    ("text duration", "p.csv", GOOD_POLLUX + "2017-10-09 07:01:55,long,1,66.0,11cb48\n", None, 2, "duration", ["'long'"]),
    ("zero GPUs", "p.csv", GOOD_POLLUX + "2017-10-09 07:01:55,66.0,0,0.0,11cb48\n", None, 2, "num_gpus", ["GPUs >= 1", "'0'"]),
    ("fractional GPUs", "p.csv", GOOD_POLLUX + "2017-10-09 07:01:55,66.0,1.5,99.0,11cb48\n", None, 2, "num_gpus", ["integer"]),
    ("gpu_time mismatch", "p.csv", GOOD_POLLUX + "2017-10-09 07:01:55,66.0,2,66.0,11cb48\n", None, 2, "gpu_time", ["duration * num_gpus"]),
    ("ragged row", "p.csv", GOOD_POLLUX + "2017-10-09 07:01:55,66.0,1,66.0,11cb48,oops\n", None, 2, None, ["expected 5 fields", "found 6"]),
    ("short row", "p.csv", GOOD_POLLUX + "2017-10-09 07:01:55,66.0,1\n", None, 2, None, ["expected 5 fields", "found 3"]),
    ("empty file", "p.csv", "", None, None, None, ["empty file"]),
    ("whitespace file", "p.csv", "\n \n", "pollux_philly", None, None, ["empty file"]),
    ("header only", "p.csv", POLLUX_HEADER, None, None, None, ["no data rows"]),
    ("gzip of nothing", "p.csv.gz", gzip.compress(b""), None, None, None, ["empty file"]),
    ("truncated gzip", "p.csv.gz", TRUNCATED_GZIP, "pollux_philly", None, None, ["truncated or corrupt gzip"]),
    ("corrupt gzip", "p.csv.gz", b"\x1f\x8b\x08\x00garbage-garbage-garbage", "pollux_philly", None, None, ["truncated or corrupt gzip"]),
    ("helios on pollux", "p.csv", GOOD_POLLUX, "helios", None, "job_id", ["Helios cluster_log.csv has columns", "'gpu_num'", "found ['timestamp'"]),
    ("csv on pollux", "p.csv", GOOD_POLLUX, "csv", None, "job_id", ["canonical job table has columns", "found ['timestamp'"]),
    ("json on pollux", "p.csv", GOOD_POLLUX, "philly_json", None, None, ["not valid JSON", "cluster_job_log"]),
    ("parquet on pollux", "p.csv", GOOD_POLLUX, "parquet", None, None, ["not a Parquet file"]),
    ("alibaba on pollux", "p.csv", GOOD_POLLUX, "alibaba_pai", None, None, ["task table", "pai_task_table.csv not found"]),
    ("unknown format", "p.csv", GOOD_POLLUX, "philly", None, None, ["unknown format 'philly'", "pollux_philly"]),
    ("undetectable", "x.csv", "a,b,c\n1,2,3\n", None, None, None, ["cannot detect the trace format", "['a', 'b', 'c']"]),
    ("binary", "x.bin", b"\x00\xff\xfe\x00\x01", "csv", None, None, ["not UTF-8"]),
    ("helios negative duration", "h.csv", HELIOS_HEADER + HELIOS_ROW + HELIOS_ROW.replace("1,u", "2,u", 1).replace(",60,", ",-60,"), None, 1, "duration", [">= 0"]),
    ("helios bad gpu_num", "h.csv", HELIOS_HEADER + HELIOS_ROW.replace(",1,1,1,", ",x,1,1,"), None, 0, "gpu_num", ["GPU count", "'x'"]),
    ("helios missing submit", "h.csv", HELIOS_HEADER + HELIOS_ROW.replace("COMPLETED,2020-06-09 18:41:01", "COMPLETED,"), None, 0, "submit_time", ["expected a time"]),
    ("helios duplicate id", "h.csv", HELIOS_HEADER + HELIOS_ROW + HELIOS_ROW, None, 1, "job_id", ["duplicate job id '1'"]),
    ("helios missing queue", "h.csv", (HELIOS_HEADER + HELIOS_ROW).replace(",queue", "").replace(",60,0\n", ",60\n"), None, None, "queue", ["missing columns ['queue']"]),
    ("canonical duplicate id", "c.csv", CANON_HEADER + "a,0,10,1,,,,,\na,5,10,1,,,,,\n", None, 1, "job_id", ["duplicate job_id 'a'"]),
    ("canonical zero GPUs", "c.csv", CANON_HEADER + "a,0,10,1,,,,,\nb,5,10,0,,,,,\n", None, 1, "num_gpus", [">= 1"]),
    ("canonical NaN duration", "c.csv", CANON_HEADER + "a,0,nan,1,,,,,\n", None, 0, "duration", ["finite"]),
    ("canonical negative duration", "c.csv", CANON_HEADER + "a,0,10,1,,,,,\nb,5,-1,1,,,,,\n", None, 1, "duration", ["> 0"]),
    ("canonical bad number", "c.csv", CANON_HEADER + "a,0,10,1,,,,,\nb,soon,10,1,,,,,\n", None, 1, "submit_time", ["'soon'"]),
    ("csv on json", "j.json", "[]", "helios", None, None, ["expected CSV text, found JSON", "philly_json"]),
    ("json not a list", "j.json", '{"jobid": "a"}', None, None, None, ["expected a JSON list of jobs"]),
    ("json truncated", "j.json", '[{"jobid": "a", ', None, None, None, ["not valid JSON", "line 1"]),
    ("json empty list", "j.json", "[]", None, None, None, ["no jobs"]),
    ("json missing key", "j.json", '[{"jobid": "a", "submitted_time": "2017-10-01 00:00:00", "attempts": []}, {"submitted_time": "2017-10-01 00:00:00", "attempts": []}]', None, 1, "jobid", ["missing key"]),
    ("json bad attempt time", "j.json", '[{"jobid": "a", "submitted_time": "2017-10-01 00:00:00", "attempts": [{"start_time": "2017-10-01 00:01:00", "end_time": "2017-10-01 00:02:00", "detail": []}, {"start_time": "2017-10-01 00:03:00", "end_time": "yesterday", "detail": []}]}]', None, 0, "attempts[1].end_time", ["'yesterday'"]),
    ("json bad gpus", "j.json", '[{"jobid": "a", "submitted_time": "2017-10-01 00:00:00", "attempts": [{"start_time": "None", "end_time": "None", "detail": [{"ip": "m1", "gpus": 4}]}]}]', None, 0, "attempts[0].detail", ["gpus a list"]),
    ("json duplicate jobid", "j.json", '[{"jobid": "a", "submitted_time": "None", "attempts": []}, {"jobid": "a", "submitted_time": "None", "attempts": []}]', None, 1, "jobid", ["duplicate job id 'a'"]),
    ("json nothing kept", "j.json", '[{"jobid": "a", "submitted_time": "2017-10-01 00:00:00", "attempts": []}]', None, None, None, ["no jobs left", "no scheduling attempts"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "fmt", "row", "column", "words"),
    [(c[0], c[2], c[3], c[4], c[5], c[6]) for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_errors(tmp_path, name, content, fmt, row, column, words):
    file_name = next(c[1] for c in ERROR_CASES if c[0] == name)
    path = write(tmp_path / file_name, content)
    with pytest.raises(TraceError) as err:
        load_trace(path, format=fmt)
    exc = err.value
    msg = str(exc)
    assert exc.source == str(path) and msg.startswith(str(path))
    assert exc.row == row
    assert exc.column == column
    if row is not None:
        assert f"row {row}" in msg
    if column is not None:
        assert f"column {column!r}" in msg
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"


def test_alibaba_errors(tmp_path):
    tasks = (PAI_DIR / "pai_task_table.csv").read_text()
    write(tmp_path / "pai_task_table.csv", tasks)
    job = write(tmp_path / "pai_job_table.csv", "j1,i1,u1,Terminated,100.0\n")
    with pytest.raises(TraceError, match=r"pai_job_table.csv, row 0: expected 6 fields per row") as err:
        load_trace(job, format="alibaba_pai")
    assert err.value.source == str(job)
    write(job, "j1,i1,u1,Terminated,100.0,700.0\nj2,i2,u2,Terminated,5O.0,1000.0\n")
    with pytest.raises(TraceError, match=r"row 1, column 'start_time': expected a time in seconds, got '5O.0'"):
        load_trace(job)
    write(job, "j1,i1,u1,Terminated,100.0,700.0\nj1,i2,u2,Terminated,50.0,1000.0\n")
    with pytest.raises(TraceError, match=r"row 1, column 'job_name': duplicate job id 'j1'"):
        load_trace(tmp_path)
    write(job, "j1,i1,u1,Terminated,100.0,700.0\n")
    task = write(tmp_path / "pai_task_table.csv", tasks + "j1,worker,,Terminated,1.0,2.0,600.0,10.0,100.0,T4\n")
    with pytest.raises(TraceError) as err:
        load_trace(tmp_path)
    assert (err.value.source, err.value.row, err.value.column) == (str(task), 11, "inst_num")
    (tmp_path / "pai_task_table.csv").unlink()
    with pytest.raises(TraceError, match=r"pai_task_table\.csv not found"):
        load_trace(job)
    with pytest.raises(TraceError, match=r"expected pai_job_table\.csv and pai_task_table\.csv"):
        load_trace(tmp_path, format="alibaba_pai")
    with pytest.raises(TraceError, match="is a folder; format 'helios' reads a file"):
        load_trace(PAI_DIR, format="helios")


def test_missing_path_and_parquet_errors(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "nope.csv")
    save_trace(load_trace(HELIOS_CSV), tmp_path / "t.parquet")
    data = (tmp_path / "t.parquet").read_bytes()
    write(tmp_path / "cut.parquet", data[: len(data) // 2])
    with pytest.raises(TraceError, match="truncated or corrupt Parquet"):
        load_trace(tmp_path / "cut.parquet")
    with pytest.raises(TraceError, match="expected CSV text, found a Parquet file"):
        load_trace(tmp_path / "t.parquet", format="csv")
    extra = load_trace(HELIOS_CSV).assign(extra=1)
    extra.attrs = {}
    extra.to_parquet(tmp_path / "extra.parquet")
    with pytest.raises(TraceError, match=r"column 'extra': unexpected columns \['extra'\]"):
        load_trace(tmp_path / "extra.parquet")


# --------------------------------------------------------------------------- round trips


def tricky_table() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 200
    strings = ["", "NA", "None", "nan", "007", "a,b", 'q"uote', " padded ", "ü-ñ", "x"]
    return pd.DataFrame(
        {
            "job_id": [f"{i:04d}" for i in range(n)],
            "submit_time": np.concatenate([[0.0, 0.1, 1 / 3, 1e-7], rng.random(n - 4) * 1e7]),
            "duration": np.concatenate([[123456789.123456789, 1e-3, 1e20, 0.3], rng.lognormal(7, 2, n - 4)]),
            "num_gpus": rng.integers(1, 129, n),
            "user": [strings[i % 10] for i in range(n)],
            "vc": [strings[(i + 3) % 10] for i in range(n)],
            "status": [strings[(i + 5) % 10] for i in range(n)],
            "gpu_type": [strings[(i + 7) % 10] for i in range(n)],
            "model": [strings[(i + 1) % 10] for i in range(n)],
        }
    )


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.parquet", "t.pq"])
def test_round_trip_exact(tmp_path, name):
    df = tricky_table()
    save_trace(df, tmp_path / name)
    back = load_trace(tmp_path / name)
    assert back.attrs["format"] == ("parquet" if name.endswith(("parquet", "pq")) else "csv")
    expected = validate(df)
    pd.testing.assert_frame_equal(back, expected)
    assert np.array_equal(back["submit_time"].to_numpy(), expected["submit_time"].to_numpy())
    assert back.attrs["report"].rows_read == len(df)


@pytest.mark.parametrize("source", [PHILLY_JSON, HELIOS_CSV, PAI_DIR])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_fixtures(tmp_path, source, suffix):
    df = load_trace(source)
    save_trace(df, tmp_path / f"out{suffix}")
    pd.testing.assert_frame_equal(load_trace(tmp_path / f"out{suffix}"), df)


def test_save_errors(tmp_path):
    with pytest.raises(TraceError, match="unsupported file name"):
        save_trace(tricky_table(), tmp_path / "t.txt")
    bad = tricky_table()
    bad.loc[3, "num_gpus"] = 0
    with pytest.raises(TraceError, match=r"row 3, column 'num_gpus'"):
        save_trace(bad, tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()


# --------------------------------------------------------------------------- detection


def test_formats_tuple():
    assert FORMATS == ("pollux_philly", "philly_json", "helios", "alibaba_pai", "csv", "parquet")


def test_detect_format(tmp_path):
    assert detect_format(PHILLY_JSON) == "philly_json"
    assert detect_format(HELIOS_CSV) == "helios"
    assert detect_format(PAI_DIR) == "alibaba_pai"
    assert detect_format(PAI_DIR / "pai_job_table.csv") == "alibaba_pai"
    assert detect_format(PAI_DIR / "pai_task_table.csv") == "alibaba_pai"
    assert detect_format(write(tmp_path / "p.txt", GOOD_POLLUX)) == "pollux_philly"
    # Content, not the name, decides: gzip whatever the suffix, JSON named .csv.
    assert detect_format(write(tmp_path / "log.csv", gzip.compress(PHILLY_JSON.read_bytes()))) == "philly_json"
    assert len(load_trace(tmp_path / "log.csv")) == 5
    assert detect_format(write(tmp_path / "h.gz", gzip.compress(HELIOS_CSV.read_bytes()))) == "helios"
    save_trace(tricky_table(), tmp_path / "c.csv")
    save_trace(tricky_table(), tmp_path / "c.parquet")
    assert detect_format(tmp_path / "c.csv") == "csv"
    assert detect_format(tmp_path / "c.parquet") == "parquet"
    # A known header with a column missing is detected as that format; loading names the gap.
    partial = write(tmp_path / "partial.csv", HELIOS_CSV.read_text().replace(",queue\n", "\n", 1))
    assert detect_format(partial) == "helios"
    with pytest.raises(TraceError, match="cannot detect the format of a folder"):
        detect_format(tmp_path)  # a folder without PAI tables raises, it is not guessed
