"""The Docker executor: runs a job's container on the node's Docker engine (the counterpart of
Bacalhau v0.3's Docker executor).

One run, step by step:

1. Check the job's Docker settings: an image, environment entries `NAME=value`, an absolute working
   directory (ExecutorError naming what is wrong otherwise).
2. Make sure the image is local: used when present, pulled otherwise (a failed pull is an ExecutorError
   naming the image and the cause).
3. Create the container `bacalhau-grpc-<node id>-<execution id>`, labelled with the node, job, shard and
   execution: no network; the job's entrypoint replacing the image's (Cmd unset; an empty entrypoint
   runs the image's default); the job's environment plus `BACALHAU_JOB_SPEC` (the Spec as JSON, as
   v0.3); the working directory; limits equal to what the node reserved for the job (memory, CPUs,
   GPUs) and a pids limit; the contexts and inputs bind-mounted read-only, the output folders
   read-write. Docker keeps no log of it (log driver `none`): the streams come only through step 4.
   The sandbox (`host_config`): `no-new-privileges`, every capability dropped but `CAPABILITIES`, swap
   equal to the memory limit (none beyond it), the pids limit, an open-files limit (`NOFILE_LIMIT`), and
   the node's `docker_user` (UID[:GID]) instead of the image's user when set.
4. Attach to its stdout and stderr, then start it. A start error (the entrypoint's executable is not
   found, ...) is an ExecutorError with Docker's message. While it runs, a watchdog measures the output
   folders every `DISK_POLL_INTERVAL` (sizes of what they hold, links not followed) and kills the
   container once they exceed the disk limit: the job's `Resources.Disk`, else the node's per-job disk
   limit. The output folders are host folders bind-mounted, so Docker's storage quotas cannot apply.
5. Copy the two streams, byte for byte, into `result_dir/stdout` and `result_dir/stderr` (each cut at
   the node's stream cap) until the container exits, and read its exit code. Past the run's timeout
   the container is killed: the stream files and `exitCode` (137) are still written, then an
   ExecutorError says so. `cancel` kills it the same way. Outputs over the disk limit (seen by the
   watchdog, or measured once more after the exit) are an ExecutorError naming the limit.
6. Write `exitCode` and return the RunResult. A non-zero exit code is a result, not an error.
7. Always remove the container, even when the run is cancelled (the removal is shielded). A node that
   crashed leaves its containers behind: `start` removes every container labelled with this node's ID.

Everything talks to the engine through aiodocker (asynchronous HTTP on the engine's socket).
"""

import asyncio
import dataclasses
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.stream import Stream

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import jobfile, pb, serialization
from bacalhau_grpc.compute.domain.capacity import job_usage
from bacalhau_grpc.compute.domain.runs import STDERR, STDOUT, ExecutorError, Mount, RunContext, RunResult
from bacalhau_grpc.compute.executors.results import DEFAULT_STREAM_CAP, CappedSink, collect

log = logging.getLogger(__name__)

# Label keys on every container this executor makes.
LABEL_NODE_ID = "bacalhau-grpc.node-id"
LABEL_JOB_ID = "bacalhau-grpc.job-id"
LABEL_SHARD_INDEX = "bacalhau-grpc.shard-index"
LABEL_EXECUTION_ID = "bacalhau-grpc.execution-id"
# The most processes (and threads) a job's container may hold.
DEFAULT_PIDS_LIMIT = 1024
# Capabilities a container keeps; Docker's other defaults (NET_RAW, NET_BIND_SERVICE, MKNOD, SETFCAP,
# SETPCAP, SYS_CHROOT, AUDIT_WRITE) are dropped. The ones kept are what common images do as root:
CAPABILITIES = (
    "CHOWN",  # chown files (package installs, entrypoints handing folders to an app user)
    "DAC_OVERRIDE",  # root reads and writes files whatever their mode (as on any Linux system)
    "FOWNER",  # chmod / utime / set ACLs on files owned by another user (tar, cp -p, installers)
    "FSETID",  # keep set-user/group-ID bits when changing a file (package installs)
    "SETUID",  # switch to another user (su, gosu, su-exec, entrypoints dropping root)
    "SETGID",  # switch groups and set supplementary groups (the same tools)
    "KILL",  # signal processes of another user in the container (a root supervisor and its workers)
)
# The open files a job's process may hold: the soft limit, raisable up to the hard one.
NOFILE_LIMIT = (1024, 4096)
# How often the watchdog measures the output folders (seconds).
DISK_POLL_INTERVAL = 0.5
# How long `start` waits for the engine to answer.
DEFAULT_CONNECT_TIMEOUT = 10.0
# The exit code of a container stopped by SIGKILL (timeout, cancel, out of memory).
KILLED_EXIT_CODE = 137
# After a kill, how long the rest of the streams may take to arrive.
_DRAIN_AFTER_KILL = 10.0
# Docker's stream numbers in the attach protocol.
_STDERR_STREAM = 2
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
_USER = re.compile(r"[0-9]+(:[0-9]+)?")


def container_name(node_id: str, execution_id: str) -> str:
    """`bacalhau-grpc-<node id>-<execution id>`, with characters Docker refuses in names made `-`."""
    return _NAME_UNSAFE.sub("-", f"bacalhau-grpc-{node_id}-{execution_id}")


def container_config(
    context: RunContext, usage: pb.ResourceUsageData, pids_limit: int, user: str = ""
) -> dict[str, Any]:
    """The engine's `containers/create` body for the run (validates the job's Docker settings first);
    `user` (UID[:GID]) replaces the image's user when set."""
    docker = context.spec.docker
    if not docker.image:
        raise ExecutorError("the job has no Docker image (Spec.Docker.Image)")
    config: dict[str, Any] = {
        "Image": docker.image,
        "Env": [
            *checked_environment(docker.environment_variables),
            f"BACALHAU_JOB_SPEC={spec_json(context)}",
        ],
        "Labels": container_labels(context),
        "NetworkDisabled": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": host_config(context, usage, pids_limit),
    }
    if docker.entrypoint:
        config["Entrypoint"] = list(docker.entrypoint)
    if docker.working_directory:
        config["WorkingDir"] = checked_working_directory(docker.working_directory)
    if user:
        config["User"] = user
    return config


def checked_environment(entries: Iterable[str]) -> list[str]:
    """The entries, each `NAME=value` with a non-empty name; ExecutorError names the first bad one."""
    checked = []
    for i, entry in enumerate(entries):
        name, equals, _ = entry.partition("=")
        if not equals or not name:
            raise ExecutorError(
                f"environment variable {entry!r} (Spec.Docker.EnvironmentVariables[{i}]) is not NAME=value"
            )
        checked.append(entry)
    return checked


def checked_working_directory(path: str) -> str:
    if not path.startswith("/"):
        raise ExecutorError(f"working directory {path!r} is not an absolute path")
    return path


def spec_json(context: RunContext) -> str:
    """The job's Spec as compact JSON with Go's field names (v0.3's `BACALHAU_JOB_SPEC`)."""
    return serialization.json_marshal_with_max(jobfile.message_to_dict(context.spec)).decode()


def container_labels(context: RunContext) -> dict[str, str]:
    return {
        LABEL_NODE_ID: context.node_id,
        LABEL_JOB_ID: context.job.id,
        LABEL_SHARD_INDEX: str(context.execution.shard_index),
        LABEL_EXECUTION_ID: context.execution.id,
    }


def host_config(context: RunContext, usage: pb.ResourceUsageData, pids_limit: int) -> dict[str, Any]:
    """No network, the job's resources as limits, the sandbox, and the bind mounts."""
    soft, hard = NOFILE_LIMIT
    config: dict[str, Any] = {
        "NetworkMode": "none",
        "LogConfig": {"Type": "none", "Config": {}},
        "Memory": usage.memory,
        "MemorySwap": usage.memory,  # memory + swap: no swap beyond the memory limit
        "NanoCpus": round(usage.cpu * 1e9),
        "PidsLimit": pids_limit,
        "SecurityOpt": ["no-new-privileges"],
        "CapDrop": ["ALL"],
        "CapAdd": list(CAPABILITIES),
        "Ulimits": [{"Name": "nofile", "Soft": soft, "Hard": hard}],
        "Mounts": [bind_mount(m) for m in (*context.contexts, *context.inputs, *context.outputs)],
    }
    if usage.gpu > 0:
        config["DeviceRequests"] = [{"Driver": "", "Count": usage.gpu, "Capabilities": [["gpu"]]}]
    return config


def bind_mount(mount: Mount) -> dict[str, Any]:
    return {
        "Type": "bind",
        "Source": str(Path(mount.source).absolute()),
        "Target": mount.target,
        "ReadOnly": mount.read_only,
    }


def checked_user(user: str) -> str:
    """`UID` or `UID:GID` (numbers), or empty; InvalidArgumentError (field docker_user) otherwise."""
    if user and not _USER.fullmatch(user):
        raise InvalidArgumentError(f"{user!r} is not UID or UID:GID (numbers)", field="docker_user")
    return user


def outputs_size(folders: Iterable[Path]) -> int:
    """Bytes held under the folders: the sizes of everything in them, links not followed (lstat)."""
    total = 0
    pending = [str(folder) for folder in folders]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total


def shown_size(size: int) -> str:
    """`10485760 bytes (10 MiB)`."""
    value, unit = float(size), "bytes"
    for name in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, name
    return f"{size} bytes" if unit == "bytes" else f"{size} bytes ({value:.3g} {unit})"


def disk_error(limit: int, from_job: bool, size: int, exit_code: int) -> ExecutorError:
    where = "Resources.Disk" if from_job else "the node's --limit-job-disk"
    return ExecutorError(
        f"outputs exceeded the disk limit of {shown_size(limit)} ({where}): {shown_size(size)} written, "
        f"container stopped (exit code {exit_code})"
    )


def start_error(message: str) -> ExecutorError:
    """The error of a container that did not start, with Docker's message."""
    lowered = message.lower()
    # `exec: "x": executable file not found in $PATH`, or for a path: `exec: "/x": stat /x: no such file`
    if "executable file not found" in lowered or ("exec:" in lowered and "no such file" in lowered):
        return ExecutorError(f"Executable file not found: {message}")
    return ExecutorError(f"failed to start container: {message}")


class DockerExecutor:
    """Runs Docker jobs as containers of the engine at `docker_host` (DOCKER_HOST or the default socket).

    `start()` connects (the executor is installed only when the engine answered) and removes what a
    previous process of this node left; `close()` removes this node's containers and disconnects.
    """

    engine = pb.Engine.ENGINE_DOCKER
    # Kills the container at the job's timeout and says so (see base.run_with_timeout).
    enforces_timeout = True

    def __init__(
        self,
        node_id: str,
        *,
        stream_cap: int = DEFAULT_STREAM_CAP,
        pids_limit: int = DEFAULT_PIDS_LIMIT,
        docker_host: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        user: str = "",
        disk_limit: int = 0,
    ) -> None:
        """`user`: UID[:GID] every container runs as (empty: the image's user); `disk_limit`: the most
        bytes a job's outputs may hold when the job sets no `Resources.Disk` (0: no limit)."""
        self.node_id = node_id
        self.stream_cap = stream_cap
        self.pids_limit = pids_limit
        self.user = checked_user(user)
        self.disk_limit = disk_limit
        self.docker_host = docker_host
        self.connect_timeout = connect_timeout
        self._docker: aiodocker.Docker | None = None
        # Execution ID -> container, for the runs in progress; the IDs `cancel` was called for.
        self._running: dict[str, DockerContainer] = {}
        self._cancelled: set[str] = set()
        # Removals still going on (they outlive a cancelled run); `close` waits for them.
        self._removals: set[asyncio.Task[None]] = set()

    # -------------------------------------------------------------------------------------------
    # Life cycle
    # -------------------------------------------------------------------------------------------

    def is_installed(self) -> bool:
        return self._docker is not None

    async def start(self) -> None:
        """Connects to the engine; logs a warning (and stays not installed) when it does not answer."""
        try:
            docker = aiodocker.Docker(url=self.docker_host)
        except Exception as exc:
            log.warning("Docker executor not installed: no Docker engine to connect to (%s)", exc)
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                version = await docker.version()
        except Exception as exc:
            await docker.close()
            cause = f"no answer within {self.connect_timeout:g}s" if isinstance(exc, TimeoutError) else exc
            log.warning("Docker executor not installed: the engine at %s: %s", self._address(), cause)
            return
        self._docker = docker
        log.info(
            "Docker executor: engine %s (API %s) at %s",
            version.get("Version"),
            version.get("ApiVersion"),
            self._address(),
        )
        await self._remove_containers_of_this_node("left by a previous process of this node")

    async def close(self) -> None:
        """Removes this node's containers (as v0.3 at shutdown) and disconnects."""
        if self._docker is None:
            return
        if self._removals:
            await asyncio.gather(*self._removals, return_exceptions=True)
        await self._remove_containers_of_this_node("still there at shutdown")
        await self._docker.close()
        self._docker = None

    async def _remove_containers_of_this_node(self, why: str) -> None:
        docker = self._connected()
        leftovers = await docker.containers.list(
            all=True, filters={"label": [f"{LABEL_NODE_ID}={self.node_id}"]}
        )
        for container in leftovers:
            log.info("removing container %s (%s)", container.id[:12], why, extra={"node_id": self.node_id})
            await _remove(container)

    def _address(self) -> str:
        return self.docker_host or os.environ.get("DOCKER_HOST") or "the default socket"

    def _connected(self) -> aiodocker.Docker:
        if self._docker is None:
            raise ExecutorError("the Docker executor is not connected to an engine (start() it first)")
        return self._docker

    # -------------------------------------------------------------------------------------------
    # Runs
    # -------------------------------------------------------------------------------------------

    async def run(self, context: RunContext) -> RunResult:
        docker = self._connected()
        if context.result_dir is None:
            raise ExecutorError("the Docker executor needs a result folder")
        try:
            usage = job_usage(context.spec)
        except InvalidArgumentError as exc:
            raise ExecutorError(str(exc)) from None
        config = container_config(context, usage, self.pids_limit, self.user)
        await self._ensure_image(docker, config["Image"])
        execution_id = context.execution.id
        container = await self._create(docker, config, container_name(context.node_id, execution_id))
        self._running[execution_id] = container
        try:
            return await self._run_container(container, context, usage)
        finally:
            del self._running[execution_id]
            self._cancelled.discard(execution_id)
            await self._remove_shielded(container)

    async def cancel(self, execution_id: str) -> None:
        """Kills the execution's container (the run then ends with an ExecutorError, and removes it)."""
        container = self._running.get(execution_id)
        if container is None:
            return
        self._cancelled.add(execution_id)
        try:
            await _kill(container)
        except aiodocker.DockerError as exc:
            log.warning("could not kill container %s of %s: %s", container.id[:12], execution_id, exc.message)

    async def _ensure_image(self, docker: aiodocker.Docker, image: str) -> None:
        try:
            await docker.images.inspect(image)
            return
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise ExecutorError(f"could not inspect image {image}: {exc.message}") from None
        log.info("pulling image %s", image)
        try:
            await docker.images.pull(image)
        except aiodocker.DockerError as exc:
            raise ExecutorError(
                f"could not pull image {image} (it may not exist, or the registry may need authorization "
                f"or be unreachable): {exc.message}"
            ) from None

    async def _create(self, docker: aiodocker.Docker, config: dict[str, Any], name: str) -> DockerContainer:
        try:
            return await docker.containers.create(config, name=name)
        except aiodocker.DockerError as exc:
            raise ExecutorError(f"failed to create container {name}: {exc.message}") from None

    async def _run_container(
        self, container: DockerContainer, context: RunContext, usage: pb.ResourceUsageData
    ) -> RunResult:
        """Steps 4 to 6: attach, start, copy the streams until it exits (or is killed), collect."""
        result_dir = context.result_dir
        assert result_dir is not None
        execution_id = context.execution.id
        disk_limit = usage.disk or self.disk_limit
        folders = [Path(m.source) for m in context.outputs]
        watchdog: asyncio.Task[int] | None = None
        with (
            CappedSink(result_dir / STDOUT, self.stream_cap) as stdout,
            CappedSink(result_dir / STDERR, self.stream_cap) as stderr,
        ):
            async with container.attach(stdout=True, stderr=True) as stream:
                try:
                    await container.start()
                except aiodocker.DockerError as exc:
                    raise start_error(exc.message) from None
                if disk_limit > 0 and folders:
                    watchdog = asyncio.create_task(_watch_outputs(container, folders, disk_limit))
                try:
                    async with asyncio.timeout(context.timeout):
                        await _copy_streams(stream, stdout, stderr)
                        exit_code = await _exit_code(container)
                    timed_out = False
                except TimeoutError:
                    timed_out = True
                    await _kill(container)
                    exit_code = await self._drain_after_kill(container, stream, stdout, stderr)
                finally:
                    if watchdog is not None:
                        watchdog.cancel()
                        await asyncio.wait([watchdog])
        over_limit = _watchdog_size(watchdog)
        if disk_limit > 0 and folders and not over_limit:
            size = await asyncio.to_thread(outputs_size, folders)
            over_limit = size if size > disk_limit else 0
        result = collect(
            result_dir, exit_code, stdout_truncated=stdout.truncated, stderr_truncated=stderr.truncated
        )
        if timed_out:
            raise ExecutorError(
                f"execution timed out after {context.timeout:g}s: container killed (exit code {exit_code})"
            )
        if execution_id in self._cancelled:
            raise ExecutorError(f"execution cancelled: container killed (exit code {exit_code})")
        if over_limit:
            raise disk_error(disk_limit, bool(usage.disk), over_limit, exit_code)
        if exit_code == KILLED_EXIT_CODE and await _out_of_memory(container):
            return dataclasses.replace(result, note="the container ran out of memory and was killed")
        return result

    async def _drain_after_kill(
        self, container: DockerContainer, stream: Stream, stdout: CappedSink, stderr: CappedSink
    ) -> int:
        """The rest of the streams of a killed container, and its exit code."""
        try:
            async with asyncio.timeout(_DRAIN_AFTER_KILL):
                await _copy_streams(stream, stdout, stderr)
                return await _exit_code(container)
        except TimeoutError:
            return KILLED_EXIT_CODE

    async def _remove_shielded(self, container: DockerContainer) -> None:
        """Removes the container; a cancellation of the run does not stop the removal."""
        removal = asyncio.ensure_future(_remove(container))
        self._removals.add(removal)
        removal.add_done_callback(self._removals.discard)
        await asyncio.shield(removal)


async def _watch_outputs(container: DockerContainer, folders: list[Path], limit: int) -> int:
    """Measures the folders every DISK_POLL_INTERVAL; once they hold more than `limit` bytes, kills the
    container and returns their size."""
    while True:
        size = await asyncio.to_thread(outputs_size, folders)
        if size > limit:
            await _kill(container)
            return size
        await asyncio.sleep(DISK_POLL_INTERVAL)


def _watchdog_size(watchdog: asyncio.Task[int] | None) -> int:
    """The size the watchdog found over the limit (it killed the container), else 0."""
    if watchdog is None or watchdog.cancelled():
        return 0
    if (exc := watchdog.exception()) is not None:
        log.warning("the output size watchdog failed: %s", exc)
        return 0
    return watchdog.result()


async def _copy_streams(stream: Stream, stdout: CappedSink, stderr: CappedSink) -> None:
    """Docker's attach stream (frames tagged stdout or stderr) into the two files, until it ends."""
    while (message := await stream.read_out()) is not None:
        (stderr if message.stream == _STDERR_STREAM else stdout).write(message.data)


async def _exit_code(container: DockerContainer) -> int:
    status = await container.wait()
    return int(status["StatusCode"])


async def _out_of_memory(container: DockerContainer) -> bool:
    try:
        info = await container.show()
    except aiodocker.DockerError:
        return False
    return bool(info.get("State", {}).get("OOMKilled"))


async def _kill(container: DockerContainer) -> None:
    """SIGKILL; a container that already stopped (or is gone) is fine."""
    try:
        await container.kill()
    except aiodocker.DockerError as exc:
        if exc.status not in (404, 409):
            raise


async def _remove(container: DockerContainer) -> None:
    """Removes the container (killing it if it runs); logs instead of raising."""
    try:
        await container.delete(force=True)
    except aiodocker.DockerError as exc:
        if exc.status != 404:
            log.warning("could not remove container %s: %s", container.id[:12], exc.message)
