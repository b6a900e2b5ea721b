"""Cells of a suite as Ray tasks, on one machine or a cluster (``--backend ray``).

Each missing cell runs as one Ray task (``cpus_per_cell`` CPUs) that calls
:func:`leaderboard.runner.simulate_cell`, the same function the local process pool runs, and
returns the bytes of the cell's cache file through Ray's object store. The driver (the process
running ``python -m leaderboard``) writes each cell file and its checksum as its result arrives,
with the same atomic renames as the local backend. So:

- no storage is shared between machines: workers read nothing from the output folder and write
  nothing to it; only the driver's machine holds the cache and the outputs;
- killing the driver (Ctrl-C, SIGTERM, SIGKILL) loses only the cells under way: Ray ends the
  tasks of a driver that is gone, and the next run, on either backend, computes only the
  missing cells;
- outputs are rebuilt from the cell files, as with the local backend, so they are the same bytes
  (``timing.csv``, the wall times, excepted) whichever backend, machine or order computed them.

Every machine of the cluster needs the project installed at the same version (the same checkout
and the same versions of numpy, numba and the other dependencies, for bit-identical results).
Cells carry their job table, so trace files need only be on the driver's machine; a saved agent
(``--agent``) is loaded by path, so its folder must be at the same path on every machine.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from leaderboard.runner import _progress, cell_path, simulate_cell, write_cell_file
from leaderboard.suite import Cell

#: cells submitted per CPU-slot of the cluster at most: an interrupt then loses little queued work
IN_FLIGHT_PER_SLOT = 2


class RayBackendError(ValueError):
    """Ray is missing, or the cluster cannot run a cell with the CPUs asked for."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayBackendError('--backend ray needs Ray: pip install -e ".[ray]"') from None
    return ray


def _cell_task(cell: Cell) -> tuple[int, bytes | None, str | None, float, str]:
    """The body of a Ray task: one cell, computed as the local backend computes it, and the ID of
    the Ray node that computed it."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    data, error, wall = simulate_cell(cell)
    return cell.index, data, error, wall, _ray().get_runtime_context().get_node_id()


def connect(address: str | None = None) -> bool:
    """Connect to the Ray cluster at ``address`` (``None``: start a local instance, or use the
    one this process already started). Returns whether this call started the connection."""
    ray = _ray()
    if ray.is_initialized():
        return False
    # ray.init installs its own SIGTERM/SIGINT handlers, which exit at once: keep the caller's
    # (the CLI turns SIGTERM into KeyboardInterrupt, so the run cancels its tasks and says so)
    main = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    if address is None:
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)
    return True


def _slots(ray: Any, cpus_per_cell: float) -> int:
    """How many cells the cluster runs at once; a clear error if no node can run one."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    per_node = [float(n.get("Resources", {}).get("CPU", 0.0)) for n in nodes]
    if not per_node or max(per_node) < cpus_per_cell:
        raise RayBackendError(f"--cpus-per-cell {cpus_per_cell:g}: no node of the Ray cluster has that many CPUs "
                         f"(CPUs per node: {', '.join(f'{c:g}' for c in per_node) or 'no node'})")
    return max(1, sum(int(c // cpus_per_cell) for c in per_node))


def compute_ray(cells: list[Cell], cache_dir: Path, *, address: str | None = None, cpus_per_cell: float = 1.0,
                progress: bool = False, desc: str = "",
                nodes: Counter[str] | None = None) -> list[tuple[Cell, str]]:
    """Compute ``cells`` as Ray tasks and write their cache files in ``cache_dir`` (from this
    process). Returns the failed cells with their errors, in cell order, like
    :func:`leaderboard.runner.compute`; counts in ``nodes`` (if given) the cells each Ray node
    computed, by node ID."""
    if not cpus_per_cell > 0:
        raise RayBackendError(f"--cpus-per-cell must be > 0, got {cpus_per_cell:g}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    failed: list[tuple[Cell, str]] = []
    if not cells:
        return failed
    ray = _ray()
    started = connect(address)
    try:
        task = ray.remote(_cell_task).options(num_cpus=cpus_per_cell, max_retries=3)
        limit = IN_FLIGHT_PER_SLOT * _slots(ray, cpus_per_cell)
        by_index = {c.index: c for c in cells}
        queue = list(cells)
        pending: list[Any] = []
        bar = _progress(len(cells), desc, progress)
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    pending.append(task.remote(queue.pop(0)))
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    index, data, error, _, node = ray.get(ref)
                    cell = by_index[index]
                    if nodes is not None:
                        nodes[node] += 1
                    if data is not None:
                        write_cell_file(cell_path(cache_dir, cell), data)
                    else:
                        failed.append((cell, error or "unknown error"))
                    bar.set_postfix_str(cell.policy, refresh=False)
                    bar.update(1)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
    finally:
        if started:
            ray.shutdown()
    failed.sort(key=lambda x: x[0].index)
    return failed
