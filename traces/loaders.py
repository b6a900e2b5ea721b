"""Loaders: public DL-cluster trace formats -> the canonical job table of :mod:`traces.schema`.

:func:`load_trace` reads a file (or, for Alibaba PAI, a folder), converts it to the canonical
columns, ends with :func:`traces.schema.validate` (so rows come out sorted by submit time,
``submit_time`` in seconds from the first kept submit), and attaches to ``df.attrs``:

- ``report``: a :class:`TraceReport` (a :class:`~traces.schema.LoadReport`): rows read, rows
  dropped per filtering rule (``dropped``) and rows kept but repaired per repair rule
  (``repaired``); it is also logged at INFO level;
- ``format``: the format name;
- ``time_origin``: the wall-clock instant of ``submit_time == 0`` (a tz-aware
  :class:`pandas.Timestamp`), or ``None`` where the trace has no wall-clock times;
- ``time_zone``: the zone the trace's local time strings are read in, or ``None``.

:func:`local_times` turns ``submit_time`` back into the trace's naive local wall-clock times.
:func:`save_trace` writes the canonical CSV or Parquet; ``load_trace(save_trace(df))`` returns
exactly ``validate(df, rebase=True)``, whatever the table's text holds (commas, quotes, ``\r``,
``\n``, any Unicode).

Any input that cannot be read as documented raises :class:`~traces.schema.TraceError`, whose
message names the file, the 0-based data row (header excluded; for JSON, the job's index in the
list) and the column where known, what was expected there and the value as the file writes
it: missing or extra columns, unparsable or infinite numbers, unparsable times or times outside
``[EARLIEST_TIME, LATEST_TIME)`` (1970 to 2200), missing required values, durations of kept jobs
that are NaN or below :data:`~traces.schema.MIN_DURATION` (1 ms), GPU counts above
:data:`~traces.schema.MAX_GPUS` (2**31 - 1, so nothing overflows int64) and zero-GPU jobs where a
format has no rule to drop them, empty files, truncated or corrupt gzip, ragged CSV rows, JSON
nested too deeply to parse, a named pipe, device or socket (refused without opening it, so
nothing blocks), a format that does not match the content. The row is always the file's own,
also where earlier rows are dropped. Each dropped row is counted under the first rule below that
matches it, in the order listed.

Reading, all formats
--------------------
- The format is detected from content (:func:`detect_format`), not from the file name: gzip
  (magic ``1f 8b``) is decompressed first, whatever the suffix; ``PAR1`` magic -> Parquet; a
  first non-blank character ``[`` or ``{`` -> Philly JSON; otherwise CSV, told apart by header
  names (the known header sharing the most names, at least half of them, wins, so a file with one
  column missing is reported as such), or, with no known header, by the shape of the first row
  (6 fields with numeric 5th/6th: Alibaba ``pai_job_table``; 10 fields with numeric 3rd and 9th:
  ``pai_task_table``). A folder holding ``pai_job_table.csv`` is Alibaba PAI.
- CSV fields are read as text and converted here, so that an error names its row and column.
  Every row must have as many fields as the header (or, headerless, as the first row). Lines
  end at ``\n``, ``\r\n`` or a lone ``\r``. Blank lines are skipped and do not count as rows.
  Numbers are parsed exactly (Python ``float``).
- Wall-clock strings must be ``YYYY-MM-DD HH:MM:SS``.

``pollux_philly``: Philly as processed for Pollux (``timestamp,duration,num_gpus,gpu_time,cluster``)
------------------------------------------------------------------------------------------------
- ``timestamp`` is a naive US/Pacific local time (zone ``America/Los_Angeles``, the same zone as
  ``US/Pacific``). It is localised DST-aware: a wall time that occurs twice (the repeated hour
  01:00-01:59 when PDT ends, e.g. 2017-11-05) is read as the first occurrence (PDT, the earlier
  instant); a wall time that does not exist (02:00-02:59 when PDT starts) is shifted forward to
  the first valid instant (03:00 PDT). Both are counted in ``report.repaired``. ``submit_time``
  is then seconds from the first submit. Spans therefore differ from spans computed on the naive
  strings by the DST shifts in between (Pollux's file: naive span + 3600 s).
- ``job_id`` is ``"philly-<row>"`` with ``<row>`` the 0-based data row, so a job stays traceable
  to its line in the file (line ``row + 2``). ``vc`` = ``cluster``; ``duration`` = ``duration``;
  ``num_gpus`` = ``num_gpus``; ``user``, ``status``, ``gpu_type``, ``model`` empty.
- Nothing is dropped: duplicate rows are real, distinct jobs and are kept. Errors: missing or
  unparsable ``timestamp``; ``duration`` missing, NaN, or below ``MIN_DURATION``; ``num_gpus``
  not an integer from 1 to ``MAX_GPUS``; ``gpu_time`` != ``duration * num_gpus`` (relative tolerance 1e-9).

``philly_json``: raw Philly ``cluster_job_log`` (msr-fiddle/philly-traces)
---------------------------------------------------------------------------
A JSON list of jobs ``{status, vc, jobid, user, submitted_time, attempts: [{start_time,
end_time, detail: [{ip, gpus: [...]}]}]}``; times are naive US/Pacific strings, localised as
for ``pollux_philly``; a missing value is JSON ``null``, ``""`` or the string ``'None'``.

- Attempt: *usable* when it has both ``start_time`` and ``end_time`` and ``end >= start``.
  Its GPU count is the sum over ``detail`` of ``len(gpus)``.
- ``duration`` = sum over usable attempts of ``end - start`` (DST-aware; queueing between
  retries excluded, as Pollux did). ``num_gpus`` = the GPU count of the first usable attempt
  with at least one GPU (the original allocation); jobs whose usable attempts differ in GPU
  count are counted in ``repaired``.
- ``job_id`` = ``jobid``, ``user``, ``vc``, ``status`` as given (missing -> ``""``).
- Dropped, in order: no ``submitted_time``; no attempts; still running (``status`` ``Running``,
  or the last attempt has no ``end_time``, which the trace README says means running at
  snapshot time); no usable attempt; zero GPUs in every usable attempt; zero total run time.
- Repaired (kept jobs only): attempts skipped for a missing start or end time; attempts skipped
  because ``end < start``; ambiguous and nonexistent local times; GPU-count disagreement.
- Errors: not a JSON list, a job that is not an object, a missing ``jobid``/``submitted_time``/
  ``attempts`` key or empty ``jobid``, malformed ``attempts``/``detail``/``gpus``, a time string
  that is present but unparsable, a duplicate ``jobid``.

``helios``: SenseTime Helios ``cluster_log.csv`` (S-Lab-System-Group/HeliosData)
---------------------------------------------------------------------------------
Columns ``job_id, user, vc, gpu_num, cpu_num, node_num, state, submit_time, start_time,
end_time, duration, queue``; times are local wall-clock strings, read as ``Asia/Shanghai``
(UTC+8, no DST, so the zone changes no difference).

- ``job_id``, ``user``, ``vc`` as given; ``status`` = ``state``; ``num_gpus`` = ``gpu_num``;
  ``duration`` = ``duration`` (the file's ``end_time - start_time``); ``submit_time`` from
  ``submit_time``. ``cpu_num``, ``node_num``, ``start_time``, ``end_time`` and ``queue`` are
  not used or checked.
- Dropped, in order: CPU-only jobs (``gpu_num`` 0); zero or missing (NaN/empty) ``duration``.
- Errors: missing/unparsable ``submit_time``, ``gpu_num`` missing or not an integer from 0 to
  ``MAX_GPUS``, negative ``duration``, a kept job's ``duration`` above 0 but below
  ``MIN_DURATION``, duplicate ``job_id``.

``alibaba_pai``: Alibaba PAI 2020 (alibaba/clusterdata ``cluster-trace-gpu-v2020``)
----------------------------------------------------------------------------------
Two headerless tables: ``pai_job_table`` (``job_name, inst_id, user, status, start_time,
end_time``; ``start_time`` is the submission) and ``pai_task_table`` (``job_name, task_name,
inst_num, status, start_time, end_time, plan_cpu, plan_mem, plan_gpu, gpu_type``; ``plan_gpu``
in percent of one GPU). Times are seconds (shifted by an undisclosed constant). A first row
equal to the published header names is skipped. ``path`` is a folder holding
``pai_job_table.csv`` and ``pai_task_table.csv`` (either may be ``.csv.gz``), or the job table
file, with the task table beside it named by replacing ``job_table`` with ``task_table`` in the
file name (else ``pai_task_table.csv`` in the same folder), or the task table file, with the job
table found the same way. ``report.rows_read`` counts job-table rows.

- ``job_id`` = ``job_name`` (joins the two tables; one-to-one with ``inst_id``); ``user``,
  ``status`` from the job table; ``vc`` empty.
- GPUs: each task asks for ``ceil(inst_num * plan_gpu / 100)`` whole GPUs (the product is rounded
  to 1e-6 first to absorb float noise; missing ``plan_gpu`` = 0). GPU sharing is not modelled:
  a fractional share is rounded up per task, so 1 x 50% is 1 GPU, 2 x 50% is 1 GPU and
  3 x 50% is 2 GPUs. ``num_gpus`` = sum over the job's tasks.
- ``gpu_type``: lower-cased ``gpu_type`` (``V100M32`` -> ``v100m32``, ``MISC`` -> ``misc``) of
  the job's task with the most GPUs (ties: first in the task table); jobs whose GPU tasks name
  several types are counted in ``repaired``.
- ``submit_time`` from the job's ``start_time``; ``duration`` = latest task ``end_time`` minus
  earliest task ``start_time`` over the job's tasks that have both (tasks lacking either are
  ignored and their jobs counted in ``repaired``).
- Dropped, in order: no task rows; CPU-only (0 GPUs); no submit time (job ``start_time``
  missing); no task with both start and end time (e.g. Waiting or Running); non-positive
  duration. Task rows whose ``job_name`` is not in the job table are ignored and counted in
  ``repaired``.
- Errors: wrong number of fields, empty or duplicate ``job_name`` in the job table, unparsable
  numbers, missing or negative ``inst_num``, negative ``plan_gpu``, a task or job asking for more
  than ``MAX_GPUS`` GPUs, a kept job whose duration is below ``MIN_DURATION``.

``csv`` and ``parquet``: the canonical table
--------------------------------------------
Exactly the columns of :data:`traces.schema.COLUMNS` (any order), checked by ``validate``.
CSV text fields are kept verbatim (``""``, ``"NA"``, ``"None"`` are strings, not missing).
``submit_time`` is re-based to the first submit (e.g. Unix-epoch seconds become seconds from the
first job), so a constant shift of every submit loads as the same table. Nothing is dropped or
repaired.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from traces.schema import (
    COLUMNS,
    MAX_GPUS,
    MIN_DURATION,
    LoadReport,
    TraceError,
    bad_gpu_counts,
    duration_error,
    empty_strings,
    gpu_count_error,
    shown,
    validate,
)

__all__ = ["FORMATS", "TraceReport", "detect_format", "load_trace", "local_times", "save_trace"]

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("pollux_philly", "philly_json", "helios", "alibaba_pai", "csv", "parquet")

POLLUX_COLUMNS = ("timestamp", "duration", "num_gpus", "gpu_time", "cluster")
HELIOS_COLUMNS = (
    "job_id", "user", "vc", "gpu_num", "cpu_num", "node_num", "state",
    "submit_time", "start_time", "end_time", "duration", "queue",
)  # fmt: skip
PAI_JOB_COLUMNS = ("job_name", "inst_id", "user", "status", "start_time", "end_time")
PAI_TASK_COLUMNS = (
    "job_name", "task_name", "inst_num", "status", "start_time", "end_time",
    "plan_cpu", "plan_mem", "plan_gpu", "gpu_type",
)  # fmt: skip
PHILLY_JOB_KEYS = ("status", "vc", "jobid", "attempts", "submitted_time", "user")

PACIFIC = "America/Los_Angeles"  # = US/Pacific (a backward-compatible alias of this zone)
HELIOS_TZ = "Asia/Shanghai"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
EARLIEST_TIME = pd.Timestamp("1970-01-01 00:00:00")
LATEST_TIME = pd.Timestamp("2200-01-01 00:00:00")
"""Wall-clock times outside ``[EARLIEST_TIME, LATEST_TIME)`` are damaged values and raise."""

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_HEADERS = {
    "pollux_philly": POLLUX_COLUMNS,
    "helios": HELIOS_COLUMNS,
    "csv": COLUMNS,
    "alibaba_pai": PAI_JOB_COLUMNS,
    "alibaba_pai_task": PAI_TASK_COLUMNS,
}
_WHAT = {
    "pollux_philly": "Pollux-processed Philly CSV",
    "helios": "Helios cluster_log.csv",
    "csv": "canonical job table",
    "parquet": "canonical job table",
    "alibaba_pai": "Alibaba PAI pai_job_table",
    "alibaba_pai_task": "Alibaba PAI pai_task_table",
}

AMBIGUOUS_RULE = "ambiguous local time (repeated hour at DST end) read as the first occurrence"
NONEXISTENT_RULE = "nonexistent local time (skipped hour at DST start) shifted forward"


@dataclass
class TraceReport(LoadReport):
    """A :class:`LoadReport` that also counts rows kept but repaired, per documented rule."""

    repaired: dict[str, int] = field(default_factory=dict)

    def repair(self, rule: str, count: int) -> None:
        if count:
            self.repaired[rule] = self.repaired.get(rule, 0) + int(count)

    def __str__(self) -> str:
        lines = [super().__str__()]
        lines += [f"  repaired {n}: {rule}" for rule, n in self.repaired.items()]
        return "\n".join(lines)


# --------------------------------------------------------------------------- public API


def detect_format(path: str | Path) -> str:
    """The name (one of :data:`FORMATS`) of the format of ``path``, detected from its content."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        if _find_table(path, "pai_job_table") is not None:
            return "alibaba_pai"
        raise TraceError(
            source, "cannot detect the format of a folder: expected pai_job_table.csv in it (Alibaba PAI)"
        )
    if not path.exists():
        raise TraceError(source, "no such file or folder")
    head = _head(path, source)
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    text = head.decode("utf-8-sig", errors="replace")
    stripped = text.lstrip()
    if not stripped:
        raise TraceError(source, "empty file (only whitespace)")
    if stripped[0] in "[{":
        return "philly_json"
    first = next(csv.reader(io.StringIO(stripped, newline="")), [])
    fields = [f.strip() for f in first]
    best, best_score = None, 0.0
    for name, header in _HEADERS.items():
        score = len(set(fields) & set(header)) / len(header)
        if score > best_score:
            best, best_score = name, score
    if best is not None and best_score >= 0.5:
        return "alibaba_pai" if best.startswith("alibaba_pai") else best
    if len(fields) == len(PAI_JOB_COLUMNS) and _numeric_or_empty(fields[4]) and _numeric_or_empty(fields[5]):
        return "alibaba_pai"
    if len(fields) == len(PAI_TASK_COLUMNS) and _is_number(fields[2]) and _numeric_or_empty(fields[8]):
        return "alibaba_pai"
    known = "; ".join(f"{_WHAT[k]}: {list(v)}" for k, v in _HEADERS.items())
    raise TraceError(
        source,
        f"cannot detect the trace format: first line has fields {fields}; expected JSON (Philly "
        f"cluster_job_log), Parquet, a headerless Alibaba PAI table, or a CSV header of {known}",
    )


def load_trace(path: str | Path, format: str | None = None) -> pd.DataFrame:
    """Load a trace in any of :data:`FORMATS` as the canonical, validated job table.

    ``format=None`` detects it from the content. See the module docstring for what each format
    maps to, drops and repairs; the counts are in ``df.attrs['report']``.
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise TraceError(source, "no such file or folder")
    if format is None:
        format = detect_format(path)
    elif format not in FORMATS:
        raise TraceError(source, f"unknown format {format!r}; expected one of {list(FORMATS)}")
    if path.is_dir() and format != "alibaba_pai":
        raise TraceError(source, f"is a folder; format {format!r} reads a file (only 'alibaba_pai' reads a folder)")
    report = TraceReport(source=source, format=format)
    loader = _LOADERS[format]
    try:
        df, origin, tz = loader(path, source, report)
        if len(df) == 0:
            raise TraceError(source, f"no jobs left after filtering: {report.dropped}")
        out = validate(df, source, rebase=True)
    except TraceError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, OSError, pa.ArrowException, csv.Error) as exc:
        # A safety net: every anticipated problem raises a TraceError with row and column above.
        raise TraceError(source, f"cannot read as {format!r}: {type(exc).__name__}: {exc}") from exc
    out.attrs["report"] = report
    out.attrs["format"] = format
    out.attrs["time_origin"] = origin
    out.attrs["time_zone"] = tz
    logger.info("%s", report)
    return out


def save_trace(df: pd.DataFrame, path: str | Path) -> None:
    """Validate ``df`` and write it as canonical CSV (``.csv``, ``.csv.gz``) or Parquet
    (``.parquet``, ``.pq``), chosen by suffix. ``load_trace`` of the file returns exactly
    ``validate(df, rebase=True)``: floats are written at full precision and CSV text fields are
    quoted, so commas, quotes and line breaks (``\r`` too) in them read back as written."""
    path = Path(path)
    name = path.name.lower()
    out = validate(df, f"save_trace({path})", rebase=True)
    out.attrs = {}  # attrs hold Python objects; Parquet would try to serialise them as JSON
    if name.endswith((".parquet", ".pq")):
        out.to_parquet(path, index=False, engine="pyarrow")
    elif name.endswith((".csv", ".csv.gz")):
        out.to_csv(path, index=False, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    else:
        raise TraceError(str(path), "unsupported file name: expected a .csv, .csv.gz, .parquet or .pq suffix")


def local_times(df: pd.DataFrame) -> pd.Series:
    """The naive local wall-clock submit time of each row of a loaded trace.

    Rebuilt from ``submit_time`` and ``df.attrs['time_origin']``/``['time_zone']``: for the
    Philly formats this gives back the strings of the file (except nonexistent times, which were
    shifted forward). Raises ``ValueError`` for traces without wall-clock times.
    """
    origin = df.attrs.get("time_origin")
    tz = df.attrs.get("time_zone")
    if origin is None or tz is None:
        raise ValueError("this table has no wall-clock times (attrs time_origin/time_zone unset)")
    utc = origin + pd.to_timedelta(df["submit_time"].to_numpy(dtype=np.float64), unit="s")
    return pd.Series(utc.tz_convert(tz).tz_localize(None), index=df.index, name="local_time")


# --------------------------------------------------------------------------- reading helpers


def _read_bytes(path: Path, source: str, limit: int | None = None) -> bytes:
    """The file's bytes (only the first ``limit`` when given), gunzipped if gzip; TraceError for
    unreadable, empty or bad gzip, or anything but a regular file (a named pipe or a device
    would block or never end)."""
    _regular_file(path, source)
    try:
        with path.open("rb") as f:
            data = f.read() if limit is None else f.read(limit)
    except OSError as exc:
        raise TraceError(source, f"cannot read file: {exc.strerror or exc}") from exc
    if not data:
        raise TraceError(source, "empty file (0 bytes)")
    if data[:2] == _GZIP_MAGIC:
        try:
            if limit is None:
                data = gzip.decompress(data)
            else:
                with gzip.open(path, "rb") as f:
                    data = f.read(limit)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise TraceError(
                source, f"truncated or corrupt gzip data ({exc}); expected a complete gzip stream"
            ) from exc
        if not data:
            raise TraceError(source, "empty file (the gzip stream holds no data)")
    if limit is None and not data.strip():
        raise TraceError(source, "empty file (only whitespace)")
    return data


_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _regular_file(path: Path, source: str) -> None:
    """TraceError unless ``path`` is a regular file (symbolic links followed), checked without
    opening it, since opening a named pipe blocks until a writer appears."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise TraceError(source, f"cannot read file: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise TraceError(source, f"is {kind}; expected a regular trace file")


def _head(path: Path, source: str, n: int = 65536) -> bytes:
    """The first ``n`` bytes (decompressed), for format detection."""
    return _read_bytes(path, source, limit=n)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numeric_or_empty(text: str) -> bool:
    return text.strip() == "" or _is_number(text)


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceError(source, f"not UTF-8 text (byte {exc.start}); expected a CSV or JSON text file") from exc


def _csv_rows(text: str, source: str):
    """(data-row index, fields) of the non-blank CSV rows of ``text``; any of ``\n``, ``\r\n``
    and ``\r`` ends a line."""
    row = 0
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise TraceError(source, f"malformed CSV near line {reader.line_num}: {exc}") from exc
        if not fields or fields == [""]:
            continue
        yield row, fields
        row += 1


def _read_csv(data: bytes, source: str, *, header: bool) -> pd.DataFrame:
    """All fields as text (``str`` columns, ``""`` for empty). Headerless tables get columns
    0..n-1, n from the first row. Rows with another number of fields raise TraceError."""
    if data.startswith(_PARQUET_MAGIC):
        raise TraceError(source, "expected CSV text, found a Parquet file (format 'parquet')")
    text = _decode(data, source)
    if text.lstrip()[:1] in ("[", "{"):
        raise TraceError(source, "expected CSV text, found JSON (a Philly cluster_job_log is format 'philly_json')")
    rows = _csv_rows(text, source)
    first = next(rows, None)
    if first is None:
        raise TraceError(source, "empty file (no CSV rows)")
    names = [f.strip() for f in first[1]] if header else [str(i) for i in range(len(first[1]))]
    if header:
        dup = sorted({c for c in names if names.count(c) > 1})
        if dup:
            raise TraceError(source, f"duplicate column names {dup} in the header {names}", column=dup[0])
    # Blank lines before row 0 (pyarrow ends a line at \n, \r\n or \r, as csv does).
    leading = len(re.findall(r"\r\n|\r|\n", text[: re.match(r"\s*", text).end()]))
    read = pa_csv.ReadOptions(column_names=names, skip_rows=leading + 1 if header else leading)
    parse = pa_csv.ParseOptions(newlines_in_values=b'"' in data)  # quoted line breaks across blocks
    convert = pa_csv.ConvertOptions(
        column_types={c: pa.string() for c in names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        null_values=[],
    )
    try:
        table = pa_csv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        for row, fields in rows:
            if len(fields) != len(names):
                raise TraceError(
                    source,
                    f"expected {len(names)} fields{f' {names}' if header else ''}, found {len(fields)}: {fields}",
                    row=row - 1 if header else row,
                ) from exc
        raise TraceError(source, f"malformed CSV: {exc}") from exc
    df = table.to_pandas()
    if not header:
        df.columns = range(len(names))
    return df


def _check_columns(found, expected, source: str, what: str) -> None:
    found = list(found)
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if extra:
            parts.append(f"unexpected columns {extra}")
        raise TraceError(
            source,
            f"{'; '.join(parts)}: a {what} has columns {list(expected)}, found {found}",
            column=(missing or extra)[0],
        )


Where = Callable[[int], tuple[int | None, str | None]]


def _numbers(
    s: pd.Series | np.ndarray,
    source: str,
    column: str,
    *,
    required: bool,
    where: Where | None = None,
    what: str = "a number",
) -> np.ndarray:
    """Text -> float64 exactly (Python float). Empty -> NaN, or TraceError if ``required``;
    infinite values (``inf``, ``1e400``) raise TraceError."""
    arr = np.asarray(s, dtype=object)
    arr = np.array([("" if v is None else str(v).strip()) for v in arr], dtype=object) if arr.size else arr
    where = where or (lambda i: (i, column))
    empty = arr == ""
    if required and empty.any():
        i = int(np.flatnonzero(empty)[0])
        row, col = where(i)
        raise TraceError(source, f"expected {what}, found an empty field", row=row, column=col)
    text = arr
    arr = arr.copy()
    arr[empty] = "nan"
    try:
        values = arr.astype(np.float64)
    except ValueError:
        for i, v in enumerate(arr):
            try:
                float(v)
            except ValueError:
                row, col = where(i)
                raise TraceError(source, f"expected {what}, got {v!r}", row=row, column=col) from None
        raise
    infinite = np.isinf(values)
    if infinite.any():
        i = int(np.flatnonzero(infinite)[0])
        row, col = where(i)
        raise TraceError(source, f"expected {what} (a finite number), got {text[i]!r}", row=row, column=col)
    return values


def _times(
    s: pd.Series | np.ndarray,
    source: str,
    column: str,
    *,
    required: bool,
    where: Where | None = None,
) -> pd.Series:
    """Naive local time strings -> datetime64 (NaT where missing: '', 'None', JSON null)."""
    text = pd.Series(np.asarray(s, dtype=object)).fillna("").astype(str).str.strip()
    missing = text.isin(["", "None"]).to_numpy()
    where = where or (lambda i: (i, column))
    if required and missing.any():
        i = int(np.flatnonzero(missing)[0])
        row, col = where(i)
        raise TraceError(source, f"expected a time 'YYYY-MM-DD HH:MM:SS', found {text[i]!r}", row=row, column=col)
    parsed = pd.to_datetime(text.where(~missing), format=TIME_FORMAT, errors="coerce")
    bad = parsed.isna().to_numpy() & ~missing
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        row, col = where(i)
        raise TraceError(source, f"expected a time 'YYYY-MM-DD HH:MM:SS', got {text[i]!r}", row=row, column=col)
    outside = ((parsed < EARLIEST_TIME) | (parsed >= LATEST_TIME)).to_numpy()
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        row, col = where(i)
        raise TraceError(
            source, f"expected a time from {EARLIEST_TIME} to before {LATEST_TIME}, got {text[i]!r}", row=row, column=col
        )
    return parsed


def _localize(naive: pd.Series, tz: str) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """DST-aware localisation: ambiguous -> first occurrence (DST), nonexistent -> shifted
    forward. Returns (aware times, ambiguous mask, nonexistent mask)."""
    dst = np.ones(len(naive), dtype=bool)
    valid = naive.notna().to_numpy()
    amb = naive.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward").isna().to_numpy() & valid
    non = naive.dt.tz_localize(tz, ambiguous=dst, nonexistent="NaT").isna().to_numpy() & valid
    aware = naive.dt.tz_localize(tz, ambiguous=dst, nonexistent="shift_forward")
    return aware, amb, non


def _seconds(delta: pd.Series) -> np.ndarray:
    return (delta / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)


def _text(value) -> str:
    """A JSON value as text; null, 'None' -> ''."""
    if value is None:
        return ""
    text = str(value).strip()
    return "" if text == "None" else text


def _apply_drops(n: int, rules: list[tuple[str, np.ndarray]], report: TraceReport) -> np.ndarray:
    """Keep mask after the rules, each row counted under the first rule that matches it."""
    keep = np.ones(n, dtype=bool)
    for rule, bad in rules:
        hit = keep & bad
        report.drop(rule, int(hit.sum()))
        keep &= ~bad
    return keep


def _frame(n: int, **cols) -> pd.DataFrame:
    out = {}
    for c in COLUMNS:
        v = cols.get(c)
        out[c] = empty_strings(n) if v is None else np.asarray(v)
    return pd.DataFrame(out)


def _kept_rows(keep: np.ndarray, submit, zone, **cols):
    """The rows in ``keep`` as a canonical frame with submit times (time-zone-aware instants) in
    seconds from the first kept submit; returns ``(frame, origin, zone)`` as the loaders do."""
    if not keep.any():
        return _frame(0), None, zone
    origin = submit[keep].min()
    frame = _frame(int(keep.sum()), submit_time=_seconds(submit[keep] - origin),
                   **{name: np.asarray(values)[keep] for name, values in cols.items()})
    return frame, origin, zone


def _check_unique(ids: np.ndarray, source: str, column: str, where: Where | None = None) -> None:
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        row, col = (where or (lambda k: (k, column)))(i)
        raise TraceError(source, f"duplicate job id {ids[i]!r}; expected unique ids", row=row, column=col)


# --------------------------------------------------------------------------- formats


def _load_pollux(path: Path, source: str, report: TraceReport):
    raw = _read_csv(_read_bytes(path, source), source, header=True)
    _check_columns(raw.columns, POLLUX_COLUMNS, source, _WHAT["pollux_philly"])
    n = len(raw)
    report.rows_read = n
    if n == 0:
        raise TraceError(source, "no data rows (header only)")
    local = _times(raw["timestamp"], source, "timestamp", required=True)
    duration = _numbers(raw["duration"], source, "duration", required=True, what="a duration in seconds")
    _durations(duration, raw["duration"], source, "duration")
    gpus = _numbers(raw["num_gpus"], source, "num_gpus", required=True, what="a GPU count")
    _gpu_counts(gpus, raw["num_gpus"], source, "num_gpus", minimum=1)
    gpu_time = _numbers(raw["gpu_time"], source, "gpu_time", required=True)
    expected = duration * gpus
    off = ~(np.abs(gpu_time - expected) <= 1e-9 * np.maximum(1.0, np.abs(expected)))
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise TraceError(
            source, f"expected gpu_time = duration * num_gpus = {expected[i]}, got {gpu_time[i]}", row=i, column="gpu_time"
        )
    aware, amb, non = _localize(local, PACIFIC)
    report.repair(AMBIGUOUS_RULE, amb.sum())
    report.repair(NONEXISTENT_RULE, non.sum())
    origin = aware.min()
    df = _frame(
        n,
        job_id=np.array([f"philly-{i}" for i in range(n)], dtype=object),
        submit_time=_seconds(aware - origin),
        duration=duration,
        num_gpus=gpus.astype(np.int64),
        vc=raw["cluster"].to_numpy(dtype=object),
    )
    return df, origin, PACIFIC


def _durations(values: np.ndarray, text, source: str, column: str, *, check: np.ndarray | None = None) -> None:
    """TraceError at the first row (among ``check``, default all) whose duration is below
    :data:`~traces.schema.MIN_DURATION` (or NaN), quoting the file's text."""
    bad = ~(values >= MIN_DURATION)
    if check is not None:
        bad &= check
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError(source, f"{duration_error()}, got {shown(np.asarray(text)[i])}", row=i, column=column)


def _gpu_counts(values: np.ndarray, text, source: str, column: str, *, minimum: int) -> None:
    """TraceError at the first row whose GPU count is not an integer in ``[minimum, MAX_GPUS]``,
    quoting the file's text (not the parsed float, which rounds large integers)."""
    bad = bad_gpu_counts(values, minimum)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError(source, f"{gpu_count_error(minimum)}, got {shown(np.asarray(text)[i])}", row=i, column=column)


def _load_philly_json(path: Path, source: str, report: TraceReport):
    text = _decode(_read_bytes(path, source), source)
    try:
        jobs = json.loads(text)
    except RecursionError:
        raise TraceError(
            source, "JSON nested too deeply to read; expected a JSON list of jobs (Philly cluster_job_log)"
        ) from None
    except json.JSONDecodeError as exc:
        raise TraceError(
            source,
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); expected a JSON "
            "list of jobs (Philly cluster_job_log)",
        ) from exc
    if not isinstance(jobs, list):
        raise TraceError(source, f"expected a JSON list of jobs (Philly cluster_job_log), got a JSON {type(jobs).__name__}")
    n = len(jobs)
    report.rows_read = n
    if n == 0:
        raise TraceError(source, "no jobs (empty JSON list)")
    jobid, user, vc, status, submitted = [], [], [], [], []
    n_att = np.zeros(n, dtype=np.int64)
    a_job, a_k, a_start, a_end, a_gpus = [], [], [], [], []
    for i, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise TraceError(source, f"expected a JSON object with keys {list(PHILLY_JOB_KEYS)}, got {type(job).__name__}", row=i)
        for key in ("jobid", "submitted_time", "attempts"):
            if key not in job:
                raise TraceError(source, f"missing key; a job has keys {list(PHILLY_JOB_KEYS)}", row=i, column=key)
        jid = _text(job["jobid"])
        if not jid:
            raise TraceError(source, "expected a job id, found none", row=i, column="jobid")
        jobid.append(jid)
        user.append(_text(job.get("user")))
        vc.append(_text(job.get("vc")))
        status.append(_text(job.get("status")))
        submitted.append(_text(job["submitted_time"]))
        attempts = job["attempts"]
        if attempts is None or attempts == "None":
            attempts = []
        if not isinstance(attempts, list):
            raise TraceError(source, f"expected a list of attempts, got {attempts!r}", row=i, column="attempts")
        n_att[i] = len(attempts)
        for k, att in enumerate(attempts):
            if not isinstance(att, dict):
                raise TraceError(source, "expected an object {start_time, end_time, detail}", row=i, column=f"attempts[{k}]")
            gpus = 0
            detail = att.get("detail")
            if detail is None or detail == "None":
                detail = []
            if not isinstance(detail, list):
                raise TraceError(source, "expected a list of {ip, gpus}", row=i, column=f"attempts[{k}].detail")
            for d in detail:
                g = d.get("gpus") if isinstance(d, dict) else None
                if g is None or g == "None":
                    g = []
                if not isinstance(d, dict) or not isinstance(g, list):
                    raise TraceError(
                        source, "expected {ip, gpus: [...]} with gpus a list", row=i, column=f"attempts[{k}].detail"
                    )
                gpus += len(g)
            a_job.append(i)
            a_k.append(k)
            a_start.append(_text(att.get("start_time")))
            a_end.append(_text(att.get("end_time")))
            a_gpus.append(gpus)
    jobid_arr = np.array(jobid, dtype=object)
    _check_unique(jobid_arr, source, "jobid")
    a_job_arr = np.array(a_job, dtype=np.int64)
    a_k_arr = np.array(a_k, dtype=np.int64)
    a_gpus_arr = np.array(a_gpus, dtype=np.int64)

    def att_where(name: str) -> Where:
        return lambda j: (int(a_job_arr[j]), f"attempts[{a_k_arr[j]}].{name}")

    sub_local = _times(submitted, source, "submitted_time", required=False)
    start_local = _times(a_start, source, "start_time", required=False, where=att_where("start_time"))
    end_local = _times(a_end, source, "end_time", required=False, where=att_where("end_time"))
    sub, sub_amb, sub_non = _localize(sub_local, PACIFIC)
    start, st_amb, st_non = _localize(start_local, PACIFIC)
    end, en_amb, en_non = _localize(end_local, PACIFIC)

    has_both = start.notna().to_numpy() & end.notna().to_numpy()
    secs = _seconds(end - start)
    inverted = has_both & (secs < 0)
    usable = has_both & ~inverted
    is_last = a_k_arr == n_att[a_job_arr] - 1
    last_open = np.zeros(n, dtype=bool)
    last_open[a_job_arr[is_last & end.isna().to_numpy()]] = True
    n_usable = np.bincount(a_job_arr[usable], minlength=n)
    duration = np.bincount(a_job_arr[usable], weights=secs[usable], minlength=n)
    num_gpus = np.zeros(n, dtype=np.int64)
    with_gpus = usable & (a_gpus_arr > 0)
    jobs_with, first = np.unique(a_job_arr[with_gpus], return_index=True)
    num_gpus[jobs_with] = a_gpus_arr[with_gpus][first]
    gmax = np.full(n, -1, dtype=np.int64)
    gmin = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.maximum.at(gmax, a_job_arr[usable], a_gpus_arr[usable])
    np.minimum.at(gmin, a_job_arr[usable], a_gpus_arr[usable])

    status_arr = np.array(status, dtype=object)
    keep = _apply_drops(
        n,
        [
            ("no submitted_time", sub.isna().to_numpy()),
            ("no scheduling attempts", n_att == 0),
            ("still running (status Running, or last attempt without end_time)", (status_arr == "Running") | last_open),
            ("no usable attempt (none with start_time and end_time, end >= start)", n_usable == 0),
            ("zero GPUs in every usable attempt", num_gpus == 0),
            ("zero run time (usable attempts sum to 0 s)", ~(duration > 0)),
        ],
        report,
    )
    kept_att = keep[a_job_arr]
    report.repair("attempts without start_time or end_time skipped", (kept_att & ~has_both).sum())
    report.repair("attempts with end_time before start_time skipped", (kept_att & inverted).sum())
    report.repair("jobs whose usable attempts differ in GPU count (first attempt's count kept)", (keep & (gmax != gmin)).sum())
    report.repair(AMBIGUOUS_RULE, (keep & sub_amb).sum() + (kept_att & (st_amb | en_amb)).sum())
    report.repair(NONEXISTENT_RULE, (keep & sub_non).sum() + (kept_att & (st_non | en_non)).sum())
    return _kept_rows(keep, sub, PACIFIC, job_id=jobid_arr, duration=duration, num_gpus=num_gpus,
                      user=np.array(user, dtype=object), vc=np.array(vc, dtype=object), status=status_arr)


def _load_helios(path: Path, source: str, report: TraceReport):
    raw = _read_csv(_read_bytes(path, source), source, header=True)
    _check_columns(raw.columns, HELIOS_COLUMNS, source, _WHAT["helios"])
    n = len(raw)
    report.rows_read = n
    if n == 0:
        raise TraceError(source, "no data rows (header only)")
    job_id = raw["job_id"].to_numpy(dtype=object)
    _check_unique(job_id, source, "job_id")
    gpus = _numbers(raw["gpu_num"], source, "gpu_num", required=True, what="a GPU count")
    _gpu_counts(gpus, raw["gpu_num"], source, "gpu_num", minimum=0)
    duration = _numbers(raw["duration"], source, "duration", required=False, what="a duration in seconds")
    neg = duration < 0
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise TraceError(source, f"expected a duration >= 0 seconds, got {duration[i]}", row=i, column="duration")
    local = _times(raw["submit_time"], source, "submit_time", required=True)
    aware, amb, non = _localize(local, HELIOS_TZ)
    keep = _apply_drops(
        n,
        [
            ("CPU-only job (gpu_num 0)", gpus == 0),
            ("zero or missing duration", ~(duration > 0)),
        ],
        report,
    )
    _durations(duration, raw["duration"], source, "duration", check=keep)
    report.repair(AMBIGUOUS_RULE, (keep & amb).sum())
    report.repair(NONEXISTENT_RULE, (keep & non).sum())
    return _kept_rows(keep, aware, HELIOS_TZ, job_id=job_id, duration=duration, num_gpus=gpus.astype(np.int64),
                      user=raw["user"].to_numpy(dtype=object), vc=raw["vc"].to_numpy(dtype=object),
                      status=raw["state"].to_numpy(dtype=object))


def _find_table(folder: Path, stem: str) -> Path | None:
    for suffix in (".csv", ".csv.gz"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _pai_paths(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        job, task = _find_table(path, "pai_job_table"), _find_table(path, "pai_task_table")
        if job is None or task is None:
            raise TraceError(str(path), "expected pai_job_table.csv and pai_task_table.csv (or .csv.gz) in this folder")
        return job, task
    name = path.name
    if "task_table" in name:
        other = path.with_name(name.replace("task_table", "job_table"))
        job = other if other.is_file() else _find_table(path.parent, "pai_job_table")
        if job is None:
            raise TraceError(str(path), f"this is a pai_task_table; expected the job table beside it ({other.name})")
        return job, path
    other = path.with_name(name.replace("job_table", "task_table")) if "job_table" in name else None
    task = other if other is not None and other.is_file() else _find_table(path.parent, "pai_task_table")
    if task is None:
        want = other.name if other is not None else "pai_task_table.csv"
        raise TraceError(str(path), f"expected the Alibaba PAI task table beside the job table: {want} not found")
    return path, task


def _read_pai(path: Path, columns: tuple[str, ...], what: str) -> tuple[pd.DataFrame, str]:
    source = str(path)
    raw = _read_csv(_read_bytes(path, source), source, header=False)
    if raw.shape[1] != len(columns):
        raise TraceError(
            source, f"expected {len(columns)} fields per row ({what}: {list(columns)}), found {raw.shape[1]}", row=0
        )
    raw.columns = list(columns)
    if len(raw) and [str(v).strip() for v in raw.iloc[0]] == list(columns):
        raw = raw.iloc[1:].reset_index(drop=True)  # a header row, as in the published .header files
    if len(raw) == 0:
        raise TraceError(source, f"no data rows in the {what}")
    return raw, source


def _load_alibaba(path: Path, source: str, report: TraceReport):
    job_path, task_path = _pai_paths(path)
    jobs, jsrc = _read_pai(job_path, PAI_JOB_COLUMNS, "pai_job_table")
    tasks, tsrc = _read_pai(task_path, PAI_TASK_COLUMNS, "pai_task_table")
    report.source = source if path.is_dir() else jsrc
    nj = len(jobs)
    report.rows_read = nj
    names = jobs["job_name"].str.strip().to_numpy(dtype=object)
    empty = names == ""
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise TraceError(jsrc, "expected a job_name, found an empty field", row=i, column="job_name")
    _check_unique(names, jsrc, "job_name")
    submit = _numbers(jobs["start_time"], jsrc, "start_time", required=False, what="a time in seconds")

    inst = _numbers(tasks["inst_num"], tsrc, "inst_num", required=True, what="a number of instances")
    plan = _numbers(tasks["plan_gpu"], tsrc, "plan_gpu", required=False, what="a GPU share in percent")
    t_start = _numbers(tasks["start_time"], tsrc, "start_time", required=False, what="a time in seconds")
    t_end = _numbers(tasks["end_time"], tsrc, "end_time", required=False, what="a time in seconds")
    for col, vals in (("inst_num", inst), ("plan_gpu", plan)):
        neg = vals < 0
        if neg.any():
            i = int(np.flatnonzero(neg)[0])
            raise TraceError(tsrc, f"expected a value >= 0, got {vals[i]}", row=i, column=col)
    plan = np.nan_to_num(plan, nan=0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        task_gpus_f = np.ceil(np.round(inst * plan / 100.0, 6))
    huge = ~(task_gpus_f <= MAX_GPUS)
    if huge.any():
        i = int(np.flatnonzero(huge)[0])
        raise TraceError(
            tsrc,
            f"expected inst_num * plan_gpu / 100 <= {MAX_GPUS} GPUs (MAX_GPUS), got inst_num "
            f"{tasks['inst_num'].iloc[i]!r} and plan_gpu {tasks['plan_gpu'].iloc[i]!r}",
            row=i,
            column="plan_gpu",
        )
    task_gpus = task_gpus_f.astype(np.int64)

    idx = pd.Index(names).get_indexer(tasks["job_name"].str.strip().to_numpy(dtype=object))
    known = idx >= 0
    report.repair("task rows whose job_name is not in pai_job_table (ignored)", (~known).sum())
    j = idx[known]
    t_gpus = task_gpus[known]
    t_has = ~np.isnan(t_start[known]) & ~np.isnan(t_end[known])
    n_tasks = np.bincount(j, minlength=nj)
    total_gpus = np.bincount(j, weights=t_gpus, minlength=nj)
    huge = total_gpus > MAX_GPUS
    if huge.any():
        i = int(np.flatnonzero(huge)[0])
        raise TraceError(
            jsrc,
            f"job {names[i]!r}: its tasks in {tsrc} ask for {int(total_gpus[i])} GPUs in total; "
            f"expected at most {MAX_GPUS} (MAX_GPUS)",
            row=i,
            column="job_name",
        )
    num_gpus = total_gpus.astype(np.int64)
    n_timed = np.bincount(j[t_has], minlength=nj)
    first_start = np.full(nj, np.nan)
    last_end = np.full(nj, np.nan)
    if t_has.any():
        timed = pd.DataFrame({"j": j[t_has], "s": t_start[known][t_has], "e": t_end[known][t_has]})
        agg = timed.groupby("j").agg(s=("s", "min"), e=("e", "max"))
        first_start[agg.index.to_numpy()] = agg["s"].to_numpy()
        last_end[agg.index.to_numpy()] = agg["e"].to_numpy()
    duration = last_end - first_start

    types = tasks["gpu_type"].str.strip().str.lower().to_numpy(dtype=object)[known]
    gpu_type = empty_strings(nj)
    mixed = np.zeros(nj, dtype=bool)
    on_gpu = t_gpus > 0
    if on_gpu.any():
        g = pd.DataFrame({"j": j[on_gpu], "g": t_gpus[on_gpu], "t": types[on_gpu]})
        best = g.sort_values(["j", "g"], ascending=[True, False], kind="stable").drop_duplicates("j")
        gpu_type[best["j"].to_numpy()] = best["t"].to_numpy(dtype=object)
        n_types = g[g["t"] != ""].groupby("j")["t"].nunique()
        mixed[n_types.index.to_numpy()[n_types.to_numpy() > 1]] = True

    keep = _apply_drops(
        nj,
        [
            ("no task rows in pai_task_table", n_tasks == 0),
            ("CPU-only job (0 GPUs: plan_gpu 0 or missing in every task)", num_gpus == 0),
            ("no submit time (job start_time missing)", np.isnan(submit)),
            ("no task with both start_time and end_time (e.g. Waiting or Running)", n_timed == 0),
            ("non-positive duration (last task end <= first task start)", ~(duration > 0)),
        ],
        report,
    )
    short = keep & (duration < MIN_DURATION)
    if short.any():
        i = int(np.flatnonzero(short)[0])
        raise TraceError(
            jsrc,
            f"job {names[i]!r}: its tasks in {tsrc} run from start_time {shown(first_start[i])} to end_time "
            f"{shown(last_end[i])}, {shown(duration[i])} s; {duration_error()}",
            row=i,
            column="job_name",
        )
    report.repair("jobs whose GPU tasks name several GPU types (type of the largest task kept)", (keep & mixed).sum())
    report.repair("jobs with tasks lacking start_time or end_time (ignored for duration)", (keep & (n_timed < n_tasks)).sum())
    if not keep.any():
        return _frame(0), None, None
    origin = np.min(submit[keep])
    df = _frame(
        int(keep.sum()),
        job_id=names[keep],
        submit_time=submit[keep] - origin,
        duration=duration[keep],
        num_gpus=num_gpus[keep],
        user=jobs["user"].to_numpy(dtype=object)[keep],
        status=jobs["status"].to_numpy(dtype=object)[keep],
        gpu_type=gpu_type[keep],
    )
    return df, None, None


def _canonical(raw: pd.DataFrame, source: str, what: str) -> pd.DataFrame:
    _check_columns(raw.columns, COLUMNS, source, what)
    if len(raw) == 0:
        raise TraceError(source, "no data rows (header only)")
    out = {}
    for c in COLUMNS:
        col = raw[c]
        if c in ("submit_time", "duration", "num_gpus") and not pd.api.types.is_numeric_dtype(col):
            out[c] = _numbers(col, source, c, required=True)
            # Checked here, on the text, so that errors quote the file's value as written.
            if c == "duration":
                _durations(out[c], col, source, c)
            elif c == "num_gpus":
                _gpu_counts(out[c], col, source, c, minimum=1)
        else:
            out[c] = col.to_numpy()
    return pd.DataFrame(out)


def _load_csv(path: Path, source: str, report: TraceReport):
    raw = _read_csv(_read_bytes(path, source), source, header=True)
    report.rows_read = len(raw)
    return _canonical(raw, source, _WHAT["csv"]), None, None


def _load_parquet(path: Path, source: str, report: TraceReport):
    data = _read_bytes(path, source)
    if not data.startswith(_PARQUET_MAGIC):
        raise TraceError(source, "not a Parquet file (no PAR1 magic bytes at the start)")
    try:
        raw = pq.read_table(pa.BufferReader(data)).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise TraceError(source, f"truncated or corrupt Parquet file: {exc}") from exc
    report.rows_read = len(raw)
    return _canonical(raw, source, _WHAT["parquet"]), None, None


_LOADERS = {
    "pollux_philly": _load_pollux,
    "philly_json": _load_philly_json,
    "helios": _load_helios,
    "alibaba_pai": _load_alibaba,
    "csv": _load_csv,
    "parquet": _load_parquet,
}
