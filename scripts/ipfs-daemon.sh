#!/usr/bin/env bash
# A real IPFS node for development and tests: js-ipfs 0.66.1 on Node, installed from npm (kubo's
# installers download binaries from outside the package indexes).
#
#   scripts/ipfs-daemon.sh install     install js-ipfs into $IPFS_JS_HOME unless it is there (~3.5 min
#                                      once; then instant)
#   scripts/ipfs-daemon.sh start DIR   install if needed, make a fresh repo in DIR/repo (test profile,
#                                      loopback only, ports picked by the system, no bootstrap peers, no
#                                      delegates, no MDNS), start `jsipfs daemon --offline` in its own
#                                      process group, wait for the API to answer `id`, print its URL
#                                      (http://127.0.0.1:PORT) on stdout. DIR/daemon.pid holds the PID
#                                      (= the process group), DIR/api the URL, DIR/daemon.log the
#                                      daemon's output. ~12 s (init ~6 s, daemon ~5 s).
#   scripts/ipfs-daemon.sh stop DIR    stop the daemon started in DIR (TERM to its process group, KILL
#                                      after $IPFS_STOP_TIMEOUT s); nothing to do if none runs.
#
# Environment: IPFS_JS_HOME (default ~/.cache/bacalhau-grpc/js-ipfs), IPFS_START_TIMEOUT (seconds to
# wait for the API, default 60), IPFS_STOP_TIMEOUT (default 10).
#
# npm ignores `overrides` in global installs, so js-ipfs goes into a local folder with exactly this
# package.json; the overrides pin libp2p modules that work on Node 20.
set -euo pipefail

JS_HOME=${IPFS_JS_HOME:-$HOME/.cache/bacalhau-grpc/js-ipfs}
START_TIMEOUT=${IPFS_START_TIMEOUT:-60}
STOP_TIMEOUT=${IPFS_STOP_TIMEOUT:-10}
JSIPFS=$JS_HOME/node_modules/.bin/jsipfs
PACKAGE_JSON='{"private": true, "dependencies": {"ipfs": "0.66.1"}, "overrides": {"@libp2p/tcp": "6.1.2",
 "@libp2p/websockets": "5.0.5", "@multiformats/mafmt": "11.1.1", "mortice": "3.0.6"}}'

say() { echo "ipfs-daemon: $*" >&2; }
die() {
    say "$*"
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

installed() { [[ -x $JSIPFS && -f $JS_HOME/.installed ]]; }

# Installs into a staging folder, then moves it into place: an interrupted install leaves nothing
# half-made, and a concurrent one (flock) waits and then finds it installed.
install() {
    installed && return 0
    command -v npm > /dev/null || die "npm is not installed (js-ipfs needs Node 20 and npm)"
    mkdir -p "$(dirname "$JS_HOME")"
    exec 9> "$JS_HOME.lock"
    flock 9
    if installed; then
        return 0
    fi
    local staging=$JS_HOME.staging.$$ started=$SECONDS
    rm -rf "$staging" && mkdir -p "$staging"
    printf '%s\n' "$PACKAGE_JSON" > "$staging/package.json"
    say "installing js-ipfs 0.66.1 into $JS_HOME (a few minutes, once)"
    if ! (cd "$staging" && npm install --no-audit --no-fund --loglevel=error > npm.log 2>&1); then
        tail -n 30 "$staging/npm.log" >&2 || true
        rm -rf "$staging"
        die "npm install failed"
    fi
    if [[ ! -x $staging/node_modules/.bin/jsipfs ]]; then
        rm -rf "$staging"
        die "npm install left no jsipfs"
    fi
    touch "$staging/.installed"
    rm -rf "$JS_HOME"
    mv "$staging" "$JS_HOME"
    say "installed in $((SECONDS - started))s"
}

# The repo's config, merged into js-ipfs's defaults by `init`: loopback only, ports chosen by the
# system (the daemon writes the API's address to the repo's `api` file), no peers to dial, no
# delegates, no local discovery. (One `init` with it takes ~6 s; each `jsipfs config` call ~5 s more.)
CONFIG='{"Addresses": {"Swarm": ["/ip4/127.0.0.1/tcp/0"], "API": "/ip4/127.0.0.1/tcp/0",
 "Gateway": "/ip4/127.0.0.1/tcp/0", "RPC": "", "Delegates": []}, "Bootstrap": [],
 "Discovery": {"MDNS": {"Enabled": false}, "webRTCStar": {"Enabled": false}}}'

make_repo() {
    local dir=$1
    rm -rf "$dir/repo"
    printf '%s\n' "$CONFIG" > "$dir/config.json"
    if ! IPFS_PATH=$dir/repo "$JSIPFS" init --profile test --emptyRepo "$dir/config.json" \
        > "$dir/init.log" 2>&1; then
        cat "$dir/init.log" >&2
        die "jsipfs init failed"
    fi
}

# http://HOST:PORT from the repo's `api` file (/ip4/HOST/tcp/PORT/http), once the daemon wrote it.
api_url() {
    local multiaddr host port
    [[ -s $1/repo/api ]] || return 1
    multiaddr=$(< "$1/repo/api")
    IFS=/ read -r _ _ host _ port _ <<< "$multiaddr"
    [[ -n $host && -n $port ]] || return 1
    echo "http://$host:$port"
}

# Alive and not a zombie (a daemon that exited stays a zombie until this shell reaps it).
alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2> /dev/null) || return 1
    [[ ${state%% *} != Z ]]
}

api_answers() {
    local url
    url=$(api_url "$1") || return 1
    curl -sf -X POST -m 2 "$url/api/v0/id" > /dev/null 2>&1
}

wait_until_answering() {
    local dir=$1 pid=$2 deadline=$((SECONDS + START_TIMEOUT))
    until api_answers "$dir"; do
        if ! alive "$pid"; then
            say "the daemon exited before its API answered; the end of $dir/daemon.log:"
            tail -n 30 "$dir/daemon.log" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            say "the API did not answer within ${START_TIMEOUT}s; the end of $dir/daemon.log:"
            tail -n 30 "$dir/daemon.log" >&2 || true
            stop "$dir"
            exit 1
        fi
        sleep 0.2
    done
}

start() {
    local dir=${1:-}
    [[ -n $dir ]] || usage
    install
    command -v curl > /dev/null || die "curl is needed to check the daemon's API"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -s $dir/daemon.pid ]] && alive "$(< "$dir/daemon.pid")"; then
        die "a daemon already runs from $dir (pid $(< "$dir/daemon.pid")); stop it first"
    fi
    make_repo "$dir"
    # setsid: its own session and process group (pid = pgid), so `stop` ends it and its children.
    IPFS_PATH=$dir/repo setsid "$JSIPFS" daemon --offline < /dev/null > "$dir/daemon.log" 2>&1 &
    local pid=$!
    echo "$pid" > "$dir/daemon.pid"
    wait_until_answering "$dir" "$pid"
    local url
    url=$(api_url "$dir")
    echo "$url" > "$dir/api"
    echo "$url"
}

stop() {
    local dir=${1:-}
    [[ -n $dir ]] || usage
    [[ -s $dir/daemon.pid ]] || return 0
    local pid deadline=$((SECONDS + STOP_TIMEOUT))
    pid=$(< "$dir/daemon.pid")
    kill -TERM -- "-$pid" 2> /dev/null || kill -TERM "$pid" 2> /dev/null || true
    while alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if alive "$pid"; then
        say "the daemon (pid $pid) did not stop within ${STOP_TIMEOUT}s: killing it"
        kill -KILL -- "-$pid" 2> /dev/null || kill -KILL "$pid" 2> /dev/null || true
    fi
    rm -f "$dir/daemon.pid" "$dir/api"
}

case ${1:-} in
    install) install ;;
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    *) usage ;;
esac
