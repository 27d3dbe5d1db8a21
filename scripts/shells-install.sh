#!/usr/bin/env bash
# Installs the shells the completion tests run (zsh and fish, Debian packages), once: a no-op when both
# are on PATH already. Called by `make test`.
set -euo pipefail
if command -v zsh > /dev/null && command -v fish > /dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "zsh and fish are needed for the completion tests: run as root or 'apt-get install zsh fish'" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends zsh fish > /dev/null
