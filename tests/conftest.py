"""Test-wide settings. On CI (CI=true) hypothesis runs derandomized, so a run can be repeated exactly;
locally it explores fresh examples each time."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

pytest_plugins = ["tests.docker_engine", "tests.ipfs_daemon"]
