"""Leaderboard reliability: a damaged cell file is recomputed (with a warning naming it) to the
same outputs as a clean run; a SIGKILLed run leaves no worker process behind, and resuming it
gives byte-identical files to an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import leaderboard
from leaderboard import runner
from leaderboard.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = ("leaderboard.md", "cells.csv", "jobs.csv.gz", "avg_jct_vs_fifo.png")

# 4 cells (fifo x 2 loads x 2 seeds): cheap enough to rerun once per kind of damage, and one
# more than the workers of the pool killed mid-run
SUITE = """
name = "four"
seeds = [0, 1]
loads = [1.0, 1.5]
policies = ["fifo"]

[cluster]
preset = "tiny"

[trace]
kind = "synthetic"
num_jobs = 20
"""


def _suite_file(folder: Path, text: str, name: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def _outputs(out: Path) -> dict[str, bytes]:
    return {f: (out / f).read_bytes() for f in OUTPUTS}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, Path]:
    """A suite file and the output folder of its clean, uninterrupted run."""
    folder = tmp_path_factory.mktemp("clean")
    path = _suite_file(folder, SUITE, "four")
    summary = leaderboard.run(load_suite(path), out=folder / "out", workers=1)
    assert (summary.computed, summary.failed) == (4, [])
    return path, folder / "out"


def _cell_files(out: Path) -> list[Path]:
    return sorted((out / "cells").glob("*.parquet"))


def _flip(offset: int):
    def damage(f: Path) -> None:
        data = bytearray(f.read_bytes())
        data[offset] ^= 0x01
        f.write_bytes(bytes(data))
    return damage


def _garbage_with_its_checksum(f: Path) -> None:
    data = b"PAR1 not a parquet file PAR1"
    f.write_bytes(data)
    runner.checksum_path(f).write_text(f"{hashlib.sha256(data).hexdigest()}  {f.name}\n")


DAMAGES = {
    "truncated-half": lambda f: f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]),
    "truncated-empty": lambda f: f.write_bytes(b""),
    "flip-magic": _flip(0),
    "flip-first-page": _flip(4),
    "flip-middle": _flip(5000),
    "flip-footer-metadata": _flip(-300),
    "flip-footer-length": _flip(-8),
    "flip-last-byte": _flip(-1),
    "checksum-deleted": lambda f: runner.checksum_path(f).unlink(),
    "checksum-garbled": lambda f: runner.checksum_path(f).write_text("not a checksum\n"),
    "checksum-of-other-data": lambda f: runner.checksum_path(f).write_text(f"{'0' * 64}  {f.name}\n"),
    "unreadable-with-matching-checksum": _garbage_with_its_checksum,
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_damaged_cell_file_is_recomputed_to_identical_outputs(clean, tmp_path, damage):
    path, reference = clean
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    victim = _cell_files(out)[1]
    damage(victim)
    with pytest.warns(runner.CellCacheWarning, match=victim.name) as record:
        summary = leaderboard.run(load_suite(path), out=out, workers=1)
    assert len(record) == 1 and "recomputing cell" in str(record[0].message)
    assert (summary.cells, summary.cached, summary.computed, summary.failed) == (4, 3, 1, [])
    assert _outputs(out) == _outputs(reference)
    # the recomputed file and its new checksum verify: the next run reuses both cells silently
    assert runner._verified_bytes(victim)
    again = leaderboard.run(load_suite(path), out=out, workers=1)
    assert (again.cached, again.computed) == (4, 0)
    assert _outputs(out) == _outputs(reference)


def test_every_flipped_byte_of_a_cell_file_is_detected(clean, tmp_path):
    path, reference = clean
    victim = _cell_files(reference)[0]
    suite = load_suite(path)
    cell = next(c for c in suite.cells(suite.policy_specs()) if runner.cell_path(reference / "cells", c) == victim)
    size = victim.stat().st_size
    copy = tmp_path / victim.name
    shutil.copy(runner.checksum_path(victim), runner.checksum_path(copy))
    for offset in range(0, size, max(1, size // 97)):
        copy.write_bytes(victim.read_bytes())
        _flip(offset)(copy)
        with pytest.raises(runner.DamagedCellError, match="does not match"):
            runner.read_cell(cell, copy)
    copy.write_bytes(victim.read_bytes())
    assert runner.read_cell(cell, copy).jobs.equals(runner.read_cell(cell, victim).jobs)


def test_damaged_cell_file_through_the_cli_is_a_warning_not_a_traceback(clean, tmp_path):
    path, reference = clean
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    victim = _cell_files(out)[0]
    victim.write_bytes(victim.read_bytes()[:100])
    proc = subprocess.run([sys.executable, "-m", "leaderboard", "run", str(path), "--out", str(out), "--workers", "1",
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"warning: damaged cache: {victim}: SHA-256" in proc.stderr
    assert "4 cells, 3 cached, 1 computed, 0 failed" in proc.stdout
    assert _outputs(out) == _outputs(reference)


# ------------------------------------------------------------------------------- SIGKILL
def _group_members(pgid: int) -> list[str]:
    """Live (non-zombie) processes of process group ``pgid``, as ``"pid cmdline"`` (a /proc scan)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        state, _ppid, group = stat[stat.rindex(")") + 2:].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(f"{entry.name} {cmd}")
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to list processes")
def test_sigkill_leaves_no_workers_and_resume_is_byte_identical(clean, tmp_path):
    path, reference = clean
    out = tmp_path / "out"
    env = {**os.environ, runner.DELAY_ENV: "1.0"}  # the 4th cell is still to come when the 1st is cached
    proc = subprocess.Popen([sys.executable, "-m", "leaderboard", "run", str(path), "--out", str(out),
                             "--workers", "3", "--no-progress"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("cells/*.parquet")):
            assert proc.poll() is None, "the run ended before any cell was cached"
            assert time.monotonic() < deadline, "no cell cached within 300 s"
            time.sleep(0.05)
        # the pool's workers and multiprocessing's resource tracker run in the CLI's process group
        assert len(_group_members(proc.pid)) >= 4, _group_members(proc.pid)
        proc.send_signal(signal.SIGKILL)  # the CLI only: it cannot stop its pool
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while (left := _group_members(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"processes alive 15 s after SIGKILL of the CLI: {left}"
    finally:
        if proc.poll() is None or _group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    cached = len(list((out / "cells").glob("*.parquet")))
    assert 1 <= cached < 4
    resumed = leaderboard.run(load_suite(path), out=out, workers=1)
    assert (resumed.cached, resumed.computed, resumed.failed) == (cached, 4 - cached, [])
    assert _outputs(out) == _outputs(reference)
    assert not list((out / "cells").glob(".*.tmp"))  # the killed workers' half-written files are cleaned


WATCHED_CHILD = """
import os, subprocess, sys, time
code = (
    "import os, sys, time\\n"
    "from leaderboard import runner\\n"
    "sys.platform = 'darwin'  # no prctl: the portable parent-pid watch\\n"
    "runner._init_worker(os.getppid())\\n"
    "print('ready', flush=True)\\n"
    "time.sleep(60)\\n"
)
subprocess.Popen([sys.executable, "-c", code])
time.sleep(60)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to list processes")
def test_worker_without_prctl_exits_when_its_parent_is_killed():
    proc = subprocess.Popen([sys.executable, "-c", WATCHED_CHILD], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        assert len(_group_members(proc.pid)) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while (left := _group_members(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"worker alive 15 s after SIGKILL of its parent: {left}"
    finally:
        if _group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
