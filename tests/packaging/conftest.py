"""The end-to-end tests' fixtures (a devstack of real processes, the CLI's key directory)."""

from tests.e2e.conftest import devstack, key_dir  # noqa: F401
