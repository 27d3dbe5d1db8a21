"""The `harness` fixture: a started requester on a real store (`fakes.Harness`), stopped after the test."""

import pytest

from tests.unit.requester.fakes import Harness


@pytest.fixture
async def harness(tmp_path):
    h = Harness(tmp_path)
    await h.start()
    yield h
    await h.stop()
