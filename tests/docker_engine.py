"""The `docker_engine` fixture: a reachable Docker engine holding the tests' image; its value is the tag.

`make test` starts an engine and builds the image first (`make docker-engine test-images`). Run on its
own, the fixture builds a missing image with scripts/test-images.sh. When no engine answers, tests
using it are skipped with the reason on a developer's machine, and FAIL on CI (CI is set): CI skips
nothing.
"""

import asyncio
import os
import subprocess
from pathlib import Path

import aiodocker
import pytest

# The tag scripts/test-images.sh builds (busybox; ENTRYPOINT ["sh", "-c"], CMD ["echo image default"]).
TEST_IMAGE = "bacalhau-grpc/busybox:test"
REPO = Path(__file__).resolve().parent.parent
_PROBE_TIMEOUT = 10.0


def unavailable(reason: str) -> None:
    """Skips the test, or fails it on CI."""
    if os.environ.get("CI"):
        pytest.fail(f"CI needs a Docker engine: {reason}", pytrace=False)
    pytest.skip(reason)


async def _probe() -> tuple[str | None, bool]:
    """(why no engine answers, or None; whether the test image is there)."""
    try:
        docker = aiodocker.Docker()
    except Exception as exc:
        return f"no Docker engine to connect to ({exc})", False
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            await docker.version()
            try:
                await docker.images.inspect(TEST_IMAGE)
                return None, True
            except aiodocker.DockerError as exc:
                if exc.status == 404:
                    return None, False
                raise
    except Exception as exc:
        cause = f"no answer within {_PROBE_TIMEOUT:g}s" if isinstance(exc, TimeoutError) else str(exc)
        return f"no Docker engine answers: {cause}", False
    finally:
        await docker.close()


def _build_test_image() -> None:
    build = subprocess.run(
        [str(REPO / "scripts" / "test-images.sh")], capture_output=True, text=True, check=False
    )
    if build.returncode != 0:
        unavailable(f"scripts/test-images.sh failed ({build.returncode}): {build.stdout}{build.stderr}")


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The tests' image tag, on an engine that answers (DOCKER_HOST or the default socket)."""
    problem, has_image = asyncio.run(_probe())
    if problem is not None:
        unavailable(f"{problem}; start one with `make docker-engine`")
    if not has_image:
        _build_test_image()
    return TEST_IMAGE
