"""The evaluation protocol (agents.evaluation): time split, contended windows, paired ratio CI,
wins/ties/losses, the final table, and cached baseline episodes."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import train
from agents import evaluation as ev
from envs import simulate
from traces import clusters, make_trace, synthetic

SPEC = clusters.get("tiny")  # 8 GPUs


@pytest.fixture(scope="module")
def trace() -> pd.DataFrame:
    return synthetic(1200, load=1.0, cluster=SPEC, seed=3)


# ------------------------------------------------------------------------------------ split
def test_split_is_disjoint_ordered_and_rebased(trace):
    parts = ev.split_by_time(trace, 0.7, 0.1)
    assert [len(p) for p in parts] == [720, 120, 360]
    ids = [list(p["job_id"]) for p in parts]
    assert [j for part in ids for j in part] == list(trace["job_id"])  # disjoint, complete, in submit order
    for p in parts:
        assert p["submit_time"].iloc[0] == 0 and p["submit_time"].is_monotonic_increasing
    # every validation job is submitted after every training job, every test job after those
    orig = trace.set_index("job_id")["submit_time"]
    assert orig[ids[0]].max() <= orig[ids[1]].min() and orig[ids[1]].max() <= orig[ids[2]].min()


@pytest.mark.parametrize("train_fraction, validation_fraction", [(0.7, 0.0), (0.7, 0.7), (1.0, 0.1), (0.5, -0.1)])
def test_split_rejects_bad_fractions(trace, train_fraction, validation_fraction):
    with pytest.raises(ValueError, match="validation_fraction < train_fraction"):
        ev.split_by_time(trace, train_fraction, validation_fraction)


def test_split_rejects_unsorted_and_tiny_traces(trace):
    with pytest.raises(ValueError, match="not sorted"):
        ev.split_by_time(trace.iloc[::-1])
    with pytest.raises(ValueError, match="too few"):
        ev.split_by_time(trace.iloc[:5])


# ------------------------------------------------------------------------------------ windows
def bursts_trace() -> tuple[pd.DataFrame, set[int]]:
    """40 jobs of 8 GPUs x 100 s in 10 groups of 4: groups 2, 5 and 8 arrive together (each job
    waits for the one before: contended), the others 1000 s apart (nobody waits)."""
    submit, t = [], 0.0
    for g in range(10):
        for _ in range(4):
            submit.append(t)
            t += 0.0 if g in (2, 5, 8) else 1000.0
        t += 1000.0
    n = len(submit)
    df = make_trace(pd.DataFrame({"job_id": [f"j{i}" for i in range(n)], "submit_time": submit,
                                  "duration": [100.0] * n, "num_gpus": [8] * n, "model": ["resnet18"] * n}))
    return df, {4 * g for g in (2, 5, 8)}


def test_contended_windows_keep_exactly_the_windows_that_queue():
    df, queued_starts = bursts_trace()
    ws = ev.contended_windows(df, 4, 3, SPEC, split="x", candidates_per_window=100)
    # candidates: every start 0..36; a 4-job window queues iff it holds 2+ jobs of a burst
    assert ws.candidates == 37
    contended = [s for s in range(37) if any(s <= b + 2 and b <= s + 2 for b in queued_starts)]
    assert ws.uncontended == 37 - len(contended)
    assert set(ws.starts) <= set(contended) and len(ws.windows) == 3
    for start, w in zip(ws.starts, ws.windows, strict=True):
        assert list(w["job_id"]) == list(df["job_id"].iloc[start:start + 4])
        jobs = simulate(w, SPEC, "fifo", known_durations=False).jobs
        assert (jobs["queueing_delay"] > ev.WAIT_SECONDS).mean() >= 0.1
    assert ws.starts == [6, 20, 34]  # evenly spaced over the 15 contended starts (6..10, 18..22, 30..34)


def test_contended_windows_grow_the_grid_then_fail_clearly():
    df, _ = bursts_trace()
    # 2 candidates (starts 0 and 36) are both quiet: the grid doubles until it finds 2 contended
    ws = ev.contended_windows(df, 4, 1, SPEC, candidates_per_window=2)
    assert len(ws.windows) == 1 and ws.candidates > 2
    with pytest.raises(ValueError, match=r"only .* contended"):
        ev.contended_windows(df, 4, 30, SPEC)
    with pytest.raises(ValueError, match="fewer than one window"):
        ev.contended_windows(df.iloc[:3], 4, 1, SPEC)


def test_periodic_evaluation_windows_come_from_validation_only(trace):
    parts = ev.split_by_time(trace, 0.7, 0.1)
    val = ev.contended_windows(parts.validation, 16, 3, SPEC, split="validation")
    test = ev.contended_windows(parts.test, 16, 3, SPEC, split="test")
    val_ids = set(parts.validation["job_id"])
    for w in val.windows:
        assert set(w["job_id"]) <= val_ids
    for w in test.windows:
        assert not set(w["job_id"]) & (val_ids | set(parts.train["job_id"]))


# ------------------------------------------------------------------------------------ statistics
def test_ratio_ci_matches_an_independent_bootstrap():
    rng = np.random.default_rng(7)
    b = rng.lognormal(10, 0.5, size=(30, 2))
    a = b * rng.lognormal(-0.1, 0.2, size=(30, 1))
    ratio, low, high = ev.ratio_ci(a, b)
    aw, bw = a.mean(axis=1), b.mean(axis=1)
    assert ratio == pytest.approx(a.mean() / b.mean())
    # a plain percentile bootstrap over windows, with another generator
    idx = np.random.default_rng(123).integers(0, 30, size=(20_000, 30))
    boot = aw[idx].mean(axis=1) / bw[idx].mean(axis=1)
    assert low == pytest.approx(np.percentile(boot, 2.5), abs=0.01)
    assert high == pytest.approx(np.percentile(boot, 97.5), abs=0.01)
    # and the delta-method interval for a ratio of means, which it should be close to here
    r = aw.mean() / bw.mean()
    se = np.sqrt(np.var(aw - r * bw, ddof=1) / 30) / bw.mean()
    z = stats.norm.ppf(0.975)
    assert low == pytest.approx(r - z * se, abs=0.015) and high == pytest.approx(r + z * se, abs=0.015)
    assert ev.ratio_ci(a, b) == (ratio, low, high)  # fixed seed: reproducible


def test_ratio_ci_degenerate_cases():
    b = np.array([[10.0], [20.0], [40.0]])
    assert ev.ratio_ci(2 * b, b) == (2.0, 2.0, 2.0)
    r, lo, hi = ev.ratio_ci(b[:1], b[:1] / 2)
    assert r == 2.0 and np.isnan(lo) and np.isnan(hi)
    with pytest.raises(ValueError, match="paired"):
        ev.ratio_ci(b, b[:2])


def test_wins_ties_losses_on_constructed_numbers():
    b = np.full((6, 2), 100.0)
    a = np.array([[90, 90], [99.6, 99.6], [100.4, 100.4], [101, 101], [50, 149], [80, 200.0]])
    # window means: 90 (win), 99.6 (tie), 100.4 (tie), 101 (loss), 99.5 (tie: 0.5%), 140 (loss)
    assert ev.wins_ties_losses(a, b) == (1, 3, 2)
    assert ev.wins_ties_losses(a, b, tolerance=0.0) == (3, 0, 3)
    c = ev.compare(a, b)
    assert (c.wins, c.ties, c.losses) == (1, 3, 2) and c.wtl == "1/3/2"
    assert c.ratio == pytest.approx(a.mean() / 100)


def test_final_table_columns_tracks_and_references():
    rng = np.random.default_rng(0)
    base = rng.lognormal(10, 0.3, size=(8, 2))

    def runs(scale: float) -> ev.PolicyRuns:
        x = base * scale
        return ev.PolicyRuns(x, [np.array([v]) for v in x.ravel()])

    all_runs = {"agent": runs(1.1), "fifo": runs(3.0), "tiresias": runs(1.2), "srtf": runs(1.0), "sjf": runs(1.5)}
    oracle = {"agent": True, "fifo": False, "tiresias": False, "srtf": True, "sjf": True}
    t = ev.final_table(all_runs, oracle).set_index("policy")
    assert t.attrs["best"] == {"non-clairvoyant": "tiresias", "clairvoyant": "srtf"}
    assert list(t.index) == ["srtf", "agent", "tiresias", "sjf", "fifo"]
    assert t.loc["agent", "track"] == "clairvoyant" and not t.loc["agent", "oracle"] and t.loc["srtf", "oracle"]
    assert t.loc["agent", "vs_best_oracle"] == pytest.approx(1.1) and t.loc["agent", "vs_best_nonoracle"] == pytest.approx(1.1 / 1.2)
    assert t.loc["agent", "vs_best_oracle_low"] == pytest.approx(1.1)  # a constant ratio: a zero-width CI
    assert t.loc["srtf", "agent_w/t/l"] == "0/0/8" and t.loc["fifo", "agent_w/t/l"] == "8/0/0"
    assert t.loc["sjf", "p99_jct"] == pytest.approx(np.percentile(base * 1.5, 99))


# ------------------------------------------------------------------------------------ cache
@pytest.fixture(scope="module")
def small_windows(trace) -> ev.WindowSet:
    return ev.contended_windows(ev.split_by_time(trace).test, 12, 2, SPEC, split="test")


def test_cached_baselines_equal_fresh_ones_and_survive_damage(tmp_path, small_windows):
    names, seeds = ["fifo", "srtf"], [0, 1]
    fresh = {n: ev.run_episodes(small_windows, seeds, lambda w, s, n=n: ev.simulate_baseline(
        w, SPEC, n, n == "srtf", s)) for n in names}
    cache = ev.EpisodeCache(tmp_path / "c")
    first = ev.evaluate_baselines(small_windows, SPEC, names, seeds, cache=cache)
    files = sorted(cache.root.glob("*.json"))
    assert len(files) == 4  # every job names its model: the 2 seeds share an episode
    job = ev.BaselineJob(small_windows, SPEC, names, seeds, cache)
    assert (job.cached, job.computed) == (4, 0)
    again = job.result()
    for n in names:
        np.testing.assert_array_equal(first[n].avg_jct, fresh[n].avg_jct)
        np.testing.assert_array_equal(again[n].avg_jct, fresh[n].avg_jct)
        assert all(np.array_equal(x, y) for x, y in zip(again[n].jcts, fresh[n].jcts, strict=True))
    # a damaged entry (altered bytes) is recomputed with a warning, giving the same numbers
    data = json.loads(files[0].read_text())
    data["avg_jct"] *= 2
    files[0].write_text(json.dumps(data))
    with pytest.warns(ev.EpisodeCacheWarning, match="damaged"):
        job = ev.BaselineJob(small_windows, SPEC, names, seeds, cache)
    assert (job.cached, job.computed) == (3, 1)
    repaired = job.result()
    for n in names:
        np.testing.assert_array_equal(repaired[n].avg_jct, fresh[n].avg_jct)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ev.BaselineJob(small_windows, SPEC, names, seeds, cache).cached == 4


def test_cache_key_changes_with_what_decides_a_result(small_windows):
    w = small_windows.windows[0]
    d = ev.episode_definition(w, SPEC, "fifo", False, 0)
    others = [ev.episode_definition(w, SPEC, "srtf", False, 0), ev.episode_definition(w, SPEC, "fifo", True, 0),
              ev.episode_definition(w, SPEC, "fifo", False, 1),
              ev.episode_definition(small_windows.windows[1], SPEC, "fifo", False, 0),
              ev.episode_definition(w, clusters.get("small"), "fifo", False, 0)]
    assert all(o != d for o in others)


def test_parallel_workers_give_the_same_results(small_windows, tmp_path):
    one = ev.evaluate_baselines(small_windows, SPEC, ["fifo", "las"], [0], cache=ev.EpisodeCache(tmp_path / "a"))
    two = ev.evaluate_baselines(small_windows, SPEC, ["fifo", "las"], [0], cache=ev.EpisodeCache(tmp_path / "b"),
                                workers=2)
    for n in one:
        np.testing.assert_array_equal(one[n].avg_jct, two[n].avg_jct)


def test_train_py_keeps_the_best_validation_checkpoint(tmp_path):
    """train.py's monitor logs validation rows and keeps the model with the lowest validation
    mean avg JCT (the first on ties); a resumed monitor reads the best back from eval.csv."""
    kept = []
    args = train.parse_args([])
    assert args.eval_windows >= 30 and args.eval_seeds >= 2 and args.validation_fraction > 0

    def runs(agent: float) -> dict:
        return {"agent": ev.PolicyRuns(np.full((2, 1), agent)), "fifo": ev.PolicyRuns(np.full((2, 1), 9.0)),
                "tiresias": ev.PolicyRuns(np.full((2, 1), 5.0))}

    monitor = train.TrainingMonitor(args, tmp_path, None, None, lambda model, step, value: kept.append((model, step)))
    monitor.model = SimpleNamespace(logger=SimpleNamespace(record=lambda *a, **k: None))
    for step, value in ((10, 7.0), (20, 6.0), (30, 6.5), (40, 6.0), (50, 4.0)):
        monitor.log_evaluation(step, runs(value), f"model@{step}")
    assert kept == [("model@10", 10), ("model@20", 20), ("model@50", 50)]
    rows = pd.read_csv(tmp_path / "eval.csv")
    assert set(rows["split"]) == {"validation"} and list(rows["agent_avg_jct"]) == [7, 6, 6.5, 6, 4]
    assert train.best_logged(tmp_path / "eval.csv") == (50, 4.0)
    assert train.TrainingMonitor(args, tmp_path, None, None, None).best == (50, 4.0)


def test_simulate_many_equals_one_simulate_per_trace_for_every_baseline():
    """Episodes stepped together as the envs of one core (what BaselineJob and run_policy use)
    give every job the same start, finish and restarts as each episode simulated alone."""
    import baselines
    from envs import simulate_many

    traces = [synthetic(14, load=2.0, cluster=SPEC, seed=s, duration_range=(60, 6 * 3600)) for s in range(3)]
    seeds = [0, 1, 0]
    for name in baselines.names():
        known = bool(baselines.get(name).needs_durations)
        many = simulate_many(traces, SPEC, baselines.get(name), known_durations=known, seeds=seeds)
        for trace, seed, got in zip(traces, seeds, many, strict=True):
            alone = simulate(trace, SPEC, baselines.get(name), known_durations=known, seed=seed)
            pd.testing.assert_frame_equal(got.jobs, alone.jobs, obj=f"{name}, seed {seed}")
            assert got.events == alone.events and got.metrics == alone.metrics, name
    with pytest.raises(ValueError, match="2 traces but 1 seeds"):
        simulate_many(traces[:2], SPEC, "fifo", seeds=[0])
