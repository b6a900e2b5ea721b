"""The shipped pretrained agents: loadable by name, legal and complete in a replay on any
one-type cluster, their records consistent with the presets that train them."""

from __future__ import annotations

import json

import numpy as np
import pytest

import baselines
import envs
from agents import AgentPolicy, load_agent, pretrained_names, resolve_agent, training_record
from agents.pretrained import PRETRAINED_DIR
from traces import clusters, synthetic
from traces.paths import PHILLY_POLLUX_CSV, shared_file

PHILLY = ("philly-clairvoyant", "philly-nonclairvoyant")
SHIPPED = (*PHILLY, "pollux-allocate")


def recorded_ratios_are_consistent(rec: dict) -> None:
    """The ratio's CI brackets it, and the recorded ratio is the recorded JCTs' ratio."""
    for kind in ("non-oracle", "oracle"):
        if f"best_{kind}" in rec["test"]:
            r, lo, hi = rec["test"][f"ratio_to_best_{kind}"]
            assert lo <= r <= hi
            assert r == pytest.approx(rec["test"]["agent_avg_jct"] / rec["test"][f"best_{kind}_avg_jct"])


def test_both_tracks_are_shipped_with_their_records():
    assert set(SHIPPED) <= set(pretrained_names())
    for name in PHILLY:
        rec = training_record(name)
        assert rec["command"] == f"python train.py --preset {name}"
        assert rec["seed"] == rec["args"]["seed"] == 0
        assert rec["args"]["known_durations"] == (name == "philly-clairvoyant")
        assert rec["test"]["track"] == ("clairvoyant" if name == "philly-clairvoyant" else "non-clairvoyant")
        meta = json.loads((PRETRAINED_DIR / name / "agent.json").read_text())
        assert meta["env"]["known_durations"] == rec["args"]["known_durations"]
        recorded_ratios_are_consistent(rec)


def test_the_allocate_agent_is_shipped_with_its_record():
    rec = training_record("pollux-allocate")
    assert rec["command"] == "python train.py --preset pollux-allocate"
    assert rec["seed"] == rec["args"]["seed"] == 0
    assert (rec["args"]["trace"], rec["args"]["cluster"], rec["args"]["action_mode"]) == \
        ("pollux-workloads", "pollux", "allocate")
    assert rec["test"]["best_non-oracle"] == "pollux"
    meta = json.loads((PRETRAINED_DIR / "pollux-allocate" / "agent.json").read_text())
    assert meta["env"]["action_mode"] == "allocate"
    recorded_ratios_are_consistent(rec)


def test_the_allocate_agent_replays_a_pollux_workload_to_the_end(shared):
    """Workload 6 of the Pollux artifact (goodput jobs, never in the agent's training part) at its
    own arrivals on the Pollux cluster: every job finishes, and the agent beats FIFO."""
    from traces import pollux

    root = shared("reference", "pollux", what="the Pollux reference measurements")
    trace = pollux.load_workload(root / "workloads" / "workload-6.csv")
    spec = clusters.pollux()
    policy = AgentPolicy("pollux-allocate")
    res = envs.simulate(trace, spec, policy, known_durations=policy.needs_durations, seed=0)
    assert res.metrics["unfinished"] == 0
    assert (res.jobs["gpus_last"] >= 1).all()
    fifo = envs.simulate(trace, spec, baselines.get("fifo"), seed=0)
    assert res.metrics["avg_jct"] < fifo.metrics["avg_jct"]


@pytest.mark.parametrize("name", PHILLY)
@pytest.mark.parametrize("cluster", ["tiny", "small"])
def test_a_shipped_agent_replays_a_trace_to_the_end(name, cluster):
    spec = clusters.get(cluster)
    trace = synthetic(64 if cluster == "tiny" else 300, load=3.0 if cluster == "tiny" else 8.0, cluster=spec, seed=3)
    policy = AgentPolicy(name)
    assert policy.name == f"agent:{name}"
    assert policy.needs_durations == (name == "philly-clairvoyant")
    res = envs.simulate(trace, spec, policy, known_durations=policy.needs_durations, seed=0)
    jobs = res.jobs
    assert res.metrics["unfinished"] == 0
    assert np.all(jobs["first_start"] >= jobs["submit"] - 1e-9) and np.all(jobs["finish"] > jobs["first_start"])
    fifo = envs.simulate(trace, spec, baselines.get("fifo"), seed=0)
    assert fifo.metrics["avg_queueing_delay"] > 0.1 * fifo.metrics["avg_jct"]  # the window is contended
    assert res.metrics["avg_jct"] < fifo.metrics["avg_jct"]  # a trained scheduler beats FIFO under contention


def test_names_and_folders_resolve_and_unknown_names_say_what_is_known(tmp_path):
    assert resolve_agent("philly-clairvoyant") == PRETRAINED_DIR / "philly-clairvoyant"
    assert resolve_agent(PRETRAINED_DIR / "philly-clairvoyant") == PRETRAINED_DIR / "philly-clairvoyant"
    agent = load_agent("philly-clairvoyant")
    assert agent.env["known_durations"] is True
    with pytest.raises(FileNotFoundError, match="philly-clairvoyant"):
        load_agent("no-such-agent")
    with pytest.raises(FileNotFoundError, match="not an agent folder"):
        load_agent(tmp_path)


def test_the_leaderboard_takes_a_shipped_agent_by_name():
    from leaderboard.suite import agent_spec

    spec = agent_spec("philly-clairvoyant")
    assert spec.name == "agent:philly-clairvoyant"
    assert spec.agent == str(PRETRAINED_DIR / "philly-clairvoyant")


@pytest.mark.skipif(shared_file(*PHILLY_POLLUX_CSV) is None,
                    reason="needs ../shared/traces/philly/pollux_philly.csv.gz (the Philly presets train on it)")
@pytest.mark.parametrize("name", SHIPPED)
def test_the_preset_is_the_recorded_run(name):
    import dataclasses

    import train

    args = dataclasses.asdict(train.parse_args(["--preset", name]))
    recorded = training_record(name)["args"]
    args["trace"] = args["trace"].rsplit("/", 1)[-1]
    assert args == recorded
    # flags after the preset override it
    assert train.parse_args(["--preset", name, "--seed", "4"]).seed == 4


def test_judged_baselines_keep_the_references_and_reject_unknown_names():
    import baselines as registry
    import train

    assert train.judged_baselines("all") == registry.names()
    picked = train.judged_baselines("srtf, las")
    assert picked == [n for n in registry.names() if n in {"fifo", "tiresias", "srtf", "las"}]
    with pytest.raises(ValueError, match=r"unknown baseline.*nope"):
        train.judged_baselines("las,nope")
    with pytest.raises(SystemExit, match="--baselines"):
        train.parse_args(["--baselines", "nope"])
    with pytest.raises(SystemExit, match="unknown preset"):
        train.parse_args(["--preset", "nope"])
