"""Tests here run many tiny ops: one torch thread each (the fixture is in tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread_each(one_torch_thread):
    yield
