# The bacalhau-grpc image: one image for the three services (and the command line).
#
#   make image     builds bacalhau-grpc:<version> and bacalhau-grpc:latest on the local base image
#                  (scripts/base-image.sh: no registry is needed)
#   docker build --network host --build-arg BASE_IMAGE=debian:bookworm-slim -t bacalhau-grpc .
#                  the same on a registry image; on python:3.11-slim-bookworm the image runs that
#                  image's own Python 3.11.x, elsewhere Debian's python3 (bookworm: 3.11.2)
#
# Run:  docker run -v $PWD/certs:/tls:ro bacalhau-grpc serve --node-type requester|compute|verifier \
#           --host 0.0.0.0 --port N --tls-cert /tls/<role>-<id>.pem --tls-key /tls/<role>-<id>-key.pem \
#           --tls-ca /tls/ca.pem --health-port 1238 ...
#       (certificates from `bacalhau-grpc certs ca` and `certs issue`, readable by uid 10001; or --insecure
#       for plaintext, development only: `serve` refuses to start with neither. Every setting is a flag or
#       a BACALHAU_<SETTING> variable; `serve --help` lists them)
#
# Ports, by convention (the Helm chart uses these): 1234 requester (client API), 1235 compute, 1236
# verifier (gRPC, each with health and reflection), 1237 the requester's node protocol (mutual TLS,
# --node-port), 1238 each service's plaintext health port (grpc.health.v1 alone, for probes that cannot
# speak TLS: --health-port). The services listen on 127.0.0.1 and a random port unless told otherwise:
# pass --host 0.0.0.0 --port <its port>.
#
# Runs as the non-root user bacalhau (uid/gid 10001). HOME is /data, the only writable folder: the node
# data dirs (~/.bacalhau-grpc/<node type>), the WASM module cache (~/.cache/bacalhau-grpc/wasm) and the
# client key ($BACALHAU_DIR=/data/client) default to folders under it; mount a volume there to keep them.
# A compute node runs Docker jobs on the engine at DOCKER_HOST (or /var/run/docker.sock, mounted, with
# a group that may use it): the image holds no Docker engine and no docker client.
#
# Only classic-builder instructions (this machine's engine has no BuildKit, and no registry to fetch a
# `# syntax=` frontend from), so BuildKit builds it as well.

ARG BASE_IMAGE=bacalhau-grpc/base:bookworm

# ---------------------------------------------------------------------------------------------------
# runtime: the base plus what the services need to run. The builder starts from it too, so the venv is
# made by the very Python it runs on: the base's own python3 when it has one (python:3.11-slim-*),
# else Debian's (apt). ca-certificates: https (URL inputs, HTTP probes, OTLP, Estuary); bash: compute
# nodes run --job-selection-probe-exec commands with `bash -c`.
FROM ${BASE_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends ca-certificates bash \
        $(command -v python3 > /dev/null || echo python3) \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log /var/cache/debconf/*-old \
    && python3 --version

# ---------------------------------------------------------------------------------------------------
# requirements: the dependencies (with the node extra) and the build backend, read from pyproject.toml.
# The builder copies just this list, so its download layer is reused until the list itself changes (not
# on every edit of pyproject.toml); constraints.txt pins their exact versions.
FROM runtime AS requirements
COPY pyproject.toml /src/
RUN python3 -c 'import tomllib; p = tomllib.load(open("/src/pyproject.toml", "rb")); \
print("\n".join(p["project"]["dependencies"] + p["project"]["optional-dependencies"]["node"] \
+ p["build-system"]["requires"]))' > /requirements.txt

# ---------------------------------------------------------------------------------------------------
# builder: a venv at /opt/bacalhau-grpc with the project installed (not editable), no dev extras.
FROM runtime AS builder
ARG DEBIAN_FRONTEND=noninteractive
# Debian's python3 makes venvs with python3-venv (ensurepip); a python:* image has it built in.
RUN python3 -c 'import ensurepip' 2> /dev/null || { apt-get update -q \
    && apt-get install -y -q --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*; }
# Extra CA certificates (PEM) to trust while downloading from PyPI, for a network that intercepts TLS:
# `make image` passes the host's local additions (/usr/local/share/ca-certificates). Only the builder
# sees them; the final image has Debian's CA bundle alone.
ARG EXTRA_CA_CERTS=""
RUN if [ -n "$EXTRA_CA_CERTS" ]; then printf '%s\n' "$EXTRA_CA_CERTS" >> /etc/ssl/certs/ca-certificates.crt; fi
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
RUN python3 -m venv /opt/bacalhau-grpc
WORKDIR /src
# The dependencies first: editing the code does not download them again.
COPY --from=requirements /requirements.txt /tmp/
COPY constraints.txt /tmp/
RUN /opt/bacalhau-grpc/bin/pip install -q -c /tmp/constraints.txt -r /tmp/requirements.txt
# The package: bacalhau_grpc (services/, the generated code included: services/pb, services/sdk/types).
COPY pyproject.toml setup.py README.md LICENSE ./
COPY services ./services
RUN /opt/bacalhau-grpc/bin/pip install -q --no-deps --no-build-isolation . \
    && /opt/bacalhau-grpc/bin/pip check \
    && /opt/bacalhau-grpc/bin/pip uninstall -q -y pip setuptools \
    && /opt/bacalhau-grpc/bin/bacalhau-grpc version --client \
    && /opt/bacalhau-grpc/bin/python -c 'import bacalhau_grpc.pb.model.v1beta1, bacalhau_grpc.sdk.types.bacalhau, bacalhau_grpc.cli.serve'

# ---------------------------------------------------------------------------------------------------
FROM runtime
RUN groupadd --gid 10001 bacalhau \
    && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home --no-log-init \
        --shell /usr/sbin/nologin bacalhau \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=builder /opt/bacalhau-grpc /opt/bacalhau-grpc
ENV PATH=/opt/bacalhau-grpc/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8 \
    HOME=/data \
    BACALHAU_DIR=/data/client
WORKDIR /data
# Numeric, so Kubernetes can check runAsNonRoot.
USER 10001:10001
EXPOSE 1234 1235 1236 1237 1238

# `make image` passes the package's version and the commit.
ARG BASE_IMAGE
ARG VERSION=unknown
ARG REVISION=""
LABEL org.opencontainers.image.title="bacalhau-grpc" \
    org.opencontainers.image.description="Bacalhau v0.3 compute-over-data network as gRPC microservices: requester, compute and verifier services and the command line" \
    org.opencontainers.image.version="${VERSION}" \
    org.opencontainers.image.revision="${REVISION}" \
    org.opencontainers.image.base.name="${BASE_IMAGE}"

ENTRYPOINT ["bacalhau-grpc"]
CMD ["--help"]
