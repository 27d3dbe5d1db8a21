#!/usr/bin/env bash
# Installs the browser the dashboard's web tests drive (Debian's chromium and chromium-driver, through
# Selenium), once: a no-op when both already work. Called by `make test`.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

works() {
    [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ] &&
        "$CHROMIUM" --headless --no-sandbox --version > /dev/null 2>&1 &&
        "$CHROMEDRIVER" --version > /dev/null 2>&1
}

if works; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "chromium and chromedriver are needed for the dashboard's browser tests: run as root or" \
        "'apt-get install chromium chromium-driver'" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine's package lists may be empty or stale: update them only when the install fails.
if ! apt-get install -y -qq --no-install-recommends chromium chromium-driver > /dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium chromium-driver > /dev/null
fi
if ! works; then
    echo "chromium or chromedriver was installed but does not run:" >&2
    "$CHROMIUM" --headless --no-sandbox --version >&2 || true
    "$CHROMEDRIVER" --version >&2 || true
    exit 1
fi
