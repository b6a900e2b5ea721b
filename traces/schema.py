"""The canonical job table every loader produces, and the validator every loader ends with.

One row per job, sorted by submit time, times in seconds from the start of the trace:

=============  =========  ==========================================================
column         dtype      meaning
=============  =========  ==========================================================
job_id         str        unique within the trace
submit_time    float64    seconds from the first submit (>= 0, non-decreasing)
duration       float64    GPU run time at the original allocation, seconds
                          (>= :data:`MIN_DURATION`)
num_gpus       int64      GPUs the job requested (1 to :data:`MAX_GPUS`)
user           str        may be empty
vc             str        virtual cluster / queue; may be empty
status         str        e.g. Pass, Killed, Failed, COMPLETED; may be empty
gpu_type       str        GPU type the job ran on; may be empty
model          str        model type (a key of :data:`traces.models.MODELS`); may be empty
=============  =========  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

COLUMNS: tuple[str, ...] = (
    "job_id",
    "submit_time",
    "duration",
    "num_gpus",
    "user",
    "vc",
    "status",
    "gpu_type",
    "model",
)
NUMERIC_COLUMNS = ("submit_time", "duration", "num_gpus")
STRING_COLUMNS = ("job_id", "user", "vc", "status", "gpu_type", "model")

MIN_DURATION = 1e-3
"""The shortest duration a job may have, in seconds (1 ms). Traces record whole seconds or at
most milliseconds; anything shorter is a damaged value, and would make per-job ratios such as
slowdown (JCT / duration) overflow."""
MAX_GPUS = 2**31 - 1
"""The most GPUs a job may request: the largest int32, far beyond any cluster, so that a count
is exact as a float64 and sums and products of counts cannot overflow int64."""


class TraceError(ValueError):
    """A trace file or table that cannot be read as documented.

    The message always names the source (file or table), and where known the 0-based data row
    (header excluded) and the column, and what was expected there.
    """

    def __init__(
        self,
        source: str,
        message: str,
        *,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = str(source)
        self.row = row
        self.column = column
        where = [self.source]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}")


@dataclass
class LoadReport:
    """What a loader read, kept and dropped; attached to a loaded table as ``df.attrs['report']``.

    ``dropped`` maps each documented filtering rule to the number of rows it removed, so that no
    filtering is silent.
    """

    source: str
    format: str
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def rows_kept(self) -> int:
        return self.rows_read - sum(self.dropped.values())

    def drop(self, rule: str, count: int) -> None:
        if count:
            self.dropped[rule] = self.dropped.get(rule, 0) + int(count)

    def __str__(self) -> str:
        lines = [f"{self.source} ({self.format}): read {self.rows_read}, kept {self.rows_kept}"]
        lines += [f"  dropped {n}: {rule}" for rule, n in self.dropped.items()]
        return "\n".join(lines)


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def shown(value: object) -> str:
    """A value as an error message quotes it: text in quotes, numbers as written (an integer
    too large for int64 keeps all its digits)."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def gpu_count_error(minimum: int = 1) -> str:
    """What a GPU count must be, as error messages say it."""
    return f"expected an integer number of GPUs >= {minimum} and <= {MAX_GPUS} (MAX_GPUS)"


def bad_gpu_counts(values: np.ndarray, minimum: int = 1) -> np.ndarray:
    """Mask of GPU counts (float64) that are not integers in ``[minimum, MAX_GPUS]``."""
    return ~((values >= minimum) & (values <= MAX_GPUS) & (values == np.round(values)))


def duration_error() -> str:
    """What a duration must be, as error messages say it."""
    return f"expected a finite duration > 0 seconds, at least {MIN_DURATION:g} s (MIN_DURATION)"


def validate(
    df: pd.DataFrame, source: str = "<table>", *, sort: bool = True, rebase: bool = False
) -> pd.DataFrame:
    """Check a job table against the canonical schema and return it normalised.

    Raises :class:`TraceError` naming ``source``, the offending row (position in ``df``), the
    column and the value as ``df`` holds it, for: missing or extra columns, non-numeric or
    non-finite times/durations, negative submit times, durations below :data:`MIN_DURATION`, GPU
    counts that are not integers from 1 to :data:`MAX_GPUS`, duplicate job ids. String columns
    are coerced to ``str`` with missing values as ``""``. Rows are sorted by submit time (stable,
    so ties keep file order) unless ``sort`` is False, in which case unsorted submits are an
    error. With ``rebase``, submit times become seconds from the first submit (the earliest is
    0), so that a constant shift of every submit (e.g. Unix-epoch times) changes nothing
    downstream. The index is reset to 0..n-1.
    """
    if not isinstance(df, pd.DataFrame):
        raise TraceError(source, f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise TraceError(source, f"missing columns {missing}; expected exactly {list(COLUMNS)}")
    extra = [c for c in df.columns if c not in COLUMNS]
    if extra:
        raise TraceError(source, f"unexpected columns {extra}; expected exactly {list(COLUMNS)}")
    if len(df) == 0:
        raise TraceError(source, "no jobs (empty table)")

    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    raws = {}
    for col in ("submit_time", "duration", "num_gpus"):
        raw = df[col].reset_index(drop=True)
        raws[col] = raw
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna().to_numpy() & raw.notna().to_numpy()
        if bad.any():
            i = _first_bad(bad)
            raise TraceError(source, f"expected a number, got {raw.iloc[i]!r}", row=i, column=col)
        with np.errstate(over="ignore"):
            vals = num.to_numpy(dtype=np.float64)
        nonfinite = ~np.isfinite(vals)
        if nonfinite.any():
            i = _first_bad(nonfinite)
            raise TraceError(source, f"expected a finite number, got {shown(raw.iloc[i])}", row=i, column=col)
        out[col] = vals

    def check(bad: np.ndarray, col: str, expected: str) -> None:
        if bad.any():
            i = _first_bad(bad)
            raise TraceError(source, f"{expected}, got {shown(raws[col].iloc[i])}", row=i, column=col)

    check(out["submit_time"].to_numpy() < 0, "submit_time", "expected submit_time >= 0")
    check(~(out["duration"].to_numpy() >= MIN_DURATION), "duration", duration_error())
    gpus = out["num_gpus"].to_numpy()
    check(bad_gpu_counts(gpus), "num_gpus", gpu_count_error())
    out["num_gpus"] = gpus.astype(np.int64)

    for col in STRING_COLUMNS:
        s = df[col].reset_index(drop=True)
        out[col] = s.where(s.notna(), "").astype(str).to_numpy(dtype=object)
    dup = out["job_id"].duplicated().to_numpy()
    if dup.any():
        i = _first_bad(dup)
        raise TraceError(source, f"duplicate job_id {out['job_id'][i]!r}", row=i, column="job_id")

    submit = out["submit_time"].to_numpy()
    if rebase and submit.min() != 0:
        submit = submit - submit.min()
        out["submit_time"] = submit
    if sort:
        order = np.argsort(submit, kind="stable")
        out = out.iloc[order].reset_index(drop=True)
    elif (np.diff(submit) < 0).any():
        i = _first_bad(np.diff(submit) < 0) + 1
        raise TraceError(
            source, "expected submit times sorted in non-decreasing order", row=i, column="submit_time"
        )
    out = out[list(COLUMNS)]
    out.attrs.update(df.attrs)
    return out


def make_trace(data, source: str = "<table>", *, rebase: bool = True) -> pd.DataFrame:
    """A validated canonical table from the columns given (a DataFrame or a dict of columns):
    ``submit_time``, ``duration`` and ``num_gpus`` are required; ``job_id`` defaults to
    ``j0, j1, ...`` and the other string columns to empty. Submit times are re-based to the
    first submit (see :func:`validate`) unless ``rebase`` is False, which keeps them as given
    (e.g. a job arriving mid-way through the first scheduling round)."""
    df = pd.DataFrame(data)
    n = len(df)
    if "job_id" not in df.columns:
        df["job_id"] = [f"j{i}" for i in range(n)]
    for col in STRING_COLUMNS:
        if col not in df.columns:
            df[col] = empty_strings(n)
    ordered = df[[c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS]]
    return validate(ordered, source, rebase=rebase)


def empty_strings(n: int) -> np.ndarray:
    """An object array of ``n`` empty strings, for optional columns a format does not carry."""
    return np.full(n, "", dtype=object)
