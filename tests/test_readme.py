"""Every ```python and ```bash block of the README runs, so that the README cannot drift from the
code.

- Python blocks run in this process at a reduced size: :data:`SMALLER` maps README text to what
  runs instead (every entry must still match the README, so editing a snippet means updating its
  entry here). Paths under ``../shared/`` are resolved as the project resolves them
  (``CLUSTERGYM_SHARED`` or ``../shared``); a block whose data is absent is skipped, naming it.
- Commands run with tiny arguments (:data:`TINY_ARGS`, appended: argparse keeps a flag's last
  value) where the README gives one, else with ``--help``; ``python train.py`` is parsed only
  (``tests/test_agents.py`` trains tiny runs end to end).
- Set-up lines (``venv``, ``pip install``) are checked for form only: the pinned torch, the
  editable install, and a final command that is the main job or the test command CI runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from traces.paths import shared_dir

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)

#: README text -> the text that runs instead, so that each Python snippet takes seconds
SMALLER = {
    'gym.make_vec("GpuCluster-v0", num_envs=256)': 'gym.make_vec("GpuCluster-v0", num_envs=4)',
    "GpuClusterVecEnv(16, seed=0)": "GpuClusterVecEnv(2, seed=0)",
    'MaskablePPO("MlpPolicy", GpuClusterVecEnv(2, seed=0), n_steps=64)':
        'MaskablePPO("MlpPolicy", GpuClusterVecEnv(2, seed=0), n_steps=8, batch_size=16, n_epochs=1)',
    "model.learn(10_240)": "model.learn(16)",
    'traces.load_trace("../shared/traces/philly/pollux_philly.csv.gz")':
        'traces.load_trace("../shared/traces/philly/pollux_philly.csv.gz").head(200)',
}

#: arguments appended to a README command so that it runs in seconds
TINY_ARGS = {
    ("python", "-m", "baselines"): ["--num-jobs", "64"],
}

#: the test command of the README's set-up line, which CI (.ci/run) runs too
TEST_COMMAND = ["python", "-m", "pytest"]
#: the extras that the README's test set-up and CI install
TEST_EXTRAS = ".[dev,ray]"


def python_blocks() -> list[str]:
    return [code for lang, code in BLOCKS if lang == "python"]


def commands() -> list[list[str]]:
    """The words of every command line of the ```bash blocks (continuations joined, comments
    dropped)."""
    lines = []
    for lang, code in BLOCKS:
        if lang == "bash":
            for line in code.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if words:
                    lines.append(words)
    return lines


def smaller(code: str) -> str:
    for old, new in SMALLER.items():
        code = code.replace(old, new)
    return code


def with_shared_data(code: str) -> str:
    """``code`` with ``../shared/`` paths resolved; skips naming the first missing file."""
    for rel in re.findall(r"\.\./shared/([\w./-]+)", code):
        root = shared_dir()
        if root is None or not (root / rel).exists():
            where = os.environ.get("CLUSTERGYM_SHARED") or "../shared"
            pytest.skip(f"needs {where}/{rel} (the shared data folder: ../shared or $CLUSTERGYM_SHARED); not present")
    root = shared_dir()
    return code.replace("../shared/", f"{root}/") if root else code


@pytest.fixture
def torch_threads():
    """Snippets may set torch's threads: give the rest of the suite back its own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_readme_has_python_and_bash_blocks():
    assert len(python_blocks()) >= 2 and len(commands()) >= 3


def test_every_reduction_matches_the_readme():
    """A README edit that a reduction no longer matches must update :data:`SMALLER` with it."""
    code = "\n".join(python_blocks())
    for old in SMALLER:
        assert old in code, f"README no longer contains {old!r}: update SMALLER in {__file__}"
        code = code.replace(old, SMALLER[old])


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_block_runs(index, torch_threads, monkeypatch, capsys):
    code = with_shared_data(smaller(python_blocks()[index]))
    monkeypatch.chdir(ROOT)
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "readme"})


def is_setup(words: list[str]) -> bool:
    return "pip" in words or "venv" in words


def steps_of(words: list[str]) -> list[list[str]]:
    """A command line split at ``&&``."""
    steps: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            steps.append([])
        else:
            steps[-1].append(word)
    return steps


@pytest.mark.parametrize("words", [w for w in commands() if is_setup(w)], ids=" ".join)
def test_setup_line_has_the_documented_form(words):
    line = " ".join(words)
    steps = steps_of(words)
    pin = re.search(r'"torch[^"]*<=\s*([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert steps[:3] == [["python3", "-m", "venv", ".venv"], [".", ".venv/bin/activate"],
                         ["pip", "install", f"torch=={pin}"]], line
    assert steps[3][:3] == ["pip", "install", "-e"] and steps[3][3] in (".", TEST_EXTRAS), line
    final = steps[4:]
    assert len(final) == 1, line
    if final[0] == TEST_COMMAND:
        assert steps[3][3] == TEST_EXTRAS, "the tests need the dev extras (and the Ray extra, for tests/test_ray.py)"
        ci = (ROOT / ".ci" / "run").read_text()
        assert shlex.join(TEST_COMMAND) in ci and f"pip install torch=={pin}" in ci and f'"{TEST_EXTRAS}"' in ci
    else:
        run_command(final[0])


def run_command(words: list[str]) -> None:
    """Run one README command: tiny arguments where :data:`TINY_ARGS` has some, else ``--help``."""
    if words[:2] == ["python", "train.py"]:
        import train

        train.parse_args(words[2:])  # training itself: tests/test_agents.py
        with pytest.raises(SystemExit) as stop:
            train.parse_args(["--help"])
        assert stop.value.code == 0
        return
    tiny = next((extra for prefix, extra in TINY_ARGS.items() if tuple(words[: len(prefix)]) == prefix), None)
    if words[:3] == ["python", "-m", "baselines"] and tiny is not None:
        from baselines.__main__ import main

        assert main(words[3:] + tiny) == 0
        return
    argv = [sys.executable, *words[1:], *(tiny or ["--help"])]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{shlex.join(words)}: {proc.stderr[-2000:]}"


@pytest.mark.parametrize("words", [w for w in commands() if not is_setup(w)], ids=" ".join)
def test_command_runs(words, capsys):
    words = shlex.split(with_shared_data(shlex.join(words)))
    assert words[0] == "python", f"{shlex.join(words)}: the README's commands run with python"
    run_command(words)


INLINE = re.findall(r"`(python (?:train\.py|-m baselines)(?: [^`]*)?)`", README)


@pytest.mark.parametrize("line", INLINE)
def test_inline_command_parses(line):
    """Commands quoted in the README's text and tables take only options their CLI has."""
    words = shlex.split(line)
    if words[1] == "train.py":
        from train import parse_args as parse

        argv = words[2:]
    else:
        from baselines.__main__ import parse

        argv = words[3:]
    if "--help" in argv:
        with pytest.raises(SystemExit) as stop:
            parse(argv)
        assert stop.value.code == 0
    else:
        parse(argv)


def test_train_help_example_is_the_readme_philly_run():
    import train

    example = re.search(r"python train\.py (--preset \S+)", train.__doc__).group(1)
    assert any(example in line for line in INLINE), example
