#!/usr/bin/env bash
# Makes sure a Docker engine answers, starting a private dockerd when none does.
#
#   * An engine already answers (`docker info`): nothing to do.
#   * dockerd is missing: `apt-get install -y docker.io` (after `apt-get update`).
#   * dockerd is started in the background, detached from this shell, with the flags this machine's
#     sandbox accepts (no iptables, no bridge network: containers run with --network none; the
#     default ulimits are lowered because the kernel refuses the higher ones). Its log goes to
#     $DOCKERD_LOG; the script polls `docker info` until it answers or $DOCKERD_START_TIMEOUT passes.
#
# Idempotent: run it as often as you like (`make docker-engine`). It never stops an engine.
#
# DOCKER_HOST=unix:///some/dir/docker.sock starts the engine there instead, with its state (data,
# exec root, pid file) in that folder: a second engine beside the system's one (used to test this).
set -euo pipefail

LOG=${DOCKERD_LOG:-/tmp/bacalhau-grpc-dockerd.log}
START_TIMEOUT=${DOCKERD_START_TIMEOUT:-60}
DOCKERD_FLAGS=(
    --iptables=false --ip6tables=false --bridge=none
    --default-ulimit nofile=1024:1024 --default-ulimit nproc=1024:1024
)
SOCKET=/var/run/docker.sock
PID_FILE=/var/run/docker.pid
if [[ ${DOCKER_HOST:-unix://$SOCKET} != "unix://$SOCKET" ]]; then
    if [[ $DOCKER_HOST != unix://* ]]; then
        echo "docker-engine: DOCKER_HOST=$DOCKER_HOST does not answer and is not a local socket" >&2
        exit 1
    fi
    SOCKET=${DOCKER_HOST#unix://}
    state=$(dirname "$SOCKET")
    PID_FILE=$state/docker.pid
    DOCKERD_FLAGS+=(--host "$DOCKER_HOST" --data-root "$state/data" --exec-root "$state/exec"
        --pidfile "$PID_FILE")
fi

say() { echo "docker-engine: $*"; }

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}

engine_answers() { docker info > /dev/null 2>&1; }

describe_engine() { docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2> /dev/null; }

install_docker() {
    say "dockerd is not installed: installing Debian's docker.io"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
}

# The pid of a dockerd that is already starting (its pid file names a live process), if any.
starting_dockerd_pid() {
    [[ -s $PID_FILE ]] || return 0
    local pid
    pid=$(< "$PID_FILE")
    if kill -0 "$pid" 2> /dev/null && [[ $(cat "/proc/$pid/comm" 2> /dev/null) == dockerd ]]; then
        echo "$pid"
    fi
}

# Sets DOCKERD_PID. setsid: the engine outlives this script and the make (or CI step) that ran it.
start_dockerd() {
    say "starting dockerd ${DOCKERD_FLAGS[*]} (log: $LOG)"
    local sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    "${sudo[@]}" setsid dockerd "${DOCKERD_FLAGS[@]}" < /dev/null >> "$LOG" 2>&1 &
    DOCKERD_PID=$!
}

wait_until_answering() {
    local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
    until engine_answers; do
        if ! kill -0 "$pid" 2> /dev/null; then
            say "dockerd exited before answering; the end of $LOG:" >&2
            tail -n 30 "$LOG" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            say "dockerd did not answer within ${START_TIMEOUT}s; the end of $LOG:" >&2
            tail -n 30 "$LOG" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}

if engine_answers; then
    say "an engine answers: $(describe_engine)"
    exit 0
fi
command -v docker > /dev/null && command -v dockerd > /dev/null || install_docker
# The package's init script may have started an engine already.
if engine_answers; then
    say "an engine answers: $(describe_engine)"
    exit 0
fi
DOCKERD_PID=$(starting_dockerd_pid)
if [[ -n $DOCKERD_PID ]]; then
    say "dockerd (pid $DOCKERD_PID) is starting; waiting for it"
else
    start_dockerd
fi
wait_until_answering "$DOCKERD_PID"
say "started: $(describe_engine), pid $DOCKERD_PID"
