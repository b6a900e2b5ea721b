"""HiGHS's console output stays out of a run's output unless CLUSTERGYM_SOLVER_OUTPUT asks for it."""

from __future__ import annotations

import numpy as np
import pytest

from baselines import solver_output
from baselines.sia import solve_configs

MESSAGE = "HighsMipSolverData"


def sia_instance() -> tuple[np.ndarray, ...]:
    """A Sia integer program (12 jobs, 2 GPU types, met in a vector-env episode) on which HiGHS
    prints ``HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();``."""
    big = 3000.0
    score = np.array([[big] * 4 + [1.02, 0.40], [1.02, 0.74, 0.39, 0.29, big, big], [big] * 4 + [0.87, 1.02],
                      [big] * 4 + [1.02, 0.34], [1.03, 0.80, 0.53, 0.43, big, big], [big] * 4 + [0.87, 1.03],
                      [big] * 4 + [1.04, 0.40], [big] * 4 + [0.87, 1.05], [big] * 4 + [1.05, 0.40],
                      [big] * 4 + [0.78, 0.37], [big] * 4 + [0.87, 1.00], [big] * 4 + [0.35, 0.18]])
    gpus = np.tile([1, 2, 1, 2, 1, 1], (12, 1))
    gpus[[1, 4], 4:] = 0
    gpus[9, 4:] = 2
    gpus[11, 4:] = 8
    return score, score < big, gpus, np.array([0, 0, 1, 1, 0, 1]), np.array([8, 16])


def solve() -> np.ndarray:
    score, valid, gpus, gpu_type, capacity = sia_instance()
    chosen = solve_configs(score, valid, gpus, gpu_type, capacity, lambda_n=1.1)
    assert chosen is not None
    return chosen


def test_solver_output_is_silenced_unless_asked(capfd, monkeypatch):
    monkeypatch.setenv(solver_output.ENV, "1")
    shown = solve()
    solver_output._flush_c_stdio()
    if MESSAGE not in capfd.readouterr().out:
        pytest.skip("this HiGHS build prints nothing on the instance")

    monkeypatch.delenv(solver_output.ENV)
    print("before")
    quiet = solve()
    print("after")
    solver_output._flush_c_stdio()
    out = capfd.readouterr().out
    assert MESSAGE not in out
    assert out.split() == ["before", "after"]  # standard output works again after the solve
    np.testing.assert_array_equal(quiet, shown)
