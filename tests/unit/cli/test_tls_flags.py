"""Which TLS a client command uses: `--tls`, `--ca-cert`, `--client-cert`, `--client-key` over
BACALHAU_TLS_CA_CERT, BACALHAU_TLS_CLIENT_CERT, BACALHAU_TLS_CLIENT_KEY, with real certificate files
(`sdk.tls.client_tls`, `cli.flags.api_tls`). What a failed handshake says: tests/e2e/test_tls_devstack.py.
"""

import re
from pathlib import Path

import pytest

from bacalhau_grpc.cli import flags, main
from bacalhau_grpc.common import certs
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.sdk import ClientTls, client_tls


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("certs")
    certs.create_ca(folder)
    operator = certs.issue(folder, role="client", node_id="operator")
    other = certs.issue(folder, role="client", node_id="other")
    return {
        "ca": str(folder / "ca.pem"),
        "cert": str(operator.cert),
        "key": str(operator.key),
        "other_key": str(other.key),
    }


def tls_of(*argv: str, environ: dict[str, str]) -> ClientTls | None:
    args = main.build_parser().parse_args(["list", *argv])
    return flags.api_tls(args, environ)


def test_plaintext_unless_a_ca_is_given(files):
    assert tls_of(environ={}) is None
    by_env = tls_of(environ={"BACALHAU_TLS_CA_CERT": files["ca"]})
    assert by_env is not None and by_env.cert is None
    assert by_env.ca == Path(files["ca"]).read_bytes()
    assert "BACALHAU_TLS_CA_CERT" in by_env.ca_source
    by_flag = tls_of("--ca-cert", files["ca"], environ={})
    assert by_flag is not None and by_flag.ca_source == f"the CA certificate {files['ca']}"
    assert tls_of("--tls", "--ca-cert", files["ca"], environ={}) is not None
    # --tls=false: plaintext whatever the environment says
    assert tls_of("--tls=false", environ={"BACALHAU_TLS_CA_CERT": files["ca"]}) is None
    assert tls_of("--no-tls", environ={"BACALHAU_TLS_CA_CERT": files["ca"]}) is None


def test_each_flag_wins_over_its_environment_variable(files):
    environ = {
        "BACALHAU_TLS_CA_CERT": "/nowhere/ca.pem",
        "BACALHAU_TLS_CLIENT_CERT": files["cert"],
        "BACALHAU_TLS_CLIENT_KEY": files["key"],
    }
    tls = tls_of("--ca-cert", files["ca"], environ=environ)
    assert tls is not None and tls.cert == Path(files["cert"]).read_bytes()
    assert tls.key == Path(files["key"]).read_bytes()


def test_what_is_missing_or_wrong_is_named(files):
    with pytest.raises(
        flags.CommandError, match=r"^TLS needs the cluster's CA certificate: give --ca-cert FILE"
    ):
        tls_of("--tls", environ={})
    with pytest.raises(flags.CommandError, match="TLS needs the cluster's CA certificate"):
        tls_of("--client-cert", files["cert"], "--client-key", files["key"], environ={})
    with pytest.raises(flags.CommandError, match="the client certificate needs its key: give --client-key"):
        tls_of("--ca-cert", files["ca"], "--client-cert", files["cert"], environ={})
    with pytest.raises(flags.CommandError, match="BACALHAU_TLS_CLIENT_KEY needs its certificate"):
        tls_of(environ={"BACALHAU_TLS_CA_CERT": files["ca"], "BACALHAU_TLS_CLIENT_KEY": files["key"]})
    with pytest.raises(
        flags.CommandError, match=re.escape("the CA certificate /nowhere/ca.pem does not exist")
    ):
        tls_of("--ca-cert", "/nowhere/ca.pem", environ={})
    with pytest.raises(flags.CommandError, match=r"BACALHAU_TLS_CA_CERT \(.*key.*\) is not a PEM X.509 cert"):
        tls_of(environ={"BACALHAU_TLS_CA_CERT": files["key"]})
    with pytest.raises(flags.CommandError, match="is not the key of the client certificate"):
        tls_of(
            "--ca-cert",
            files["ca"],
            "--client-cert",
            files["cert"],
            "--client-key",
            files["other_key"],
            environ={},
        )
    with pytest.raises(flags.CommandError, match="TLS certificates were given for a plaintext connection"):
        tls_of("--tls=false", "--ca-cert", files["ca"], environ={})


def test_the_sdk_takes_pem_as_well_as_paths(files):
    pem = Path(files["ca"]).read_bytes()
    assert client_tls(ca_cert=pem, environ={}).ca == pem
    assert client_tls(ca_cert=pem.decode(), environ={}).ca == pem
    with_cert = client_tls(
        ca_cert=pem,
        client_cert=Path(files["cert"]).read_bytes(),
        client_key=Path(files["key"]).read_bytes(),
        environ={},
    )
    assert with_cert is not None and with_cert.has_client_cert
    assert "key" not in repr(with_cert).replace("has_client_cert", "")  # the key never in a repr
    with pytest.raises(InvalidArgumentError, match="is not PEM"):
        client_tls(ca_cert=b"not a certificate", environ={})
