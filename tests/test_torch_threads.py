"""The agents' entry points choose torch threads for small networks (agents/threads.py), each
case in a fresh process since the choice is made once per process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = """
import torch
import agents
initial = torch.get_num_threads()
{before}
agents.ensure_torch_threads()
print(initial, torch.get_num_threads())
"""
CASES = {
    "default: one thread": ({}, "", lambda initial: 1),
    "CLUSTERGYM_TORCH_THREADS": ({"CLUSTERGYM_TORCH_THREADS": "3"}, "", lambda initial: 3),
    "OMP_NUM_THREADS: torch's own": ({"OMP_NUM_THREADS": "2"}, "", lambda initial: initial),
    "the program's own choice": ({}, "torch.set_num_threads(initial + 1)", lambda initial: initial + 1),
}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, tuple[int, int]]:
    """``(torch's threads before, after)`` per case, the processes run side by side."""
    procs = {}
    for name, (env, before, _) in CASES.items():
        clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                                  "CLUSTERGYM_TORCH_THREADS")}
        procs[name] = subprocess.Popen([sys.executable, "-c", SCRIPT.format(before=before)], cwd=ROOT,
                                       env={**clean, **env}, stdout=subprocess.PIPE, text=True)
    out = {}
    for name, proc in procs.items():
        stdout, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, name
        initial, after = map(int, stdout.split())
        out[name] = (initial, after)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_torch_threads(outcomes, name):
    initial, after = outcomes[name]
    assert after == CASES[name][2](initial)


def test_importing_agents_sets_nothing():
    code = "import torch; n = torch.get_num_threads(); import agents, train; assert torch.get_num_threads() == n"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)
