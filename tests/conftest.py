"""Shared test helpers.

``shared`` (a session fixture) is a function ``shared(*parts, what="...")`` that returns the path
of a file under the shared data folder (``../shared`` or ``$CLUSTERGYM_SHARED``, see
:mod:`traces.paths`), or skips the test with a reason naming the missing file.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def require_shared(*parts: str, what: str = "real trace data") -> Path:
    """The path of ``../shared/<parts>``, or ``pytest.skip`` if it is not present."""
    from traces.paths import shared_file  # imported lazily: conftest must not break collection

    path = shared_file(*parts)
    if path is None:
        pytest.skip(f"needs ../shared/{'/'.join(parts)} ({what}); not present")
    return path


@pytest.fixture(scope="session")
def shared():
    """``shared(*parts, what=...)`` -> path under the shared data folder, or skip the test."""
    return require_shared
