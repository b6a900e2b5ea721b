"""The reproduction report (leaderboard/reproduce.py): every row runs at small scale, the
verdict rule on hand-made numbers, and the written report holds exactly the run's figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from leaderboard import reproduce as R
from leaderboard.__main__ import main


# ---------------------------------------------------------------------------------- verdicts
@pytest.mark.parametrize(("paper", "ours", "direction", "kind", "expected", "expected_ratio"), [
    (1.3, 1.3, True, "factor", "holds", 1.0),
    (1.3, 1.39, True, "factor", "holds", 1.3),  # gain 0.39 vs 0.30: at the tolerance
    (1.3, 1.40, True, "factor", "holds in direction", 4 / 3),
    (1.3, 1.05, True, "factor", "holds in direction", 0.05 / 0.3),  # a sixth of the gain, not 0.81
    (3.4, 1.46, True, "factor", "holds in direction", 0.46 / 2.4),
    (1.3, 0.95, False, "factor", "does not hold", -0.05 / 0.3),
    (None, 2.0, True, "factor", "holds in direction", math.nan),
    ((1.43, 14.3), 2.0, True, "factor", "holds", 1.0),  # inside the range
    ((1.43, 14.3), 1.2, True, "factor", "holds in direction", 0.2 / 0.43),  # to the nearest end
    (2446.0, 2300.0, True, "seconds", "holds", 2300 / 2446),
    (2446.0, 1500.0, True, "seconds", "holds in direction", 1500 / 2446),
    (2446.0, 2446.0, False, "seconds", "does not hold", 1.0),  # the ordering failed
])
def test_verdict_and_ratio_on_hand_made_numbers(paper, ours, direction, kind, expected, expected_ratio):
    assert R.verdict(paper, ours, direction, kind) == expected
    r = R.ratio(paper, ours, kind)
    assert (math.isnan(r) and math.isnan(expected_ratio)) or r == pytest.approx(expected_ratio)


def test_measure_direction_follows_the_factor_or_the_ordering():
    assert R.Measure("a", "factor", 1.3, 1.2, math.nan, 1).verdict == "holds in direction"
    assert R.Measure("a", "factor", 1.3, 0.99, math.nan, 1).verdict == "does not hold"
    assert R.Measure("a", "factor", 1.3, math.inf, math.nan, 1).verdict == "holds in direction"
    with pytest.raises(ValueError, match="needs its direction"):
        R.Measure("a", "seconds", 10.0, 10.0, math.nan, 1)
    with pytest.raises(ValueError, match="kind"):
        R.Measure("a", "percent", 10.0, 10.0, math.nan, 1)


def test_factor_is_the_mean_per_run_ratio_with_a_student_t_interval():
    base, pol = [100.0, 300.0, 200.0], [50.0, 200.0, 200.0]
    m = R.factor("x", base, pol, 2.0)
    per_run = np.array([2.0, 1.5, 1.0])
    assert (m.ours, m.n) == (pytest.approx(1.5), 3)
    assert m.half == pytest.approx(stats.t.ppf(0.975, 2) * per_run.std(ddof=1) / math.sqrt(3))
    up = R.factor("u", [0.5, 0.8], [0.6, 0.8], None, higher_is_better=True)
    assert up.ours == pytest.approx((1.2 + 1.0) / 2)
    zero = R.factor("z", [10.0, 20.0], [0.0, 5.0], None)  # a zero denominator: ratio of the means
    assert zero.ours == pytest.approx(15.0 / 2.5) and math.isnan(zero.half)
    tie = R.factor("t", [5.0], [5.0], None, ties_hold=True)
    assert tie.holds_direction and not R.factor("t", [5.0], [5.0], None).holds_direction


def test_formatted_figures_parse_back():
    for m in (R.Measure("a", "factor", 1.3, 1.23456, 0.0789, 6), R.Measure("b", "factor", None, math.inf, math.nan, 2),
              R.Measure("c", "seconds", 2446.0, 12345.6, math.nan, 1, direction=True)):
        mean, half, n = R.parse_ours(R.fmt_ours(m))
        assert n == m.n and mean == pytest.approx(m.ours, abs=0.5 if m.kind == "seconds" else 0.005)
        assert (math.isnan(half) and math.isnan(m.half)) or half == pytest.approx(m.half, abs=0.005)
    with pytest.raises(ValueError, match="not a reproduction figure"):
        R.parse_ours("about 2x")


def test_unknown_rows_and_scales_are_clear_errors():
    with pytest.raises(ValueError, match="unknown reproduction row 'nope'"):
        R.get_row("nope")
    with pytest.raises(ValueError, match="scale must be one of"):
        R.get_row("lucid").run("medium")
    assert R.run_row("agent", "small").error == "not run: no agent given (--agent DIR, the agent/ folder of a train.py run)"


# ---------------------------------------------------------------------------------- every row
@pytest.fixture(scope="module")
def tiny_agent(tmp_path_factory):
    """An (untrained) saved agent, as train.py writes one."""
    pytest.importorskip("sb3_contrib")
    from agents import make_model, save_agent
    from envs.engine import EnvConfig
    from envs.sb3 import GpuClusterVecEnv

    cfg = EnvConfig(num_jobs=16, max_slots=8, trace_jobs=500)
    model = make_model("maskable_ppo", "slot", GpuClusterVecEnv(1, seed=0, config=cfg), cfg, n_steps=32, batch_size=32)
    return save_agent(model, tmp_path_factory.mktemp("run") / "agent", algo="maskable_ppo", policy="slot",
                      env_config=cfg)


@pytest.fixture(scope="module")
def small_run(tiny_agent, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduction")
    results = R.reproduce("small", agent=tiny_agent, workers=1, suite_out=out / "suites")
    files = R.write(results, "small", out, agent=str(tiny_agent))
    return results, files


def test_every_row_runs_at_small_scale(small_run):
    from traces.paths import shared_file

    results, _ = small_run
    assert [r.name for r in results] == R.row_names()
    for res in results:
        row = R.get_row(res.name)
        if res.error:  # only rows whose shared data is absent may be skipped
            assert row.needs and any(shared_file(*p) is None for p in row.needs), (res.name, res.error)
            assert res.error.startswith("not run: needs ")
            continue
        assert res.measures, res.name
        for m in res.measures:
            assert m.n >= 1 and (m.ours > 0 or m.kind == "factor")
            assert m.verdict in R.VERDICTS
    agent = next(r for r in results if r.name == "agent")
    assert not agent.error and agent.measures[0].label.startswith("agent vs tiresias")


def test_the_written_report_holds_the_run_s_figures(small_run):
    results, (md_path, csv_path) = small_run
    text = md_path.read_text()
    assert "scale **small**" in text
    table = R.parse_markdown(text)
    measures = [(res, m) for res in results for m in res.measures]
    not_run = [res for res in results if res.error]
    assert len(table) == len(measures) + len(not_run)
    by_label = {(r["measure"]): r for r in table if r["measure"]}
    reason_said: set[str] = set()
    for res, m in measures:
        line = by_label[m.label]
        mean, half, n = line["parsed"]
        tol = 0.5 if m.kind == "seconds" else 0.005
        assert n == m.n and (mean == pytest.approx(m.ours, abs=tol) or mean == m.ours == math.inf)
        assert (math.isnan(half) and math.isnan(m.half)) or half == pytest.approx(m.half, abs=tol)
        assert line["verdict"] == m.verdict
        agent = " --agent AGENT_DIR" if res.name == "agent" else ""
        assert line["command"] == f"`python -m leaderboard reproduce --rows {res.name} --scale small{agent}`"
        reason = R.get_row(res.name).reason
        if m.verdict != "holds" and reason:  # written on the row's first line that needs it
            assert line["reason where magnitude differs"] == ("" if res.name in reason_said else reason)
            reason_said.add(res.name)
        else:
            assert line["reason where magnitude differs"] == ""
    csv = pd.read_csv(csv_path)
    ran = csv[csv["kind"].notna()]
    assert len(ran) == len(measures)
    np.testing.assert_allclose(ran["ours"].to_numpy(), [m.ours for _, m in measures], rtol=1e-9)
    assert list(ran["verdict"]) == [m.verdict for _, m in measures]
    for name in ("shockwave", "synergy"):
        reason = csv.loc[csv["row"] == name, "reason"].dropna()
        assert reason.empty or reason.str.contains(R.GAPS_DOC, regex=False).all()


def test_cli_writes_the_report_and_rejects_a_bad_agent(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "--scale", "small", "--rows", "lucid", "optimus", "--out", str(out), "--workers", "1",
                 "--no-progress"]) == 0
    table = R.parse_markdown((out / "REPRODUCTION.md").read_text())
    assert [r["paper"] for r in table] == ["Lucid (ASPLOS'23)", "Optimus (EuroSys'18)", ""]  # once per row
    assert "lucid: Lucid vs Tiresias, avg JCT: " in capsys.readouterr().out
    assert main(["reproduce", "--scale", "small", "--agent", str(tmp_path), "--out", str(out)]) == 2
    assert "not an agent folder" in capsys.readouterr().err
