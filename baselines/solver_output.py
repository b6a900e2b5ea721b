"""Keeping the HiGHS solver's console output out of a run's output.

HiGHS (behind :func:`scipy.optimize.milp` and :func:`scipy.optimize.linprog`) writes some
messages straight to the process's C-level standard output, whatever ``disp`` says (e.g.
``HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();``), so they land in
the middle of progress bars and tables. :func:`quiet` points file descriptor 1 at the null
device for the length of a solve. Set ``CLUSTERGYM_SOLVER_OUTPUT=1`` to let the solver print.

While a solve runs, anything else the process writes to standard output (another thread's
prints) is discarded too; the solves are short and the simulator is single-threaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Iterator

#: Set to 1 (or true / yes) to show the solver's own output.
ENV = "CLUSTERGYM_SOLVER_OUTPUT"


def _shown() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except OSError:  # no handle on the C library on this platform
        return None


def _flush_c_stdio() -> None:
    """Flush the C library's stdio buffers, so buffered solver text goes where fd 1 points now."""
    libc = _libc()
    if libc is not None and hasattr(libc, "fflush"):
        libc.fflush(None)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Discard what is written to file descriptor 1 inside the block (unless :data:`ENV` is set)."""
    if _shown():
        yield
        return
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
    except (AttributeError, OSError, ValueError):
        fd = 1
    for stream in (sys.stdout, sys.__stdout__):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            if stream is not None:
                stream.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # no standard output to redirect
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, fd)
        os.close(saved)
