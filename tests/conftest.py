"""Shared by every test: unit tests (tests/unit/) and engine tests (tests/engine/).

Keep this file small. Fixtures that need a Docker engine live in tests/engine/conftest.py,
so the unit tests never import docker or wait for an engine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _forget_redactions() -> Iterator[None]:
    """The values a test's specs taught ``redact.scrub`` never change another test's output."""
    from reconciler.spec.redact import forget

    forget()
    yield
    forget()
