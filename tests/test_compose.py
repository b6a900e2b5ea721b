"""Composition of admission, scheduling and placement policies (:mod:`baselines.compose`).

The default composition decides exactly as the scheduler alone; ``placement="consolidate"``
reproduces the core's own placer, ``"cassini"`` and ``"synergy"`` the baselines they come from;
load-based admission keeps its limit whenever it holds jobs back, admits in arrival order and
never gives a held job GPUs; ``"spread"`` spreads where ``"consolidate"`` packs; composed
policies keep the contract of :mod:`tests.test_contract`; a bad part is a clear error; a suite
can name composed variants.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_contract import _same, _snapshot, run_vector
from test_contract import replay as contract_replay

import baselines
from baselines.compose import ADMISSIONS, PLACEMENTS, Composed, LoadBasedAccept, compose
from envs import ClusterCore, ClusterView, make_workload, simulate
from envs.core import EMPTY, RUNNING
from envs.policy import execute
from leaderboard.suite import SuiteError, load_suite
from traces import clusters, make_trace, synthetic

RULE_BASED = ["fifo", "fjf", "sjf", "srtf", "las", "tiresias", "gandiva", "themis"]


def trace(seed: int = 5, jobs: int = 40) -> pd.DataFrame:
    return synthetic(jobs, load=1.5, cluster="tiny", seed=seed, duration_range=(10, 20000))


def run(policy, tr=None, **options):
    opts = {"known_durations": policy.needs_durations, **options}
    return simulate(trace() if tr is None else tr, "tiny", policy, **opts)


def times(res) -> np.ndarray:
    return res.jobs[["first_start", "finish"]].to_numpy()


# ---------------------------------------------------------------------------------- identity
@pytest.mark.parametrize("name", RULE_BASED)
def test_default_composition_and_consolidate_placement_equal_the_scheduler(name):
    tr = trace(seed=11)
    plain = run(baselines.get(name), tr)
    assert plain.metrics["avg_queueing_delay"] > 0  # the trace contends: decisions matter
    for policy in (compose(name), baselines.get(name, admission="all"),
                   baselines.get(name, placement="consolidate")):  # the core's own placer, done explicitly
        assert isinstance(policy, Composed)
        np.testing.assert_array_equal(times(run(policy, tr)), times(plain))
    assert type(baselines.get(name)) is baselines.REGISTRY[name]  # no composition knob: the plain class


def test_cassini_and_synergy_placements_are_their_modules():
    tr = trace(seed=3)
    host = run(baselines.get("cassini", host="tiresias"), tr, network=True)
    composed = run(baselines.get("tiresias", placement="cassini"), tr, network=True)
    np.testing.assert_array_equal(times(composed), times(host))
    for mode, name in (("tune", "synergy"), ("proportional", "synergy_proportional")):
        own = run(baselines.get(name), tr, resources=True)
        composed = run(baselines.get("las", placement="synergy", placement_knobs={"mode": mode}), tr, resources=True)
        np.testing.assert_array_equal(times(composed), times(own))


# ---------------------------------------------------------------------------------- admission
def replay_checked(policy: Composed, tr: pd.DataFrame, check) -> None:
    """Replay ``tr`` on ``tiny`` as :func:`envs.simulate` does, calling ``check(view, policy)``
    after every decision has been carried out."""
    spec = clusters.get("tiny")
    core = ClusterCore(spec, 1, round_length=policy.round_length)
    view = ClusterView(core, known_durations=policy.needs_durations)
    policy.reset(view)
    core.load(np.array([0]), [make_workload(tr, spec)])
    while not core.done[0]:
        policy.prepare(view)
        execute(core, policy.decide(view))
        check(view, policy)
        assert np.isfinite(core.next_event()[0])
        stats = core.advance()
        view.at_round_boundary = stats.round_hit


@pytest.mark.parametrize(("name", "factor"), [("las", 1.0), ("srtf", 1.5), ("tiresias", 0.75), ("fjf", 1.0)])
def test_load_admission_holds_jobs_back_within_its_limit_in_arrival_order(name, factor):
    policy = baselines.get(name, admission="load", admission_knobs={"factor": factor})
    limit = int(np.floor(factor * 8))  # tiny: 8 GPUs
    assert policy.admission.limit(ClusterView(ClusterCore(clusters.get("tiny"), 1))) == limit
    seen = {"held": 0, "decisions": 0}

    def check(view, p):
        active = view.status != EMPTY
        admitted = p.admitted(view)
        held = active & ~admitted
        gpus = np.asarray(view.gpus)
        seen["decisions"] += 1
        assert not (held & (view.status == RUNNING)).any()  # a held job never runs
        if held.any():
            seen["held"] += 1
            demand = int(gpus[admitted].sum())
            # within the limit, unless the only admitted job is larger than it (never blocked)
            assert demand <= limit or admitted.sum() == 1, (demand, limit)
            # strict FIFO: everything admitted arrived before everything held
            key = np.asarray(view.submit) * 1e6 + np.asarray(view.job)
            assert key[admitted].max(initial=-np.inf) < key[held].min()
            # and the head of the queue did not fit (or admission would have taken it)
            head = np.flatnonzero(held[0])[np.argmin(key[0][held[0]])]
            assert demand + gpus[0, head] > limit

    replay_checked(policy, trace(seed=8, jobs=50), check)
    assert seen["held"] > 0.2 * seen["decisions"]  # the limit binds


def test_job_cap_admission_and_oversized_head():
    policy = baselines.get("las", admission="jobs", admission_knobs={"max_jobs": 3})
    held_seen = []

    def check(view, p):
        admitted = p.admitted(view)
        held = (view.status != EMPTY) & ~admitted
        if held.any():
            held_seen.append(True)
            assert admitted.sum() <= 3
    replay_checked(policy, trace(seed=2, jobs=40), check)
    assert held_seen
    # a job larger than the limit is admitted once nothing else is: every job finishes
    tr = make_trace(pd.DataFrame({"submit_time": [0.0, 1.0, 2.0], "duration": [100.0, 200.0, 50.0],
                                  "num_gpus": [2, 8, 1]}))
    res = run(baselines.get("fifo", admission="load", admission_knobs={"factor": 0.5}), tr)
    assert res.metrics["unfinished"] == 0
    np.testing.assert_allclose(res.jobs["first_start"], [0.0, 100.0, 300.0])  # FIFO behind the 8-GPU job


def test_admission_changes_results_and_all_jobs_finish():
    tr = trace(seed=11)
    plain = run(baselines.get("las"), tr)
    held = run(baselines.get("las", admission="load", admission_knobs={"factor": 1.0}), tr)
    assert held.metrics["unfinished"] == 0
    assert not np.array_equal(times(held), times(plain))


# ---------------------------------------------------------------------------------- placement
@pytest.mark.parametrize(("gpus", "nodes_cons", "nodes_spread"), [(2, 1, 2), (3, 1, 3), (6, 2, 4)])
def test_spread_uses_more_nodes_than_consolidate(gpus, nodes_cons, nodes_spread):
    spec = clusters.from_counts("four", [("v100", 4, 4, 64, 512)])
    tr = make_trace(pd.DataFrame({"submit_time": [0.0], "duration": [100.0], "num_gpus": [gpus]}))
    used = {}
    for placement in ("consolidate", "spread"):
        policy = baselines.get("fifo", placement=placement)
        core = ClusterCore(spec, 1)
        view = ClusterView(core)
        policy.reset(view)
        core.load(np.array([0]), [make_workload(tr, spec)])
        core.advance()  # the arrival
        policy.prepare(view)
        execute(core, policy.decide(view))
        row = core.s_place[0, core.s_status[0] == RUNNING]
        assert row.sum() == gpus
        used[placement] = int((row > 0).sum())
    assert used == {"consolidate": nodes_cons, "spread": nodes_spread}


def test_spread_slows_locality_sensitive_gangs():
    tr = make_trace(pd.DataFrame({"submit_time": [0.0], "duration": [1000.0], "num_gpus": [4],
                                  "model": ["transformer"]}))
    cons = run(baselines.get("fifo", placement="consolidate"), tr)
    spread = run(baselines.get("fifo", placement="spread"), tr)
    assert cons.jobs["finish"].iloc[0] == pytest.approx(1000.0)
    assert spread.jobs["finish"].iloc[0] > 1000.0 * 1.05  # a gang over 2 nodes pays its locality factor


# ---------------------------------------------------------------------------------- contract
COMPOSED = [
    ("tiresias", dict(admission="load", placement="spread"), {}),
    ("srtf", dict(admission="jobs", admission_knobs={"max_jobs": 4}, placement="consolidate"), {}),
    ("gandiva", dict(admission="load", admission_knobs={"factor": 1.0}), {}),
    ("themis", dict(admission="load", placement="cassini"), {"network": True}),
    ("las", dict(admission="load", placement="synergy"), {"resources": True}),
]


@pytest.mark.parametrize(("name", "parts", "settings"), COMPOSED, ids=[c[0] for c in COMPOSED])
def test_composed_policies_keep_the_contract(name, parts, settings):
    policy = baselines.get(name, **parts)
    knobs = policy.knobs()
    again = Composed(**knobs)
    assert again.knobs() == knobs and repr(again) == repr(policy)
    with pytest.raises(TypeError, match="no_such_knob"):
        baselines.get(name, no_such_knob=1, **parts)
    decide = policy.decide
    checked = []

    def watched(view):
        before = _snapshot(view)
        decision = decide(view)
        after = _snapshot(view)
        assert not [k for k in before if not _same(before[k], after[k])]
        checked.append(len(before))
        return decision

    policy.decide = watched
    res = run(policy, **settings)
    jobs = res.jobs
    assert checked and res.metrics["unfinished"] == 0
    assert (jobs["first_start"] >= jobs["submit"]).all()
    assert (jobs["finish"] >= jobs["submit"] + jobs["duration"] - 1e-6).all()


@pytest.mark.parametrize(("name", "parts"), [("las", dict(admission="load", admission_knobs={"factor": 1.0})),
                                             ("fjf", dict(admission="jobs", admission_knobs={"max_jobs": 3}))])
def test_admission_decides_the_same_in_the_vector_env(name, parts, monkeypatch):
    policy = baselines.get(name, **parts)
    rl = policy.round_length or 300.0
    expected = contract_replay(name, policy, round_length=rl, restart_overhead=30.0).jobs
    assert (expected["first_start"] > expected["submit"]).any()
    monkeypatch.setattr(baselines, "get", lambda n, **k: baselines.compose(n, **parts))  # run_vector builds by name
    for jobs in run_vector(name, rl, policy.needs_durations):
        np.testing.assert_allclose(jobs["first_start"], expected["first_start"])
        np.testing.assert_allclose(jobs["finish"], expected["finish"])


# ---------------------------------------------------------------------------------- errors
def test_bad_parts_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown admission policy 'nope'.*'all', 'load', 'jobs'"):
        baselines.get("las", admission="nope")
    with pytest.raises(ValueError, match=r"unknown placement policy 'nope'.*'consolidate', 'spread'"):
        compose("las", placement="nope")
    with pytest.raises(ValueError, match=r"unknown scheduler 'nope'.*'fifo'"):
        compose("nope")
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        baselines.get("nope", placement="spread")
    with pytest.raises(TypeError, match=r"admission 'load'.*threshold"):
        baselines.get("las", admission="load", admission_knobs={"threshold": 2})
    with pytest.raises(ValueError, match="factor must be a finite number > 0"):
        LoadBasedAccept(factor=0)
    with pytest.raises(ValueError, match="places jobs itself"):
        compose("cassini", placement="spread")
    with pytest.raises(ValueError, match="needs the resource model"):
        run(baselines.get("las", placement="synergy"))
    assert set(ADMISSIONS) == {"all", "load", "jobs"} and "spread" in PLACEMENTS


# ---------------------------------------------------------------------------------- leaderboard
def test_blox_suite_names_composed_variants():
    suite = load_suite("blox")
    specs = {s.name: s for s in suite.policy_specs()}
    assert list(specs) == ["fifo", "las", "las_spread", "las_load", "las_load14"]
    spread, load14 = specs["las_spread"].build(), specs["las_load14"].build()
    assert isinstance(spread, Composed) and spread.scheduler.name == "las" and spread.placement == "spread"
    assert load14.admission.factor == 1.4
    ids = [s.identity() for s in specs.values()]
    assert len({str(i) for i in ids}) == len(ids)  # every variant its own cache key
    assert ids[2]["variant"] == "las_spread" and ids[2]["knobs"]["placement"] == "spread"


@pytest.mark.parametrize(("variant", "message"), [
    ('[variants.x]\npolicy = "las"\nplacement = "nope"', "unknown placement policy 'nope'"),
    ('[variants.las]\npolicy = "las"\nplacement = "spread"', "is a baseline's name"),
    ('[variants.x]\npolicy = "nope"', "needs policy = one of"),
    ('[knobs.las]\nadmission = "nope"', "unknown admission policy 'nope'"),
])
def test_bad_composed_suite_entries_are_clear_errors(tmp_path, variant, message):
    text = (load_suite("blox").path.read_text().split("[variants.")[0]
            .replace('policies = ["las", "las_spread", "las_load", "las_load14"]', 'policies = ["las"]'))
    path = tmp_path / "bad.toml"
    path.write_text(text + variant + "\n")
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(path)
    assert str(path) in str(info.value)
