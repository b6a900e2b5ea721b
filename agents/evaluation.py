"""How a learned scheduler is judged against the baselines: splits, windows, paired statistics,
the final table, and cached baseline episodes.

The protocol, in the order ``train.py`` applies it:

1. :func:`split_by_time` cuts a trace, in submit order, into a training part, a validation part
   (the end of the training period: periodic evaluations and the choice of the checkpoint kept)
   and a test part (the held-out rest: the final table only, never used to choose anything).
2. :func:`contended_windows` picks the episode windows of a part: evenly spaced candidate
   windows, each replayed under FIFO, kept when jobs actually queue (:data:`WAIT_SECONDS`,
   ``min_waiting_fraction``). Windows on which no scheduler can matter would pull every ratio
   towards 1; they are counted and reported apart, not ranked.
3. Every policy runs on the same (window, seed) episodes; :func:`compare` gives the ratio of
   two policies' mean avg JCT with a paired bootstrap CI over windows, and their
   wins / ties / losses per window; :func:`final_table` assembles the table.
4. Baseline episodes are cached on disk (:class:`EpisodeCache`), one file per episode keyed
   by the hash of everything that decides its result, as the leaderboard caches its cells.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from envs.policy import Policy
from traces import window as trace_window
from traces.clusters import ClusterSpec

#: a job "waited" when its queueing delay (first start - submit) exceeds this many seconds
WAIT_SECONDS = 1.0
#: relative difference of two per-window mean avg JCTs within which a window is a tie
TIE_TOLERANCE = 0.005
#: bootstrap resamples (over windows) of :func:`compare`'s confidence interval
BOOTSTRAP_RESAMPLES = 9_999
#: the two tracks: whether the policies of the track see true job durations
TRACKS = {"non-clairvoyant": False, "clairvoyant": True}
#: environment variable naming the baseline cache folder (overridden by an explicit path)
CACHE_ENV = "CLUSTERGYM_BASELINE_CACHE"
#: bumped when the layout or meaning of a cached episode changes
CACHE_FORMAT = 1


# ------------------------------------------------------------------------------------ splits
class Split(NamedTuple):
    """The three disjoint parts of a trace, each re-based to submit at 0."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def _rebased(part: pd.DataFrame) -> pd.DataFrame:
    part = part.reset_index(drop=True)
    if len(part):
        part["submit_time"] = part["submit_time"] - part["submit_time"].iloc[0]
    return part


def split_by_time(trace: pd.DataFrame, train_fraction: float = 0.7, validation_fraction: float = 0.1) -> Split:
    """Cut ``trace`` (sorted by submit time) by job count, in submit order: the first
    ``train_fraction - validation_fraction`` of its jobs train, the next ``validation_fraction``
    validate (the end of the training period), the remaining ``1 - train_fraction`` are the
    test part. Fractions are of the whole trace; each part is re-based to submit at 0.

    ``ValueError`` unless ``0 < validation_fraction < train_fraction < 1``, the trace is sorted,
    or if a part would be empty."""
    for name, value in (("train_fraction", train_fraction), ("validation_fraction", validation_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"split_by_time: {name} must be a number, got {value!r}")
    if not 0 < validation_fraction < train_fraction < 1:
        raise ValueError(f"split_by_time: need 0 < validation_fraction < train_fraction < 1, got "
                         f"validation_fraction={validation_fraction}, train_fraction={train_fraction}")
    submit = trace["submit_time"].to_numpy()
    if np.any(np.diff(submit) < 0):
        raise ValueError("split_by_time: the trace is not sorted by submit_time")
    n = len(trace)
    cut_test = int(n * train_fraction)
    cut_val = int(n * (train_fraction - validation_fraction))
    if not 0 < cut_val < cut_test < n:
        raise ValueError(f"split_by_time: {n} jobs are too few for parts of fractions "
                         f"{train_fraction - validation_fraction:g} / {validation_fraction:g} / "
                         f"{1 - train_fraction:g} (a part would be empty)")
    return Split(_rebased(trace.iloc[:cut_val]), _rebased(trace.iloc[cut_val:cut_test]),
                 _rebased(trace.iloc[cut_test:]))


# ------------------------------------------------------------------------------------ windows
@dataclass(frozen=True)
class WindowSet:
    """The episode windows of one part of a trace, and how they were chosen.

    ``starts``: index in the part of each window's first job; ``candidates``: windows replayed
    under FIFO to choose them; ``uncontended``: candidates rejected because too few of their
    jobs queued; ``overlapping``: whether kept windows share jobs (a part shorter than the
    candidates laid end to end)."""

    split: str
    num_jobs: int
    windows: list[pd.DataFrame]
    starts: list[int]
    candidates: int
    uncontended: int
    min_waiting_fraction: float

    @property
    def overlapping(self) -> bool:
        s = sorted(self.starts)
        return any(b - a < self.num_jobs for a, b in itertools.pairwise(s))

    def describe(self) -> str:
        """One line: how many windows, from which part, and how many candidates were rejected."""
        return (f"{len(self.windows)} {self.split} windows of {self.num_jobs} jobs"
                f"{' (overlapping)' if self.overlapping else ''}, kept from {self.candidates} evenly spaced "
                f"candidates; {self.uncontended} uncontended under FIFO (fewer than "
                f"{self.min_waiting_fraction:.0%} of jobs waited > {WAIT_SECONDS:g} s) were not ranked")


def waiting_fraction(jobs: pd.DataFrame) -> float:
    """The fraction of a replay's jobs (``SimulationResult.jobs``) that waited more than
    :data:`WAIT_SECONDS` before first starting."""
    return float((jobs["queueing_delay"].to_numpy() > WAIT_SECONDS).mean()) if len(jobs) else 0.0


def is_contended(jobs: pd.DataFrame, min_waiting_fraction: float) -> bool:
    """Whether queueing actually occurs in a replay: mean queueing delay > 0 and at least
    ``min_waiting_fraction`` of its jobs waited more than :data:`WAIT_SECONDS`."""
    return bool(jobs["queueing_delay"].mean() > 0) and waiting_fraction(jobs) >= max(min_waiting_fraction, 1e-12)


def contended_windows(
    part: pd.DataFrame,
    num_jobs: int,
    count: int,
    cluster: ClusterSpec,
    *,
    split: str = "",
    candidates_per_window: int = 2,
    min_waiting_fraction: float = 0.1,
    executor: Executor | None = None,
) -> WindowSet:
    """``count`` windows of ``num_jobs`` consecutive jobs of ``part`` on which queueing occurs.

    Candidates: ``candidates_per_window * count`` start indices evenly spaced over the part
    (all distinct starts if there are fewer), each replayed under FIFO (seed 0, durations
    hidden) and kept if :func:`is_contended`. If fewer than ``count`` are, the grid is doubled
    (the replays already done are reused) until it holds every start. Of the contended
    candidates, ``count`` evenly spaced ones are kept, so the windows cover the whole part.
    Windows overlap when the part is shorter than the candidates laid end to end
    (:attr:`WindowSet.overlapping`). The replays run on ``executor`` if given (the result does
    not depend on it). Deterministic; ``ValueError`` if the part is shorter than
    one window or has fewer than ``count`` contended windows at all."""
    if count < 1 or num_jobs < 1 or candidates_per_window < 1:
        raise ValueError(f"contended_windows: count, num_jobs and candidates_per_window must be >= 1, got "
                         f"{count}, {num_jobs}, {candidates_per_window}")
    if not 0 <= min_waiting_fraction <= 1:
        raise ValueError(f"contended_windows: min_waiting_fraction must be in [0, 1], got {min_waiting_fraction}")
    n_starts = len(part) - num_jobs + 1
    if n_starts < 1:
        raise ValueError(f"contended_windows: the {split or 'given'} part holds {len(part)} jobs, fewer than one "
                         f"window of {num_jobs}")
    contended: dict[int, bool] = {}
    windows: dict[int, pd.DataFrame] = {}
    m = min(n_starts, candidates_per_window * count)
    while True:
        grid = sorted(set(np.linspace(0, n_starts - 1, m).round().astype(int).tolist()))
        new = [s for s in grid if s not in contended]
        for s in new:
            # from the part's job s on (a start time alone would also take jobs submitted with it before s)
            tail = part.iloc[s:s + num_jobs]
            windows[s] = trace_window(tail, float(tail["submit_time"].iloc[0]), num_jobs=num_jobs)
        tasks = [(windows[s], cluster, min_waiting_fraction) for s in new]
        for s, ok in zip(new, (executor.map if executor else map)(_fifo_contended, tasks), strict=True):
            contended[s] = ok
        kept = [s for s in grid if contended[s]]
        if len(kept) >= count or m >= n_starts:
            break
        m = min(n_starts, 2 * m)
    if len(kept) < count:
        raise ValueError(f"contended_windows: only {len(kept)} of the {len(grid)} windows of {num_jobs} jobs of the "
                         f"{split or 'given'} part ({len(part)} jobs) are contended (>= {min_waiting_fraction:.0%} "
                         f"of jobs wait under FIFO); {count} are needed: use a longer trace, a higher load or "
                         f"fewer windows")
    pick = [kept[i] for i in np.linspace(0, len(kept) - 1, count).round().astype(int)]
    return WindowSet(split, num_jobs, [windows[s] for s in pick], pick, len(grid), len(grid) - len(kept),
                     min_waiting_fraction)


def _fifo_contended(task: tuple[pd.DataFrame, ClusterSpec, float]) -> bool:
    from envs import simulate

    window, cluster, min_waiting_fraction = task
    return is_contended(simulate(window, cluster, "fifo", known_durations=False, seed=0).jobs, min_waiting_fraction)


# ------------------------------------------------------------------------------------ episodes
@dataclass
class PolicyRuns:
    """One policy's episodes on a :class:`WindowSet`: ``avg_jct[w, s]`` for window ``w`` and
    seed ``s``, and the JCT of every job of every episode (for tail percentiles)."""

    avg_jct: np.ndarray
    jcts: list[np.ndarray] = field(default_factory=list)

    @property
    def mean(self) -> float:
        """Mean avg JCT over every episode."""
        return float(self.avg_jct.mean())

    @property
    def p99(self) -> float:
        """99th percentile of the JCTs of all jobs of all episodes pooled (not a mean of
        per-episode p99s, which on 64-job windows would be each window's near-maximum)."""
        return float(np.percentile(np.concatenate(self.jcts), 99)) if self.jcts else float("nan")


def episode_result(res) -> dict:
    """What is kept of a :class:`envs.simulate.SimulationResult`: avg JCT and every job's JCT."""
    return {"avg_jct": float(res.metrics["avg_jct"]), "jct": [float(x) for x in res.jobs["jct"]]}


def seed_matters(window: pd.DataFrame) -> bool:
    """Whether the simulation seed can change a replay of ``window`` in this protocol's
    settings (``envs.simulate``'s defaults): the seed draws only a model for jobs without one,
    and the elastic and dynamic fractions, which are 0 here. So a window whose every job names
    its model replays the same for every seed, and its seeds share one episode."""
    if "model" not in window.columns:
        return True
    models = window["model"]
    return bool(models.isna().any() or (models.astype(str).str.len() == 0).any())


def effective_seeds(window: pd.DataFrame, seeds: Sequence[int]) -> list[int]:
    """The seed actually simulated for each of ``seeds`` (the first one when seeds cannot
    matter, see :func:`seed_matters`)."""
    return list(seeds) if seed_matters(window) else [seeds[0]] * len(seeds)


def run_episodes(windows: WindowSet, seeds: Sequence[int], run: Callable[[pd.DataFrame, int], dict]) -> PolicyRuns:
    """``run(window, seed)`` (an :func:`episode_result` dict) on every window and seed of
    ``windows``; seeds that cannot matter are simulated once."""
    avg = np.empty((len(windows.windows), len(seeds)))
    jcts = []
    for w, win in enumerate(windows.windows):
        done: dict[int, dict] = {}
        for s, seed in enumerate(effective_seeds(win, seeds)):
            if seed not in done:
                done[seed] = run(win, seed)
            avg[w, s] = done[seed]["avg_jct"]
            jcts.append(np.asarray(done[seed]["jct"], dtype=float))
    return PolicyRuns(avg, jcts)


def run_policy(windows: WindowSet, seeds: Sequence[int], spec: ClusterSpec, make_policy: Callable[[], Policy],
               known_durations: bool, *, batch: int = 64) -> PolicyRuns:
    """A policy (a fresh ``make_policy()`` per batch) on every window and seed of ``windows``,
    ``batch`` episodes stepped together by :func:`envs.simulate_many`: a neural policy then
    scores every episode's jobs in one forward pass per step. Seeds that cannot matter are
    simulated once."""
    from envs.simulate import simulate_many

    pairs = [(w, seed) for w, win in enumerate(windows.windows) for seed in dict.fromkeys(effective_seeds(win, seeds))]
    results: dict[tuple[int, int], dict] = {}
    for i in range(0, len(pairs), batch):
        chunk = pairs[i:i + batch]
        runs = simulate_many([windows.windows[w] for w, _ in chunk], spec, make_policy(),
                             known_durations=known_durations, seeds=[seed for _, seed in chunk])
        results.update({key: episode_result(r) for key, r in zip(chunk, runs, strict=True)})
    index = {id(w): i for i, w in enumerate(windows.windows)}
    return run_episodes(windows, seeds, lambda win, seed: results[index[id(win)], seed])


# ------------------------------------------------------------------------------------ cache
def default_cache_dir() -> Path:
    """``$CLUSTERGYM_BASELINE_CACHE`` if set, else ``~/.cache/clustergym/baselines``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clustergym" / "baselines"


def cluster_identity(spec: ClusterSpec) -> dict:
    """A cluster as plain data (its name and node table), for cache keys."""
    return {"name": spec.name, "nodes": spec.nodes.astype(object).values.tolist()}


def episode_definition(window: pd.DataFrame, spec: ClusterSpec, policy: str, known_durations: bool,
                       seed: int) -> dict:
    """Everything that decides a baseline episode's result: the window's job table (its
    SHA-256, which stands for the trace, the split and the window chosen), the cluster, the
    policy and its knobs, whether it sees durations, the seed, the simulator settings (the
    defaults), the package version and a hash of the simulator's, policies' and loaders' source."""
    import baselines
    from envs.config import SimConfig
    from leaderboard.suite import code_digest, jobs_digest, package_version

    p = baselines.get(policy)
    knobs = p.knobs() if hasattr(p, "knobs") else {}
    return {
        "cache_format": CACHE_FORMAT, "kind": "train.py baseline episode", "clustergym": package_version(),
        "code": code_digest(), "trace": {"jobs_sha256": jobs_digest(window), "num_jobs": len(window)},
        "cluster": cluster_identity(spec), "policy": {"baseline": policy, "knobs": json.loads(json.dumps(
            knobs, default=str))}, "known_durations": bool(known_durations), "seed": int(seed),
        "sim": json.loads(json.dumps(vars(SimConfig()), default=str)),
    }


class EpisodeCacheWarning(UserWarning):
    """A cached episode file is damaged and is recomputed."""


class EpisodeCache:
    """Baseline episodes on disk: ``<root>/<key>.json`` (an :func:`episode_result` with its
    definition) and ``<key>.json.sha256``, written by the leaderboard's atomic write with
    checksum (:func:`leaderboard.runner.write_cell_file`). A file that fails its checksum or
    does not hold the episode asked for is deleted and recomputed with an
    :class:`EpisodeCacheWarning`; results never depend on what was cached."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, definition: dict) -> dict | None:
        """The cached result of the episode ``definition``, or None (missing or damaged)."""
        from leaderboard.runner import DamagedCellError, remove_cell_file, verified_bytes
        from leaderboard.suite import cell_key

        path = self.path(cell_key(definition))
        if not path.is_file():
            return None
        try:
            data = json.loads(verified_bytes(path))
            if data.get("definition") != json.loads(json.dumps(definition)):
                raise DamagedCellError(f"{path}: holds another episode (hash collision?)")
            result = {"avg_jct": float(data["avg_jct"]), "jct": [float(x) for x in data["jct"]]}
        except (DamagedCellError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warnings.warn(f"damaged baseline cache entry: {exc}; recomputing", EpisodeCacheWarning, stacklevel=2)
            remove_cell_file(path)
            return None
        return result

    def put(self, definition: dict, result: dict) -> None:
        """Write one episode's result (atomically, with its checksum)."""
        from leaderboard.runner import write_cell_file
        from leaderboard.suite import cell_key

        self.root.mkdir(parents=True, exist_ok=True)
        blob = json.dumps({"definition": definition, **result}, allow_nan=False).encode()
        write_cell_file(self.path(cell_key(definition)), blob)


def simulate_baseline(window: pd.DataFrame, spec: ClusterSpec, policy: str, known_durations: bool, seed: int) -> dict:
    """One baseline episode through ``envs.simulate`` (what :func:`evaluate_baselines` caches),
    with the CPU seconds it took (kept in the cache file, for cost accounting)."""
    return simulate_baselines([window], spec, policy, known_durations, [seed])[0]


def simulate_baselines(windows: Sequence[pd.DataFrame], spec: ClusterSpec, policy: str, known_durations: bool,
                       seeds: Sequence[int]) -> list[dict]:
    """Baseline episodes ``(windows[i], seeds[i])`` stepped together (:func:`envs.simulate_many`:
    each the same as its own ``envs.simulate``), each with an equal share of the CPU seconds."""
    import baselines
    from envs.simulate import simulate_many

    cpu = time.process_time()
    runs = simulate_many(list(windows), spec, baselines.get(policy), known_durations=known_durations, seeds=list(seeds))
    share = (time.process_time() - cpu) / len(runs)
    return [{**episode_result(r), "cpu_seconds": share} for r in runs]


#: baseline episodes of one policy stepped together in one task (:class:`BaselineJob`)
BATCH = 16


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _task(args: tuple) -> list[dict]:
    return simulate_baselines(*args)


def worker_pool(workers: int) -> ProcessPoolExecutor | None:
    """``workers`` fresh processes (``spawn``; Ctrl-C is left to this one) for the replays of
    :func:`contended_windows` and :class:`BaselineJob`; None for 1 worker (run them here)."""
    if workers <= 1:
        return None
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker)


class BaselineJob:
    """Baseline episodes of :func:`evaluate_baselines`, started at construction (on
    ``executor``, or in this process when :meth:`result` is called): the cached ones are read,
    the others submitted; :meth:`result` waits for them and caches them. Oracle baselines
    (``needs_durations``) see true durations, the others do not."""

    def __init__(self, windows: WindowSet, spec: ClusterSpec, names: Sequence[str], seeds: Sequence[int],
                 cache: EpisodeCache, executor: Executor | None = None) -> None:
        import baselines

        self.windows, self.names, self.seeds, self.cache = windows, list(names), list(seeds), cache
        self.oracle = {n: bool(baselines.get(n).needs_durations) for n in self.names}
        self.definitions: dict[tuple[str, int, int], dict] = {}
        self.results: dict[tuple[str, int, int], dict] = {}
        self.todo: dict[tuple[str, int, int], tuple] = {}
        for name in self.names:
            for w, win in enumerate(windows.windows):
                for seed in dict.fromkeys(effective_seeds(win, self.seeds)):
                    d = episode_definition(win, spec, name, self.oracle[name], seed)
                    self.definitions[name, w, seed] = d
                    hit = cache.get(d)
                    if hit is not None:
                        self.results[name, w, seed] = hit
                    else:
                        self.todo[name, w, seed] = (win, spec, name, self.oracle[name], seed)
        #: episodes read from the cache, and to compute
        self.cached, self.computed = len(self.results), len(self.todo)
        # the missing episodes of each policy, in batches of at most BATCH stepped together
        self.batches: list[list[tuple[str, int, int]]] = []
        for name in self.names:
            keys = [k for k in self.todo if k[0] == name]
            self.batches += [keys[i:i + BATCH] for i in range(0, len(keys), BATCH)]
        self.futures: dict[int, Future] = {}
        if executor is not None:
            self.futures = {b: executor.submit(_task, self._batch_args(keys)) for b, keys in enumerate(self.batches)}

    def _batch_args(self, keys: list[tuple[str, int, int]]) -> tuple:
        args = [self.todo[k] for k in keys]
        _win, spec, name, known, _seed = args[0]
        return [a[0] for a in args], spec, name, known, [a[4] for a in args]

    def result(self) -> dict[str, PolicyRuns]:
        """Every baseline's :class:`PolicyRuns` (waits for the episodes, caches the new ones)."""
        try:
            for b, keys in enumerate(self.batches):
                runs = self.futures[b].result() if b in self.futures else _task(self._batch_args(keys))
                for k, r in zip(keys, runs, strict=True):
                    self.cache.put(self.definitions[k], r)
                    self.results[k] = r
        finally:
            self.cancel()
        self.todo, self.batches = {}, []
        index = {id(w): i for i, w in enumerate(self.windows.windows)}
        return {name: run_episodes(self.windows, self.seeds, lambda win, seed, name=name:
                                   self.results[name, index[id(win)], seed]) for name in self.names}

    def cancel(self) -> None:
        """Cancel the episodes not started yet."""
        for f in self.futures.values():
            f.cancel()


def evaluate_baselines(windows: WindowSet, spec: ClusterSpec, names: Sequence[str], seeds: Sequence[int], *,
                       cache: EpisodeCache | None = None, workers: int = 1) -> dict[str, PolicyRuns]:
    """Every baseline of ``names`` on every window and seed of ``windows`` (see
    :class:`BaselineJob`), from ``cache`` where there, else simulated (in ``workers``
    processes when > 1) and cached. The result depends neither on ``workers`` nor on what was
    cached."""
    pool = worker_pool(workers)
    try:
        return BaselineJob(windows, spec, names, seeds, cache or EpisodeCache(), pool).result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------ statistics
@dataclass(frozen=True)
class Comparison:
    """Policy A against policy B on the same episodes: ``ratio`` = A's mean avg JCT / B's, with
    a paired 95% bootstrap CI ``[low, high]`` over windows, and per window A's wins (lower mean
    avg JCT by more than the tie tolerance), ties and losses."""

    ratio: float
    low: float
    high: float
    wins: int
    ties: int
    losses: int

    @property
    def wtl(self) -> str:
        return f"{self.wins}/{self.ties}/{self.losses}"


def _per_window(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x.mean(axis=1) if x.ndim == 2 else x


def ratio_ci(a: np.ndarray, b: np.ndarray, *, confidence: float = 0.95, n_resamples: int = BOOTSTRAP_RESAMPLES,
             seed: int = 0) -> tuple[float, float, float]:
    """Ratio of means ``mean(a) / mean(b)`` of paired per-window values, with a percentile
    bootstrap CI resampling windows (pairs kept together; ``scipy.stats.bootstrap``,
    ``paired=True``, fixed ``seed``). Windows, not seeds, are resampled: episodes of one window
    are not independent. Fewer than 2 windows, or identical values: a zero-width or NaN CI."""
    a, b = _per_window(a), _per_window(b)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"ratio_ci: need paired per-window values of one shape, got {a.shape} and {b.shape}")
    ratio = float(a.mean() / b.mean())
    if len(a) < 2:
        return ratio, float("nan"), float("nan")
    if np.allclose(a / b, ratio, rtol=1e-12, atol=0):
        return ratio, ratio, ratio  # every window has the same ratio: nothing varies under resampling

    def stat(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return x.mean(axis=axis) / y.mean(axis=axis)

    res = stats.bootstrap((a, b), stat, paired=True, vectorized=True, confidence_level=confidence,
                          n_resamples=n_resamples, method="percentile", random_state=np.random.default_rng(seed))
    return ratio, float(res.confidence_interval.low), float(res.confidence_interval.high)


def wins_ties_losses(a: np.ndarray, b: np.ndarray, tolerance: float = TIE_TOLERANCE) -> tuple[int, int, int]:
    """Per window (the mean over its seeds), whether A's avg JCT is lower than B's (a win),
    within ``tolerance`` of it relative to B's (a tie: ``|a - b| <= tolerance * b``), or higher
    (a loss)."""
    a, b = _per_window(a), _per_window(b)
    tie = np.abs(a - b) <= tolerance * np.abs(b)
    return int(((a < b) & ~tie).sum()), int(tie.sum()), int(((a > b) & ~tie).sum())


def compare(a: np.ndarray, b: np.ndarray, *, confidence: float = 0.95, tolerance: float = TIE_TOLERANCE,
            seed: int = 0) -> Comparison:
    """:func:`ratio_ci` and :func:`wins_ties_losses` of A (``a[w, s]``) against B."""
    return Comparison(*ratio_ci(a, b, confidence=confidence, seed=seed), *wins_ties_losses(a, b, tolerance))


def final_table(runs: dict[str, PolicyRuns], oracle: dict[str, bool], *, agent: str = "agent") -> pd.DataFrame:
    """One row per policy, by mean avg JCT: ``track`` (clairvoyant: sees true durations),
    ``oracle`` (a baseline that needs true durations), ``avg_jct`` (mean over episodes),
    ``p99_jct`` (pooled over all jobs of all episodes), ``vs_best_nonoracle`` with
    ``_low`` / ``_high`` (ratio of mean avg JCT to the best non-oracle baseline's, paired 95%
    bootstrap CI), the same against the best oracle baseline (``vs_best_oracle*``), and
    ``agent_w/t/l`` (the agent's wins/ties/losses per window against that row's policy).
    ``oracle`` says which policies use true durations (the agent's entry: its track); the
    names of the two best baselines are in ``attrs["best"]``."""
    baselines_ = [p for p in runs if p != agent]
    best = {}
    for is_oracle in (False, True):
        group = [p for p in baselines_ if oracle[p] == is_oracle]
        best[is_oracle] = min(group, key=lambda p: runs[p].mean) if group else None
    rows = []
    for p, r in runs.items():
        row = {"policy": p, "track": "clairvoyant" if oracle[p] else "non-clairvoyant",
               "oracle": bool(oracle[p]) and p != agent, "avg_jct": r.mean, "p99_jct": r.p99}
        for col, ref in (("vs_best_nonoracle", best[False]), ("vs_best_oracle", best[True])):
            c = ratio_ci(r.avg_jct, runs[ref].avg_jct) if ref is not None else (np.nan,) * 3
            row[col], row[f"{col}_low"], row[f"{col}_high"] = c
        row["agent_w/t/l"] = compare(runs[agent].avg_jct, r.avg_jct).wtl if agent in runs and p != agent else ""
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("avg_jct", kind="stable").reset_index(drop=True)
    table.attrs["best"] = {"non-clairvoyant": best[False], "clairvoyant": best[True]}
    return table


__all__ = [
    "TIE_TOLERANCE", "TRACKS", "WAIT_SECONDS", "BaselineJob", "Comparison", "EpisodeCache", "EpisodeCacheWarning",
    "PolicyRuns", "Split", "WindowSet", "compare", "contended_windows", "default_cache_dir", "effective_seeds",
    "episode_definition", "episode_result", "evaluate_baselines", "final_table", "is_contended", "ratio_ci",
    "run_episodes", "seed_matters", "split_by_time", "waiting_fraction", "wins_ties_losses", "worker_pool",
]
