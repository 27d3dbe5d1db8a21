"""The client's key pair and the requester's check of a signed submission (services/common/signing.py)."""

import hashlib
import stat

import pytest

from bacalhau_grpc.common.errors import UnauthenticatedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import KEY_FILE_NAME, ClientKey, KeyFileError, verify_submission
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb


def noop_job() -> pb.Job:
    job = pb.Job(api_version="V1beta1")
    job.spec.engine = pb.Engine.ENGINE_NOOP
    job.spec.annotations.append("signed")
    job.deal.concurrency = 1
    return job


def test_the_key_is_created_on_first_use_private_and_reloaded_with_the_same_client_id(tmp_path):
    directory = tmp_path / "home" / "keys"
    key = ClientKey.load_or_create(directory)
    path = directory / KEY_FILE_NAME
    assert key.path == path and path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8 PEM
    assert len(key.public_key_bytes) == 32
    assert key.client_id == hashlib.sha256(key.public_key_bytes).hexdigest()
    again = ClientKey.load_or_create(directory)
    assert again.client_id == key.client_id and again.public_key_bytes == key.public_key_bytes
    assert [p.name for p in directory.iterdir()] == [KEY_FILE_NAME]  # no temporary file left behind


def test_bacalhau_dir_is_the_default_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("BACALHAU_DIR", str(tmp_path / "from-env"))
    key = ClientKey.load_or_create()
    assert key.path == tmp_path / "from-env" / KEY_FILE_NAME and key.path.is_file()
    assert ClientKey.load_or_create(tmp_path / "from-env").client_id == key.client_id


def test_a_corrupt_key_file_is_an_error_naming_it_and_is_kept(tmp_path):
    path = tmp_path / KEY_FILE_NAME
    path.write_bytes(b"not a key")
    with pytest.raises(KeyFileError, match=str(path)):
        ClientKey.load_or_create(tmp_path)
    assert path.read_bytes() == b"not a key"  # never silently replaced


def test_an_unreadable_key_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / KEY_FILE_NAME
    path.mkdir()  # unreadable as a file, even for root (which reads files whatever their mode)
    with pytest.raises(KeyFileError, match=str(path)):
        ClientKey.load_or_create(tmp_path)
    assert path.is_dir()  # left alone


def test_a_signed_request_round_trips_and_the_owner_is_the_verified_client_id():
    key = ClientKey.generate()
    job = noop_job()
    job.client_id = "somebody-else"  # whatever the job says, the owner is the key's client
    request = key.signed_submit_request(job, context=b"tar bytes")
    assert not request.HasField("payload")
    assert request.client_public_key == key.public_key_bytes
    payload = verify_submission(request)
    assert payload.client_id == key.client_id and payload.job.client_id == key.client_id
    assert payload.context == b"tar bytes"
    assert list(payload.job.spec.annotations) == ["signed"]
    # The signature covers exactly the bytes sent: the payload decodes from them unchanged.
    assert payload.SerializeToString() == request.signed_payload
    assert job.client_id == "somebody-else"  # the caller's job is not modified


def test_the_signature_survives_a_trip_through_the_wire_format():
    request = ClientKey.generate().signed_submit_request(noop_job())
    received = rpb.SubmitJobRequest.FromString(request.SerializeToString())
    assert verify_submission(received).job.spec.engine == pb.Engine.ENGINE_NOOP


def _tampered(request: rpb.SubmitJobRequest) -> rpb.SubmitJobRequest:
    request.signed_payload = request.signed_payload.replace(b"signed", b"forged")
    return request


def _wrong_key(request: rpb.SubmitJobRequest) -> rpb.SubmitJobRequest:
    request.client_public_key = ClientKey.generate().public_key_bytes
    return request


def _mismatched_client_id(request: rpb.SubmitJobRequest) -> rpb.SubmitJobRequest:
    # A payload whose ClientID is not the key's, correctly signed by that key.
    key = ClientKey.generate()
    data = pb.JobCreatePayload(client_id="a" * 64, job=noop_job()).SerializeToString()
    return rpb.SubmitJobRequest(
        signed_payload=data, signature=key.sign(data), client_public_key=key.public_key_bytes
    )


def _short_key(request: rpb.SubmitJobRequest) -> rpb.SubmitJobRequest:
    request.client_public_key = request.client_public_key[:31]
    return request


def _no_signature(request: rpb.SubmitJobRequest) -> rpb.SubmitJobRequest:
    request.ClearField("signature")
    return request


def _no_key(request: rpb.SubmitJobRequest) -> rpb.SubmitJobRequest:
    request.ClearField("client_public_key")
    return request


def _no_payload(request: rpb.SubmitJobRequest) -> rpb.SubmitJobRequest:
    request.ClearField("signed_payload")
    return request


def _undecodable(request: rpb.SubmitJobRequest) -> rpb.SubmitJobRequest:
    key = ClientKey.generate()
    data = b"\xff\xff\xff"
    return rpb.SubmitJobRequest(
        signed_payload=data, signature=key.sign(data), client_public_key=key.public_key_bytes
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_tampered, "signature does not match"),
        (_wrong_key, "signature does not match"),
        (_mismatched_client_id, "is not the SHA-256 of the client public key"),
        (_short_key, "must be 32 raw Ed25519 bytes, got 31"),
        (_no_signature, "no signature"),
        (_no_key, "no client public key"),
        (_no_payload, "no signed payload"),
        (_undecodable, "not a serialized JobCreatePayload"),
    ],
)
def test_a_bad_submission_is_unauthenticated(change, message):
    request = change(ClientKey.generate().signed_submit_request(noop_job()))
    with pytest.raises(UnauthenticatedError, match=message):
        verify_submission(request)
