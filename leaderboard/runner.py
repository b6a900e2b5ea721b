"""Running a suite: cells in parallel processes, one cache file per cell, resumable.

Each cell's result (per-job table, metrics, events, wall time) is written to
``<out>/cells/<key>.parquet`` (the per-job table; the rest in the file's schema metadata) by an
atomic rename, so a run killed at any point leaves only whole cell files, and the next run
computes exactly the cells whose file is missing. Beside each cell file, ``<key>.parquet.sha256``
(``sha256sum`` format) holds the SHA-256 of its bytes: a cell file that is truncated, altered,
unreadable or lacks its checksum is recomputed with a :class:`CellCacheWarning` naming the file,
so a damaged cache never fails a run nor feeds it different data. The key is the hash of the cell's full
definition (:func:`leaderboard.suite.cell_key`), so cells of other suites, other ``--jobs``
or another package version never collide. Outputs are always rebuilt from the cell files of
the current run, whichever process computed them, so they do not depend on ``--workers``,
on the order cells finished in, or on what was cached.

The key covers the source of ``envs``, ``baselines``, ``traces`` and ``agents``, not of
dependencies (numpy, pandas...): after upgrading those, run with ``--fresh`` to recompute.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leaderboard.suite import Cell, PolicySpec, Suite, sim_config
from traces.clusters import NODE_COLUMNS, ClusterSpec

#: Test hook: seconds each cell sleeps before computing (lets tests interrupt a run mid-way).
DELAY_ENV = "CLUSTERGYM_LEADERBOARD_CELL_DELAY"
META_KEY = b"clustergym.leaderboard"
CHECKSUM_SUFFIX = ".sha256"


class CellCacheWarning(UserWarning):
    """A cached cell file is damaged (truncated, altered, unreadable or without its checksum)
    and is recomputed."""


class DamagedCellError(ValueError):
    """A cached cell file fails its checksum or cannot be read back."""


@dataclass
class CellResult:
    """A finished cell, read back from its cache file."""

    cell: Cell
    jobs: pd.DataFrame
    metrics: dict[str, float]
    events: int
    wall_time: float


@dataclass
class RunSummary:
    """What :func:`run` did: counts, failures and the output files."""

    suite: str
    out: Path
    cells: int
    cached: int
    computed: int
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    nodes: Counter[str] = field(default_factory=Counter)
    """cells computed per Ray node (by node ID); empty on the local backend"""


def cell_path(cache_dir: Path, cell: Cell) -> Path:
    return cache_dir / f"{cell.key}.parquet"


def checksum_path(path: Path) -> Path:
    """The checksum file of the cell file ``path``: ``<key>.parquet.sha256``."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def _replace_atomically(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def write_cell_file(target: Path, data: bytes) -> None:
    """Write the cell file ``target`` and its checksum, each by an atomic rename.

    The checksum goes first: a kill between the two renames leaves a checksum without a cell
    file (the cell is missing and is computed), never a whole cell file without its checksum."""
    digest = hashlib.sha256(data).hexdigest()
    _replace_atomically(checksum_path(target), f"{digest}  {target.name}\n".encode())
    _replace_atomically(target, data)


def remove_cell_file(path: Path) -> None:
    """Delete a cell file and its checksum (either may be absent)."""
    path.unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(cache_dir: Path) -> int:
    """Delete half-written cell and checksum files (``.<key>.parquet[.sha256].<pid>.tmp``) of
    processes that are gone."""
    removed = 0
    for tmp in cache_dir.glob(".*.parquet.*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
        except ValueError:
            continue
        if not _alive(pid):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


_CLUSTERS: dict[str, ClusterSpec] = {}


def _cluster(definition: dict) -> ClusterSpec:
    c = definition["cluster"]
    key = json.dumps(c, sort_keys=True)
    if key not in _CLUSTERS:
        _CLUSTERS[key] = ClusterSpec(c["name"], pd.DataFrame(c["nodes"], columns=list(NODE_COLUMNS)))
    return _CLUSTERS[key]


def simulate_cell(cell: Cell) -> tuple[bytes | None, str | None, float]:
    """Simulate ``cell`` and return ``(data, error, wall)``: ``data`` the bytes of its cache
    file, or ``None`` with ``error`` = ``"Type: message"`` if the cell failed. The one place a
    cell is computed, whichever backend runs it (:func:`compute_cell`, the Ray backend)."""
    delay = os.environ.get(DELAY_ENV)
    if delay:
        time.sleep(float(delay))
    import envs

    start = time.perf_counter()
    try:
        spec = _cluster(cell.definition)
        trace = cell.runtime["trace"]
        policy = cell.runtime["policy"].build()
        sim = cell.definition["sim"]
        res = envs.simulate(trace, spec, policy, sim=sim_config(sim), known_durations=sim["known_durations"],
                            seed=cell.seed)
    except Exception as exc:  # a failing cell is reported, not cached, and retried next run
        return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - start
    wall = time.perf_counter() - start
    meta = {"definition": cell.definition, "labels": cell.labels(), "metrics": res.metrics,
            "events": int(res.events), "wall_time": wall}
    table = pa.Table.from_pandas(res.jobs, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes(), None, wall


def compute_cell(cell: Cell, path: str) -> tuple[int, str | None, float]:
    """Simulate ``cell`` and write its cache file atomically. Returns ``(index, error, wall)``;
    ``error`` is ``"Type: message"`` if the cell failed (nothing is written then)."""
    data, error, wall = simulate_cell(cell)
    if data is not None:
        write_cell_file(Path(path), data)
    return cell.index, error, wall


def _verified_bytes(path: Path) -> bytes:
    """The bytes of the cell file ``path`` if they match its checksum file; else
    :class:`DamagedCellError` saying what is wrong, quoting the files' own values."""
    data = path.read_bytes()
    sums = checksum_path(path)
    try:
        recorded_text = sums.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        raise DamagedCellError(f"{path}: no checksum file {sums.name}") from None
    recorded = recorded_text.split()
    if len(recorded) != 2 or len(recorded[0]) != 64 or recorded[1] != path.name \
            or any(ch not in "0123456789abcdef" for ch in recorded[0]):
        raise DamagedCellError(f"{sums}: expected '<64 hex digits>  {path.name}', found {recorded_text[:120]!r}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded[0]:
        raise DamagedCellError(f"{path}: SHA-256 {actual} ({len(data)} bytes) does not match "
                               f"{recorded[0]} recorded in {sums.name}")
    return data


def verified_bytes(path: Path) -> bytes:
    """The bytes of a file written by :func:`write_cell_file`, checked against its checksum
    (:class:`DamagedCellError` otherwise); for other caches that share this file layout."""
    return _verified_bytes(path)


def read_cell(cell: Cell, path: Path) -> CellResult:
    """Read back a cell file, verified against its checksum. Raises :class:`DamagedCellError` if
    the file fails its checksum or does not hold a cell result."""
    data = _verified_bytes(path)
    try:
        table = pq.read_table(pa.BufferReader(data))
        meta = json.loads(table.schema.metadata[META_KEY])
        definition, metrics = meta["definition"], meta["metrics"]
        events, wall_time = int(meta["events"]), float(meta["wall_time"])
        jobs = table.to_pandas()
    except (pa.ArrowException, OSError, ValueError, TypeError, KeyError) as exc:
        what = f"no {META_KEY.decode()} metadata" if isinstance(exc, (KeyError, TypeError)) else \
            f"{type(exc).__name__}: {exc}"
        raise DamagedCellError(f"{path}: not a readable cell file ({what})") from None
    if definition != json.loads(json.dumps(cell.definition)):
        raise RuntimeError(f"{path}: cache file does not hold cell {cell.labels()} (hash collision?)")
    return CellResult(cell, jobs, metrics, events, wall_time)


def read_cached(cells: list[Cell], cache_dir: Path) -> tuple[dict[int, CellResult], list[Cell]]:
    """Read the cached cells of ``cells``; returns ``(results by cell index, cells to compute)``.

    A cell is computed if its file is missing, or damaged: then the file and its checksum are
    deleted and a :class:`CellCacheWarning` names the file and what is wrong with it."""
    cached: dict[int, CellResult] = {}
    todo: list[Cell] = []
    for c in cells:
        path = cell_path(cache_dir, c)
        if not path.is_file():
            todo.append(c)
            continue
        try:
            cached[c.index] = read_cell(c, path)
        except DamagedCellError as exc:
            warnings.warn(f"damaged cache: {exc}; recomputing cell "
                          f"{', '.join(f'{k}={v}' for k, v in c.labels().items())}", CellCacheWarning, stacklevel=3)
            remove_cell_file(path)
            todo.append(c)
    return cached, todo


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with_parent(parent: int) -> None:
    """End this worker process when its parent ``parent`` dies, even by SIGKILL (which gives the
    parent no chance to stop its pool): on Linux the kernel sends SIGKILL on the parent's death
    (``prctl(PR_SET_PDEATHSIG)``), elsewhere a daemon thread polls the parent's pid. With every
    worker gone, multiprocessing's resource tracker reads end-of-file and exits too."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(parent: int | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker (torch reads it on import)
    if parent is not None:
        _exit_with_parent(parent)


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


#: The progress bar: cells done, elapsed time and the estimated time to finish (ETA).
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} cells [{elapsed} elapsed, ETA {remaining}{postfix}]"


def _progress(total: int, desc: str, enabled: bool):
    """A progress bar whose ETA extrapolates the mean time per cell so far (``smoothing=0``:
    cells of one suite differ a lot in cost, so a moving average of the last few swings)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="cell", disable=not enabled, dynamic_ncols=True,
                bar_format=BAR_FORMAT, smoothing=0.0)


def compute(cells: list[Cell], cache_dir: Path, *, workers: int, progress: bool, desc: str) -> list[tuple[Cell, str]]:
    """Compute ``cells`` (``workers`` processes; in this process if 1). Returns the failures."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    failed: list[tuple[Cell, str]] = []
    if not cells:
        return failed
    by_index = {c.index: c for c in cells}
    bar = _progress(len(cells), desc, progress)
    try:
        if workers <= 1 or len(cells) == 1:
            for c in cells:
                _, err, _ = compute_cell(c, str(cell_path(cache_dir, c)))
                if err:
                    failed.append((c, err))
                bar.set_postfix_str(c.policy, refresh=False)
                bar.update(1)
            return failed
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(workers, len(cells)), mp_context=ctx, initializer=_init_worker,
                                   initargs=(os.getpid(),))
        pending: set[Future] = set()
        try:
            queue = list(cells)
            # keep at most 2 x workers cells submitted: an interrupt then loses little queued work
            while queue or pending:
                while queue and len(pending) < 2 * workers:
                    c = queue.pop(0)
                    pending.add(pool.submit(compute_cell, c, str(cell_path(cache_dir, c))))
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    index, err, _ = f.result()
                    if err:
                        failed.append((by_index[index], err))
                    bar.set_postfix_str(by_index[index].policy, refresh=False)
                    bar.update(1)
        except BaseException:
            for f in pending:
                f.cancel()
            for p in list((getattr(pool, "_processes", None) or {}).values()):
                p.terminate()  # whole cell files only ever appear by rename: killing is safe
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    finally:
        bar.close()
    failed.sort(key=lambda x: x[0].index)
    return failed


#: where cells are computed: processes of this machine, or tasks on a Ray cluster
BACKENDS = ("local", "ray")


def run(
    suite: Suite,
    *,
    policies: list[str] | None = None,
    agents: list[str | Path] = (),
    out: str | Path | None = None,
    num_jobs: int | None = None,
    workers: int | None = None,
    progress: bool = False,
    fresh: bool = False,
    backend: str = "local",
    address: str | None = None,
    cpus_per_cell: float = 1.0,
) -> RunSummary:
    """Run ``suite`` (computing only the cells not cached in ``out``) and write its outputs.

    ``policies`` defaults to the suite's (FIFO, the reference, is always added); ``agents`` are
    saved agent folders; ``num_jobs`` overrides the jobs per window; ``fresh`` recomputes every
    cell. ``backend`` is ``"local"`` (``workers`` processes) or ``"ray"`` (cells as Ray tasks of
    ``cpus_per_cell`` CPUs on the cluster at ``address``, a local one if ``None``; see
    :mod:`leaderboard.ray_backend`): the outputs are the same bytes either way.
    Raises :class:`leaderboard.suite.MissingDataError` if the suite's data is absent.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    from leaderboard import report

    specs: list[PolicySpec] = suite.policy_specs(policies, list(agents))
    cells = suite.cells(specs, num_jobs=num_jobs)
    out = Path(out) if out is not None else Path("leaderboard-results") / suite.name
    cache_dir = out / "cells"
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(cache_dir)
    if fresh:
        for c in cells:
            remove_cell_file(cell_path(cache_dir, c))
    cached, todo = read_cached(cells, cache_dir)
    nodes: Counter[str] = Counter()
    if backend == "ray":
        from leaderboard.ray_backend import compute_ray

        failed = compute_ray(todo, cache_dir, address=address, cpus_per_cell=cpus_per_cell, progress=progress,
                             desc=suite.name, nodes=nodes)
    else:
        workers = default_workers() if workers is None else max(1, int(workers))
        failed = compute(todo, cache_dir, workers=workers, progress=progress, desc=suite.name)
    failed_idx = {c.index for c, _ in failed}
    results = [cached[c.index] if c.index in cached else read_cell(c, cell_path(cache_dir, c))
               for c in cells if c.index not in failed_idx]
    files = report.write_all(suite, specs, cells, results, failed, out)
    return RunSummary(suite.name, out, len(cells), len(cells) - len(todo), len(todo) - len(failed), failed, files,
                      nodes)
