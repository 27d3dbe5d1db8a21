#!/usr/bin/env bash
# mypy over the package as it is imported (bacalhau_grpc, whose folder is services/): mypy cannot follow
# setup.py's package_dir mapping, so it reads the package through a link named bacalhau_grpc.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
ln -s "$root/services" "$tmp/bacalhau_grpc"
cd "$tmp"
MYPYPATH="$tmp" "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" -p bacalhau_grpc
