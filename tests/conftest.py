"""Shared test helpers and settings.

``shared`` (a session fixture) is a function ``shared(*parts, what="...")`` that returns the path
of a file under the shared data folder (``$CLUSTERGYM_SHARED``, else ``../shared`` beside the
checkout, see :mod:`traces.paths`), or skips the test with a reason naming the missing file in
the folder actually searched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run, so that a test run (and CI) is
# reproducible; `pytest --hypothesis-profile=explore` searches with fresh random examples.
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=200)
settings.load_profile("default")


def searched_folder() -> str:
    """The shared data folder as :mod:`traces.paths` looks for it, for skip reasons."""
    env = os.environ.get("CLUSTERGYM_SHARED")
    if env:
        return f"{env} (CLUSTERGYM_SHARED)"
    return f"{Path(__file__).resolve().parent.parent.parent / 'shared'} (../shared; set CLUSTERGYM_SHARED to use another folder)"


def require_shared(*parts: str, what: str = "real trace data") -> Path:
    """The path of ``<shared folder>/<parts>``, or ``pytest.skip`` if it is not present."""
    from traces.paths import shared_file  # imported lazily: conftest must not break collection

    path = shared_file(*parts)
    if path is None:
        pytest.skip(f"needs {'/'.join(parts)} ({what}) in the shared data folder {searched_folder()}; not present")
    return path


@pytest.fixture(scope="session")
def shared():
    """``shared(*parts, what=...)`` -> path under the shared data folder, or skip the test."""
    return require_shared
