"""Leaderboard: a tiny suite end to end, the per-cell cache, an interrupted run resuming to a
byte-identical table, clear errors for missing data and bad suite files, and the Pollux loader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import leaderboard
from leaderboard import report, runner
from leaderboard.suite import MissingDataError, SuiteError, load_suite, suite_names

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = ("leaderboard.md", "cells.csv", "jobs.csv.gz", "avg_jct_vs_fifo.png", "avg_jct_vs_fifo.svg",
           "avg_jct_vs_fifo.pdf")

TINY = """
name = "tiny"
seeds = [0, 1]
loads = [1.0]
policies = ["fifo", "srtf"]

[cluster]
preset = "tiny"

[trace]
kind = "synthetic"
num_jobs = 40
"""

# 2 policies x 2 loads x 3 seeds = 12 cells, for interrupting mid-run
RESUME = """
name = "resume"
seeds = [0, 1, 2]
loads = [0.9, 1.5]
policies = ["fifo", "las"]

[cluster]
preset = "tiny"

[trace]
kind = "synthetic"
num_jobs = 30
"""


def _suite(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _read(out: Path) -> dict[str, bytes]:
    return {f: (out / f).read_bytes() for f in OUTPUTS}


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "leaderboard", *args], cwd=ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _cached(out: Path) -> int:
    return len(list((out / "cells").glob("*.parquet")))


def _wait_for_cells(proc: subprocess.Popen, out: Path, at_least: int, timeout: float = 300.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = _cached(out) if (out / "cells").is_dir() else 0
        if n >= at_least:
            return n
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {at_least} cells were cached: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {at_least} cached cells within {timeout} s")


# ------------------------------------------------------------------------------- end to end
def test_tiny_suite_end_to_end_then_fully_cached(tmp_path):
    suite = load_suite(_suite(tmp_path, TINY, "tiny"))
    out = tmp_path / "out"
    first = leaderboard.run(suite, out=out, workers=1)
    assert (first.cells, first.cached, first.computed, first.failed) == (4, 0, 4, [])
    for f in (*OUTPUTS, "jct_cdf_load-1.png", "jct_cdf_load-1.svg", "jct_cdf_load-1.pdf", "timing.csv"):
        assert (out / f).is_file(), f
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for pdf in out.glob("*.pdf"):
        assert pdf.read_bytes()[:5] == b"%PDF-"
    for svg in out.glob("*.svg"):
        assert b"<svg" in svg.read_bytes()[:2000]
    table = (out / "leaderboard.md").read_text()
    assert "| srtf | oracle | 2 |" in table and "| fifo |  | 2 |" in table
    assert "avg JCT (s)" in table and "Normalised to FIFO" in table
    import pandas as pd

    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) == 4 and set(cells["policy"]) == {"fifo", "srtf"}
    assert (cells.loc[cells["policy"] == "fifo", "avg_jct_vs_fifo"] == 1.0).all()
    assert cells.loc[cells["policy"] == "srtf", "oracle"].all()
    jobs = pd.read_csv(out / "jobs.csv.gz")
    assert len(jobs) == 4 * 40 and jobs["jct"].notna().all()

    before = _read(out)
    again = leaderboard.run(suite, out=out, workers=1)
    assert (again.cached, again.computed) == (4, 0)
    assert _read(out) == before  # byte-identical outputs from the cache


def test_parallel_workers_give_identical_outputs(tmp_path):
    suite = load_suite(_suite(tmp_path, TINY, "tiny"))
    a = leaderboard.run(suite, out=tmp_path / "a", workers=1)
    b = leaderboard.run(suite, out=tmp_path / "b", workers=2)
    assert a.computed == b.computed == 4
    assert _read(tmp_path / "a") == _read(tmp_path / "b")


def test_interrupted_run_resumes_to_the_same_table(tmp_path):
    path = _suite(tmp_path, RESUME, "resume")
    reference = leaderboard.run(load_suite(path), out=tmp_path / "reference", workers=1)
    assert reference.computed == 12
    out = tmp_path / "out"
    slow = {runner.DELAY_ENV: "0.4"}

    # SIGTERM (pool of 2 workers): the parent stops the pool and exits 130, whole cells stay cached
    proc = _cli("run", str(path), "--out", str(out), "--workers", "2", "--no-progress", env=slow)
    _wait_for_cells(proc, out, 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    after_term = _cached(out)
    assert 1 <= after_term < 12

    # SIGKILL of the whole process group, later in the run
    proc = _cli("run", str(path), "--out", str(out), "--workers", "1", "--no-progress", env=slow,
                start_new_session=True)
    _wait_for_cells(proc, out, after_term + 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=300)
    killed_at = _cached(out)
    assert after_term + 2 <= killed_at < 12
    import pyarrow.parquet as pq

    for f in (out / "cells").glob("[!.]*.parquet"):  # only whole cell files under a cell's name
        assert pq.read_metadata(f).num_rows == 30

    proc = _cli("run", str(path), "--out", str(out), "--no-progress")
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"12 cells, {killed_at} cached, {12 - killed_at} computed, 0 failed" in stdout
    assert _read(out) == _read(tmp_path / "reference")
    assert not list((out / "cells").glob(".*.tmp"))  # leftovers of the killed run are cleaned


# ------------------------------------------------------------------------------- errors
def test_missing_trace_file_names_the_file_and_its_source(tmp_path, monkeypatch):
    empty = tmp_path / "shared"
    empty.mkdir()
    proc = _cli("run", "philly", "--out", str(tmp_path / "out"), env={"CLUSTERGYM_SHARED": str(empty)})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in err
    assert str(empty / "traces" / "philly" / "pollux_philly.csv.gz") in err
    assert "https://github.com/petuum/adaptdl/tree/osdi21-artifact/simulator/traces" in err
    assert "CLUSTERGYM_SHARED" in err

    monkeypatch.setenv("CLUSTERGYM_SHARED", str(empty))
    text = TINY.replace('kind = "synthetic"\nnum_jobs = 40', 'kind = "file"\npath = "traces/x/jobs.csv"\n'
                        'source = "https://example.org/x"\nnum_jobs = 40\nstarts_days = [0]')
    suite = load_suite(_suite(tmp_path, text, "file"))
    with pytest.raises(MissingDataError) as info:
        leaderboard.run(suite, out=tmp_path / "out2", workers=1)
    assert str(empty / "traces" / "x" / "jobs.csv") in str(info.value)
    assert "https://example.org/x" in str(info.value)
    with pytest.raises(MissingDataError, match=r"workload-6\.csv"):
        load_suite("pollux").check_data()


@pytest.mark.parametrize("edit, message", [
    (("seeds = [0, 1]", "seeds = [0, 1]\ncolour = 3"), "unknown key"),
    (('policies = ["fifo", "srtf"]', 'policies = ["fifo", "nope"]'), "nope"),
    (('preset = "tiny"', 'preset = "huge"'), "huge"),
    (("num_jobs = 40", "num_jobs = 1"), "num_jobs"),
    (("loads = [1.0]", "loads = [-1.0]"), "loads"),
    (("[trace]", "[knobs.las]\nround_lengthh = 3\n[trace]"), "knobs.las"),
    (("seeds = [0, 1]", "seeds = [0, 1]\nexpected_minutes = -1"), "expected_minutes"),
    (("seeds = [0, 1]", "seeds = [0, 1]\nexpected_minutes = 1\nexpected_basis = \"guessed\""), "expected_basis"),
])
def test_bad_suite_file_is_a_clear_error(tmp_path, edit, message):
    path = _suite(tmp_path, TINY.replace(*edit), "bad")
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(path)
    assert str(path) in str(info.value)
    proc = _cli("run", str(path))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "Traceback" not in err and message in err


# ------------------------------------------------------------------------------- suites and keys
def test_bundled_suites_parse_and_keys_are_stable(tmp_path):
    assert {"philly", "pollux", "heterogeneous", "synthetic"} <= set(suite_names())
    for name in suite_names():
        s = load_suite(name)
        assert s.policies and s.seeds and s.loads
    s = load_suite("synthetic")
    specs = s.policy_specs()
    cells = s.cells(specs)
    assert len(cells) == len(specs) * len(s.loads) * len(s.seeds)
    keys = [c.key for c in cells]
    assert len(set(keys)) == len(keys)
    assert keys == [c.key for c in s.cells(s.policy_specs())]  # deterministic
    assert [c.oracle for c in cells if c.policy in ("sjf", "srtf")] == [True] * (2 * len(s.loads) * len(s.seeds))
    # a knob, the job count or the version changes the key
    s.knobs["las"] = {"round_length": 60.0}
    changed = {c.key for c in s.cells(s.policy_specs()) if c.policy == "las"}
    assert not changed & set(keys)
    assert not {c.key for c in s.cells(specs, num_jobs=50)} & set(keys)
    # fifo, the reference, is always run
    assert [p.name for p in s.policy_specs(["srtf"])] == ["fifo", "srtf"]


def test_every_bundled_suite_states_its_expected_time(capsys):
    from leaderboard.__main__ import main

    for name in suite_names():
        s = load_suite(name)
        assert s.expected_minutes is not None and s.expected_basis in ("measured", "estimated"), name
    quick = load_suite("quick")
    assert quick.expected_minutes <= 2 and quick.expected_basis == "measured"
    assert quick.trace["kind"] == "synthetic"  # needs no data files
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in suite_names():
        line = next(x for x in out.splitlines() if x.startswith(f"{name}:"))
        assert "time: about " in line and "2 workers on 2 cores" in line, line
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Leaderboard"):]
    for name in suite_names():
        row = next((x for x in section.splitlines() if x.startswith(f"| `{name}` |")), None)
        assert row is not None, f"README's Leaderboard table lacks suite {name}"
        assert load_suite(name).expected_label().split(" (")[0] in row, row


def test_progress_bar_shows_an_eta(capsys):
    bar = runner._progress(4, "suite", True)
    bar.update(1)
    bar.refresh()
    bar.close()
    assert "ETA" in capsys.readouterr().err


def test_ci95():
    mean, half, n = report.ci95(np.array([1.0, 2.0, 3.0]))
    assert (mean, n) == (2.0, 3)
    assert half == pytest.approx(4.302652729911275 / np.sqrt(3))
    assert np.isnan(report.ci95(np.array([5.0]))[1])
    assert np.isnan(report.ci95(np.array([1.0, np.nan]))[0])
    assert report.fmt(12345.6, 789.1, "seconds") == "12,346 ± 789"
    assert report.fmt(float("nan"), 1.0, "ratio") == "n/a"


# ------------------------------------------------------------------------------- Pollux workloads
def _fake_results(policies: list[str], oracle: set[str], seed: int = 0):
    """A jobs frame and the aggregate of a made-up run: policy p's JCTs are FIFO's times a factor."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    factors = {p: 1.0 if p == "fifo" else float(rng.uniform(0.3, 1.3)) for p in policies}
    fifo = rng.lognormal(7, 2, 200)
    jobs = pd.concat([pd.DataFrame({"load": "2", "policy": p, "jct": fifo * f}) for p, f in factors.items()])
    cells = pd.DataFrame([{"window": "w", "load": load, "seed": s, "policy": p, "oracle": p in oracle,
                           **{m: factors[p] for m, _, _ in report.TABLE_METRICS},
                           **{f"{m}_vs_fifo": factors[p] * (1 + 0.01 * s) for m, _, _ in report.TABLE_METRICS}}
                          for load in ("2", "4") for s in range(3) for p in policies])
    return jobs, report.aggregate(cells, policies), factors


def test_plots_highlight_fifo_the_best_of_each_track_and_the_agent():
    names = ["fifo", "sjf", "srtf", "las", "tiresias", "gandiva", "agent:a"]
    _, agg, factors = _fake_results(names, {"sjf", "srtf"})
    h = report.highlights(agg, "2", names, ["agent:a"])
    best = lambda pool: min(pool, key=factors.get)  # noqa: E731
    assert h["fifo"][0] == "reference" and h["agent:a"][0] == "agent"
    assert h[best(["las", "tiresias", "gandiva"])][0] == "best non-oracle"
    assert h[best(["sjf", "srtf"])][0] == "best oracle"
    assert len(h) == 4 and len({c for _, c in h.values()}) == 4  # four distinct colours
    assert set(report._colors(names, h).values()) - {c for _, c in h.values()} == {report.OTHER_COLOR}


def test_plots_are_one_column_wide_in_three_formats_with_the_legend_inside(tmp_path):
    import matplotlib.image

    names = ["fifo", *(f"p{i:02d}" for i in range(22))]  # 23 policies, as the synthetic suite has
    jobs, agg, _ = _fake_results(names, {"p01", "p02"})
    h = report.highlights(agg, "2", names)
    cdf = report.plot_cdf(jobs, "2", names, tmp_path / "cdf.png", "cdf", h)
    bars = report.plot_bars(agg, names, tmp_path / "bars.png", "bars", h)
    for files in (cdf, bars):
        assert [f.suffix for f in files] == [".png", ".svg", ".pdf"] and all(f.stat().st_size > 0 for f in files)
        width = matplotlib.image.imread(files[0]).shape[1]
        assert width == round(report.COLUMN_WIDTH * 200)  # 3.5 in at 200 dpi
    assert [f.read_bytes() for f in report.plot_cdf(jobs, "2", names, tmp_path / "again.png", "cdf", h)] == \
        [f.read_bytes() for f in cdf]  # byte-identical reruns in every format
    plt = report._plt()
    with plt.rc_context(report.STYLE):
        fig = report.cdf_figure(jobs, "2", names, "a title", h)
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend().get_window_extent()
        inside = ax.get_window_extent()
        assert inside.x0 <= legend.x0 and legend.x1 <= inside.x1 and inside.y0 <= legend.y0 and legend.y1 <= inside.y1
        assert not legend.overlaps(ax.title.get_window_extent())
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == [f"{p} ({role})" for p, (role, _) in sorted(h.items(), key=lambda kv: names.index(kv[0]))] \
            + ["other policies"]
        assert ax.title.get_fontsize() >= 8 and min(t.get_fontsize() for t in ax.get_legend().get_texts()) >= 7
        plt.close(fig)
        fig = report.bars_figure(agg, names, "a title", h)
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = fig.legends[0].get_window_extent()
        assert not legend.overlaps(ax.get_window_extent())  # the loads' legend sits outside the data
        assert not legend.overlaps(fig._suptitle.get_window_extent())
        assert fig.get_size_inches()[0] == report.COLUMN_WIDTH
        plt.close(fig)


def test_pollux_workload_loader(shared):
    import envs
    import traces
    from baselines import get
    from traces import pollux

    path = shared("reference", "pollux", "workloads", "workload-6.csv", what="the Pollux workloads")
    w = pollux.load_workload(path)
    assert len(w) == 160 and (w["duration"] > 0).all()
    assert set(w["model"]) <= set(pollux.APPLICATION_MODELS.values())
    assert (w.loc[w["vc"] == "ncf", "model"] == "recommendation").all()
    run_time = w.attrs["pollux"]["run_time"]
    # more GPUs at the same batch size: faster
    bert = pollux.application(path.parent.parent, "bert")
    times = [bert.run_time(r, 384) for r in (6, 8, 12, 16)]
    assert times == sorted(times, reverse=True)
    # alone on the pollux cluster (T4), a job runs for exactly its measured run time
    job = w.iloc[[3]].reset_index(drop=True)
    job.attrs = w.attrs
    res = envs.simulate(job, traces.clusters.pollux(), get("fifo"), known_durations=False, goodput=False)
    assert res.jobs["jct"].iloc[0] == pytest.approx(run_time[job["job_id"].iloc[0]], rel=1e-9)


# ------------------------------------------------------------------------------- agents
def test_saved_agent_runs_as_a_policy(tmp_path):
    pytest.importorskip("sb3_contrib")
    from agents import make_model, save_agent
    from envs.engine import EnvConfig
    from envs.sb3 import GpuClusterVecEnv

    cfg = EnvConfig(num_jobs=16, max_slots=8, trace_jobs=500)
    model = make_model("maskable_ppo", "slot", GpuClusterVecEnv(1, seed=0, config=cfg), cfg, n_steps=32,
                       batch_size=32)
    agent = save_agent(model, tmp_path / "my-agent", algo="maskable_ppo", policy="slot", env_config=cfg)
    suite = load_suite(_suite(tmp_path, TINY, "tiny"))
    out = tmp_path / "out"
    summary = leaderboard.run(suite, policies=["fifo"], agents=[agent], out=out, workers=1)
    assert (summary.cells, summary.computed, summary.failed) == (4, 4, [])
    table = (out / "leaderboard.md").read_text()
    assert "| agent:my-agent |  | 2 |" in table
    with pytest.raises(SuiteError, match="not an agent folder"):
        leaderboard.run(suite, agents=[tmp_path], out=out, workers=1)
