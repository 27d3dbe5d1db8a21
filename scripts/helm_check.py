"""Lint, render and validate the Helm chart, offline and without a helm binary (`make helm-lint`).

For the chart's default values and each `ci/*-values.yaml` scenario:

1. the real Helm (the Helm v4 Go SDK through PyPI helm-python-sdk) lints the chart (`helm lint --strict`,
   with the values and `--kube-version`): warnings and errors fail;
2. it renders the chart as `helm install` would (the values checked against values.schema.json);
3. kubernetes-validate checks every rendered object (templates/tests included) against the OpenAPI
   schemas of Kubernetes KUBE_VERSION in strict mode: an unknown field is an error.

No API server is involved (none can run here). The tests in tests/helm import this module.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = ROOT / "helm" / "bacalhau-grpc"
CI_DIR = CHART_DIR / "ci"
# A recent Kubernetes that kubernetes-validate ships schemas for (native sidecars are GA since 1.33).
KUBE_VERSION = "1.35.0"
RELEASE = "bacalhau"
NAMESPACE = "bacalhau"
NOTES = "NOTES.txt"
# helm lint's message severities.
WARNING = 2


@dataclass(frozen=True)
class Scenario:
    """One set of values to check: the defaults (values None) or a ci/*-values.yaml file."""

    name: str
    values: dict[str, Any] | None


def load_values(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    return loaded or {}


def scenarios() -> list[Scenario]:
    """The default values, then every ci/*-values.yaml (by name)."""
    found = [Scenario("default", None)]
    for path in sorted(CI_DIR.glob("*-values.yaml")):
        found.append(Scenario(f"ci/{path.name}", load_values(path)))
    return found


def lint(values: dict[str, Any] | None = None) -> list[str]:
    """`helm lint --strict --kube-version` with these values: its warnings and errors (empty: clean)."""
    report = helm.lint(
        CHART_DIR, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}", quiet=False
    )
    problems = [
        f"{message['path']}: {message['error'].strip()}"
        for message in report.get("messages") or []
        if message.get("severity", 0) >= WARNING
    ]
    problems += [f"lint: {error.strip()}" for error in report.get("errors") or [] if error.strip()]
    return sorted(set(problems))


def render(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """The rendered templates by path (as `helm template`), NOTES.txt included. HelmValuesError when the
    values break values.schema.json, HelmRenderError when a template fails (e.g. a `required` value)."""
    with helm.Chart.load(CHART_DIR) as chart:
        return chart.render(values, name=name, namespace=namespace, is_install=True)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in the rendered templates (NOTES.txt left out), in template order."""
    objects: list[dict[str, Any]] = []
    for path in sorted(rendered):
        if path.endswith(NOTES):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(rendered[path]) if doc)
    return objects


def notes(rendered: dict[str, str]) -> str:
    return next((text for path, text in rendered.items() if path.endswith(NOTES)), "")


def describe(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def validate(obj: dict[str, Any]) -> list[str]:
    """kubernetes-validate (strict) on one object: why it is not valid for KUBE_VERSION (empty: valid)."""
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path) or "(top)"
        return [f"{describe(obj)}: {where}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{describe(obj)}: {error}"]
    return []


def check(scenario: Scenario) -> tuple[int, list[str]]:
    """Lint, render and validate one scenario: (objects rendered, problems)."""
    problems = [f"helm lint: {problem}" for problem in lint(scenario.values)]
    try:
        objects = manifests(render(scenario.values))
    except helm.HelmError as error:
        return 0, [*problems, f"helm render: {error}"]
    for obj in objects:
        problems += validate(obj)
    return len(objects), problems


def main() -> int:
    failed = False
    for scenario in scenarios():
        count, problems = check(scenario)
        if problems:
            failed = True
            print(f"FAIL {scenario.name}")
            for problem in problems:
                print(f"     {problem}")
        else:
            print(f"ok   {scenario.name}: lint clean, {count} objects valid for Kubernetes {KUBE_VERSION}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
