"""What the Helm tests share: scripts/helm_check.py (the `make helm-lint` checks) as a module, and helpers
to find things in rendered manifests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _load_helm_check() -> Any:
    name = "helm_check"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "helm_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


helm_check = _load_helm_check()
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def render_objects(values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    return helm_check.manifests(helm_check.render(values, **kwargs))


def find(objects: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    """The one object of this kind whose app.kubernetes.io/component label is `component`."""
    found = [
        obj
        for obj in objects
        if obj["kind"] == kind
        and obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects of component {component}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a workload (Deployment, StatefulSet) or of a Pod."""
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod_spec(obj)
    for item in [*spec.get("initContainers", []), *spec["containers"]]:
        if item["name"] == name:
            return item
    raise AssertionError(f"no container {name} in {obj['kind']}/{obj['metadata']['name']}")


def flag(args: list[str], name: str) -> str | None:
    """The value of `--name VALUE` (or `--name=VALUE`) in a container's args; None when absent."""
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def env(item: dict[str, Any]) -> dict[str, Any]:
    """A container's env by name: the value, or the valueFrom object."""
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in item.get("env", [])}
