"""How much room the best heuristics leave on Philly at the presets' scale: rule-based probes
against Tiresias (non-clairvoyant track) and SRTF (clairvoyant track), on validation windows only.

A learned scheduler of a track can only beat the best baseline by what the information it sees
allows. These probes are hand-written or fitted rules that see what each track's agent sees,
judged on the same windows as ``train.py --preset philly-*`` validates on (the validation part of
Philly, 30 contended windows of 64 jobs x 2 seeds on ``tiny``; never the test part):

- ``tiresias_round``: Tiresias preempting only at 300 s round boundaries (what the non-clairvoyant
  preset's env can express).
- ``gittins_*``: 2D-Gittins (Tiresias' Gittins variant, ``../shared/papers/classic.md`` section 1):
  ``G(a) = sup_d P(S - a <= d | S > a) / E[min(S - a, d) | S > a]`` over the GPU-time ``S`` of the
  *training part's* jobs (``_by_gpus``: one distribution per GPU count 1, 2, 4, 8, other), binned
  into levels of ``log10 G`` of the given width, FIFO within a level (running first), preempting at
  every event; ``continuous`` is unbinned (a pure index, preempting at rounds).
- ``linear_cem``: a linear score over log attained service, log GPUs, log waiting time, running,
  and three products, fitted by the cross-entropy method on 30 contended windows of the last
  12,000 training jobs (``--cem-iterations``, 0 by default: about 2 minutes per iteration).
- ``srtf_2d_p``: SRTF on remaining time x GPUs^p (2D remaining service), preempting at every event.

Each line: mean avg JCT, its ratio to the track's best baseline with a paired 95% bootstrap CI
over windows, and wins/ties/losses. Usage::

    python benchmarks/headroom_philly.py [--cem-iterations 8]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import baselines
from agents.evaluation import compare, contended_windows, run_policy, split_by_time
from agents.threads import set_torch_threads
from baselines.base import EMPTY, Baseline, BaselineKnobs, order_scores
from envs.policy import ClusterView, Priority
from envs.workload import drop_oversize
from traces import clusters, load_trace, window
from traces.paths import PHILLY_POLLUX_CSV, shared_file

GPU_CLASSES = (1, 2, 4, 8)
GRID = np.concatenate([[0.0], np.geomspace(1.0, 1e9, 360)])  # attained GPU-seconds


def gittins_index(samples: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """``G(a)`` at every ``a`` of ``grid``: the supremum over quanta ``d`` (taken at the sample
    points above ``a``) of P(S - a <= d | S > a) / E[min(S - a, d) | S > a]."""
    s = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(s)
    cum = np.concatenate([[0.0], np.cumsum(s)])
    out = np.empty(len(grid))
    for g, a in enumerate(grid):
        i = int(np.searchsorted(s, a, side="right"))
        m = n - i
        if m == 0:  # beyond every sample: keep the last index
            out[g] = out[g - 1] if g else 1.0
            continue
        j = np.arange(i, n)
        done = (j - i + 1) / m
        spent = ((cum[j + 1] - cum[i]) - (j - i + 1) * a + (n - j - 1) * (s[j] - a)) / m
        out[g] = np.max(done / np.maximum(spent, 1e-12))
    return out


def gpu_class(gpus: np.ndarray) -> np.ndarray:
    return np.select([gpus == c for c in GPU_CLASSES], list(range(len(GPU_CLASSES))), len(GPU_CLASSES))


class Gittins(Baseline):
    """2D-Gittins from a fitted table (``table[class, grid point]``), binned into levels."""

    name = "gittins_probe"
    table: np.ndarray = np.ones((1, len(GRID)))

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        width: float = 1.0
        """bin width in log10 of the index; 0: unbinned, preempting at round boundaries"""
        round_length: float = 300.0

    def plan(self, view: ClusterView) -> Priority | None:
        if not view.waiting.any():
            return None
        cls = gpu_class(view.gpus) if len(self.table) > 1 else np.zeros(view.gpus.shape, dtype=np.int64)
        index = np.ones(view.attained.shape)
        for k in range(len(self.table)):
            index = np.where(cls == k, np.interp(view.attained, GRID, self.table[k]), index)
        log_index = np.log10(np.maximum(index, 1e-300))
        active = view.status != EMPTY
        if self.config.width <= 0:
            return Priority(np.where(active, log_index, -np.inf), preempt=view.at_round_boundary.copy())
        level = -np.floor(log_index / self.config.width)
        return Priority(order_scores(view, [level, view.waiting, view.submit], active), preempt=True)


def linear_features(view: ClusterView) -> list[np.ndarray]:
    a = np.log1p(view.attained) / 10
    g = np.log2(np.maximum(view.gpus, 1)) / 3
    w = np.log1p(np.maximum(view.clock[:, None] - view.submit, 0.0)) / 10
    return [a, g, w, view.running.astype(np.float64), a * g, a * a, w * a]


class Linear(Baseline):
    """A linear score over :func:`linear_features` (higher first), preempting at round boundaries."""

    name = "linear_probe"
    weights: np.ndarray = np.zeros(7)

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        round_length: float = 300.0

    def plan(self, view: ClusterView) -> Priority | None:
        if not view.waiting.any():
            return None
        score = sum(w * f for w, f in zip(self.weights, linear_features(view), strict=True))
        score = score + 1e-6 * (-view.submit)  # ties to the earlier job
        return Priority(np.where(view.status != EMPTY, score, -np.inf), preempt=view.at_round_boundary.copy())


class Srtf2D(Baseline):
    """Shortest remaining ``remaining x GPUs^power`` first, preempting at every event."""

    name = "srtf2d_probe"
    needs_durations = True

    @dataclass(frozen=True)
    class Knobs(BaselineKnobs):
        power: float = 0.5

    def plan(self, view: ClusterView) -> Priority | None:
        if not view.waiting.any():
            return None
        key = view.remaining * view.gpus.astype(np.float64) ** self.config.power
        return Priority(order_scores(view, [key], view.status != EMPTY), preempt=True)


def with_attr(cls: type[Baseline], name: str, value: object, **knobs: object) -> Callable[[], Baseline]:
    def make() -> Baseline:
        policy = cls(**knobs)
        setattr(policy, name, value)
        return policy
    return make


def cem(windows, seeds, spec, iterations: int, population: int = 16, elite: int = 4, seed: int = 0) -> np.ndarray:
    """Cross-entropy method over :class:`Linear`'s weights, minimising mean avg JCT on ``windows``
    (started from LAS: -1 on attained service)."""
    rng = np.random.default_rng(seed)
    mean = np.zeros(7)
    mean[0] = -1.0
    std = np.ones(7)
    for it in range(iterations):
        t = time.perf_counter()
        cand = mean + std * rng.standard_normal((population, 7))
        fit = np.array([run_policy(windows, seeds, spec, with_attr(Linear, "weights", c), False).mean for c in cand])
        best = cand[np.argsort(fit)[:elite]]
        mean, std = best.mean(axis=0), best.std(axis=0) + 0.05
        print(f"  cem iteration {it}: best {fit.min():,.0f} s, {time.perf_counter() - t:.0f} s", flush=True)
    return mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cem-iterations", type=int, default=0, help="fit the linear probe (0: skip it)")
    parser.add_argument("--windows", type=int, default=30)
    args = parser.parse_args()
    set_torch_threads(1)
    spec = clusters.get("tiny")
    trace = load_trace(shared_file(*PHILLY_POLLUX_CSV))
    trace, _ = drop_oversize(trace, spec, source="philly")
    trace = window(trace, 0.0, num_jobs=len(trace), load=1.0, cluster=spec)
    split = split_by_time(trace, 0.7, 0.1)
    seeds = [0, 1]
    val = contended_windows(split.validation, 64, args.windows, spec, split="validation")
    print(f"Philly validation part on tiny: {val.describe()}")

    service = (split.train["duration"] * split.train["num_gpus"]).to_numpy(np.float64)
    cls = gpu_class(split.train["num_gpus"].to_numpy())
    pooled = gittins_index(service)[None, :]
    by_gpus = np.stack([gittins_index(service[cls == k]) for k in range(len(GPU_CLASSES) + 1)])

    def report(track: str, reference: str, probes: dict[str, Callable[[], Baseline]], known: bool) -> None:
        print(f"\n{track} track (x {reference}, 95% CI, W/T/L over {len(val.windows)} windows x {len(seeds)} seeds)")
        ref = run_policy(val, seeds, spec, lambda: baselines.get(reference), known)
        print(f"  {reference:24s} {ref.mean:9,.0f} s")
        for name, make in probes.items():
            t = time.perf_counter()
            runs = run_policy(val, seeds, spec, make, known)
            c = compare(runs.avg_jct, ref.avg_jct)
            print(f"  {name:24s} {runs.mean:9,.0f} s  {c.ratio:.3f} [{c.low:.3f}, {c.high:.3f}]  {c.wtl:8s} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)

    probes: dict[str, Callable[[], Baseline]] = {
        "las": lambda: baselines.get("las"),
        "tiresias_round": lambda: baselines.get("tiresias", preempt="round"),
        "tiresias_4_queues": lambda: baselines.get("tiresias", thresholds=(3250.0, 7200.0, 36000.0, 180000.0)),
        "gittins_continuous": with_attr(Gittins, "table", pooled, width=0.0),
        "gittins_width1": with_attr(Gittins, "table", pooled, width=1.0),
        "gittins_width0.5": with_attr(Gittins, "table", pooled, width=0.5),
        "gittins_by_gpus_width1": with_attr(Gittins, "table", by_gpus, width=1.0),
    }
    if args.cem_iterations > 0:
        train = contended_windows(split.train.iloc[-12000:], 64, args.windows, spec, split="train")
        print(f"fitting the linear probe on {train.describe()}")
        probes["linear_cem"] = with_attr(Linear, "weights", cem(train, seeds, spec, args.cem_iterations))
    report("non-clairvoyant", "tiresias", probes, False)
    report("clairvoyant", "srtf", {f"srtf_2d_p{p:g}": (lambda p=p: Srtf2D(power=p)) for p in (0.25, 0.5, 1.0)}, True)


if __name__ == "__main__":
    main()
