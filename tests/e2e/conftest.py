"""Fixtures of the end-to-end tests: the CLI's temporary key directory, a devstack, job files."""

import pytest

from tests.e2e import cli_support
from tests.e2e.cli_support import RunningDevstack


@pytest.fixture(scope="module", autouse=True)
def key_dir(tmp_path_factory):
    cli_support.KEY_DIR = tmp_path_factory.mktemp("client-key")
    yield cli_support.KEY_DIR
    cli_support.KEY_DIR = None


@pytest.fixture(scope="module")
def devstack(tmp_path_factory):
    stack = RunningDevstack(tmp_path_factory.mktemp("e2e"))
    yield stack
    stack.stop_all()


@pytest.fixture
def job_file(tmp_path):
    def write(text: str, name: str = "job.yaml") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write
