"""Lint, render and validate the Helm chart, offline and without a helm binary (`make helm-lint`).

For the chart's default values and each `ci/*-values.yaml` scenario:

1. the real Helm (the Helm v4 Go SDK through PyPI helm-python-sdk) lints the chart (`helm lint --strict`,
   with the values and `--kube-version`): warnings and errors fail;
2. it renders the chart as `helm install` would (the values checked against values.schema.json);
3. kubernetes-validate checks every rendered object (templates/tests included) against the OpenAPI
   schemas of Kubernetes KUBE_VERSION in strict mode: an unknown field is an error.

kubernetes-validate knows Kubernetes' own kinds only. The cert-manager objects the chart renders in its
certManager TLS mode (cert-manager.io/v1 Issuer and Certificate, custom resources) are checked instead
against CERT_MANAGER_SCHEMAS below: the fields of cert-manager v1's CRDs the chart may use, closed (an
unknown or misspelt field is an error), with their types and enumerations, and their metadata against
Kubernetes' ObjectMeta. Any other custom resource is an error: the chart renders none.

No API server is involved (none can run here). The tests in tests/helm import this module.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
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


# cert-manager v1 (cert-manager.io/v1) as far as the chart uses it: Issuer (selfSigned, ca) and
# Certificate, from the CRDs' OpenAPI schemas (cert-manager 1.x). Objects are closed: every field the CRD
# has at the levels the chart fills is listed, and anything else is refused.
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}
_DNS_LABEL = r"[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = rf"^(\*\.)?{_DNS_LABEL}(\.{_DNS_LABEL})*$"
_SECRET_NAME = {
    "type": "string",
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
_KEY_USAGES = [
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
    "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
    "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
]  # fmt: skip
_ISSUER_REF = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "kind": {"type": "string"},
        "group": {"type": "string"},
    },
}
_ISSUER_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,  # one kind of issuer
    "properties": {
        "selfSigned": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"crlDistributionPoints": _STRINGS},
        },
        "ca": {
            "type": "object",
            "additionalProperties": False,
            "required": ["secretName"],
            "properties": {
                "secretName": _SECRET_NAME,
                "crlDistributionPoints": _STRINGS,
                "issuingCertificateURLs": _STRINGS,
                "ocspServers": _STRINGS,
            },
        },
        "acme": {"type": "object"},
        "vault": {"type": "object"},
        "venafi": {"type": "object"},
    },
}
_CERTIFICATE_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "required": ["secretName", "issuerRef"],
    "properties": {
        "secretName": _SECRET_NAME,
        "issuerRef": _ISSUER_REF,
        "commonName": {"type": "string", "maxLength": 64},
        "subject": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                name: _STRINGS
                for name in (
                    "countries",
                    "localities",
                    "organizationalUnits",
                    "organizations",
                    "postalCodes",
                    "provinces",
                    "streetAddresses",
                )
            }
            | {"serialNumber": {"type": "string"}},
        },
        "literalSubject": {"type": "string"},
        "uris": {"type": "array", "items": {"type": "string", "pattern": "^[a-z][a-z0-9+.-]*://"}},
        "dnsNames": {"type": "array", "items": {"type": "string", "pattern": _DNS_NAME}},
        "ipAddresses": _STRINGS,
        "emailAddresses": _STRINGS,
        "otherNames": {"type": "array"},
        "duration": _DURATION,
        "renewBefore": _DURATION,
        "renewBeforePercentage": {"type": "integer"},
        "isCA": {"type": "boolean"},
        "usages": {"type": "array", "items": {"enum": _KEY_USAGES}, "uniqueItems": True},
        "privateKey": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                "size": {"type": "integer"},
                "encoding": {"enum": ["PKCS1", "PKCS8"]},
                "rotationPolicy": {"enum": ["Never", "Always"]},
            },
        },
        "encodeUsagesInRequest": {"type": "boolean"},
        "revisionHistoryLimit": {"type": "integer", "minimum": 1},
        "secretTemplate": {"type": "object"},
        "keystores": {"type": "object"},
        "additionalOutputFormats": {"type": "array"},
        "nameConstraints": {"type": "object"},
    },
}


def _custom_resource(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"apiVersion": {}, "kind": {}, "metadata": {"type": "object"}, "spec": spec},
    }


CERT_MANAGER_SCHEMAS = {
    ("cert-manager.io/v1", "Issuer"): _custom_resource(_ISSUER_SPEC),
    ("cert-manager.io/v1", "Certificate"): _custom_resource(_CERTIFICATE_SPEC),
}


def validate_custom_resource(obj: dict[str, Any]) -> list[str]:
    """A cert-manager object against CERT_MANAGER_SCHEMAS, its metadata against Kubernetes' ObjectMeta; any
    other custom resource is refused."""
    schema = CERT_MANAGER_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
    if schema is None:
        return [f"{describe(obj)}: {obj.get('apiVersion')} {obj.get('kind')} is not a kind this check knows"]
    problems = [
        f"{describe(obj)}: {'.'.join(str(part) for part in error.absolute_path) or '(top)'}: {error.message}"
        for error in jsonschema.Draft7Validator(schema).iter_errors(obj)
    ]
    # The metadata is Kubernetes' ObjectMeta whatever the kind: checked as a ConfigMap's.
    carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata") or {}}
    problems += [problem.replace("ConfigMap/", f"{obj.get('kind')}/", 1) for problem in validate(carrier)]
    return problems


def is_custom_resource(obj: dict[str, Any]) -> bool:
    """An object of a group that Kubernetes itself does not serve (cert-manager.io, ...)."""
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return bool(group) and "." in group and not group.endswith(".k8s.io")


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
        problems += validate_custom_resource(obj) if is_custom_resource(obj) else validate(obj)
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
