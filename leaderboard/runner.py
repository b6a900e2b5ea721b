"""Running a suite: cells in parallel processes, one cache file per cell, resumable.

Each cell's result (per-job table, metrics, events, wall time) is written to
``<out>/cells/<key>.parquet`` (the per-job table; the rest in the file's schema metadata) by an
atomic rename, so a run killed at any point leaves only whole cell files, and the next run
computes exactly the cells whose file is missing. The key is the hash of the cell's full
definition (:func:`leaderboard.suite.cell_key`), so cells of other suites, other ``--jobs``
or another package version never collide. Outputs are always rebuilt from the cell files of
the current run, whichever process computed them, so they do not depend on ``--workers``,
on the order cells finished in, or on what was cached.

The key covers the source of ``envs``, ``baselines``, ``traces`` and ``agents``, not of
dependencies (numpy, pandas...): after upgrading those, run with ``--fresh`` to recompute.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
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


def cell_path(cache_dir: Path, cell: Cell) -> Path:
    return cache_dir / f"{cell.key}.parquet"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(cache_dir: Path) -> int:
    """Delete half-written cell files (``.<key>.parquet.<pid>.tmp``) of processes that are gone."""
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


def compute_cell(cell: Cell, path: str) -> tuple[int, str | None, float]:
    """Simulate ``cell`` and write its cache file atomically. Returns ``(index, error, wall)``;
    ``error`` is ``"Type: message"`` if the cell failed (nothing is written then)."""
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
        return cell.index, f"{type(exc).__name__}: {exc}", time.perf_counter() - start
    wall = time.perf_counter() - start
    meta = {"definition": cell.definition, "labels": cell.labels(), "metrics": res.metrics,
            "events": int(res.events), "wall_time": wall}
    table = pa.Table.from_pandas(res.jobs, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    return cell.index, None, wall


def read_cell(cell: Cell, path: Path) -> CellResult:
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[META_KEY])
    if meta["definition"] != json.loads(json.dumps(cell.definition)):
        raise RuntimeError(f"{path}: cache file does not hold cell {cell.labels()} (hash collision?)")
    return CellResult(cell, table.to_pandas(), meta["metrics"], int(meta["events"]), float(meta["wall_time"]))


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker (torch reads it on import)


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
        pool = ProcessPoolExecutor(max_workers=min(workers, len(cells)), mp_context=ctx, initializer=_init_worker)
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
) -> RunSummary:
    """Run ``suite`` (computing only the cells not cached in ``out``) and write its outputs.

    ``policies`` defaults to the suite's (FIFO, the reference, is always added); ``agents`` are
    saved agent folders; ``num_jobs`` overrides the jobs per window; ``fresh`` recomputes every
    cell. Raises :class:`leaderboard.suite.MissingDataError` if the suite's data is absent.
    """
    from leaderboard import report

    specs: list[PolicySpec] = suite.policy_specs(policies, list(agents))
    cells = suite.cells(specs, num_jobs=num_jobs)
    out = Path(out) if out is not None else Path("leaderboard-results") / suite.name
    cache_dir = out / "cells"
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(cache_dir)
    if fresh:
        for c in cells:
            cell_path(cache_dir, c).unlink(missing_ok=True)
    todo = [c for c in cells if not cell_path(cache_dir, c).is_file()]
    workers = default_workers() if workers is None else max(1, int(workers))
    failed = compute(todo, cache_dir, workers=workers, progress=progress, desc=suite.name)
    failed_idx = {c.index for c, _ in failed}
    results = [read_cell(c, cell_path(cache_dir, c)) for c in cells if c.index not in failed_idx]
    files = report.write_all(suite, specs, cells, results, failed, out)
    return RunSummary(suite.name, out, len(cells), len(cells) - len(todo), len(todo) - len(failed), failed, files)
