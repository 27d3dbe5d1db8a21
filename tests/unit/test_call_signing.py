"""Signed calls (services/common/signing.py, services/common/caller.py): the metadata a client sends, its
verification (skew, tampering, malformed parts), the replay guard and its bound, the server-side hook."""

import hashlib
import time

import pytest

from bacalhau_grpc.common.caller import ANONYMOUS, Caller, ClientCallAuthenticator
from bacalhau_grpc.common.errors import UnauthenticatedError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.signing import (
    CALL_SIGNATURE_CONTEXT,
    CLIENT_KEY_METADATA,
    SIGNATURE_METADATA,
    TIMESTAMP_METADATA,
    ClientKey,
    ReplayGuard,
    call_credentials,
    request_bytes,
    verify_call,
)
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb

CANCEL = "/bacalhau.requester.v1.RequesterService/CancelJob"
GET = "/bacalhau.requester.v1.RequesterService/GetJob"
NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def alice() -> ClientKey:
    return ClientKey.generate()


@pytest.fixture(scope="module")
def mallory() -> ClientKey:
    return ClientKey.generate()


def cancel(job_id: str = "job-1", reason: str = "") -> rpb.CancelJobRequest:
    return rpb.CancelJobRequest(job_id=job_id, reason=reason)


def verify(method, request, metadata, now=NOW, **kwargs) -> str:
    data = request if isinstance(request, bytes) else request_bytes(request)
    return verify_call(method, data, call_credentials(metadata), now, **kwargs)


def test_the_metadata_is_the_key_a_millisecond_timestamp_and_the_signature_over_method_time_and_bytes(alice):
    request = cancel()
    metadata = alice.call_metadata(CANCEL, request, now=NOW)
    assert [k for k, _ in metadata] == [CLIENT_KEY_METADATA, TIMESTAMP_METADATA, SIGNATURE_METADATA]
    values = dict(metadata)
    assert values[CLIENT_KEY_METADATA] == alice.public_key_bytes and len(alice.public_key_bytes) == 32
    assert values[TIMESTAMP_METADATA] == "1700000000000"
    signed = (
        b"bacalhau-grpc call v1\n"
        + CANCEL.encode()
        + b"\n1700000000000\n"
        + hashlib.sha256(request.SerializeToString(deterministic=True)).digest()
    )
    assert signed.startswith(CALL_SIGNATURE_CONTEXT)
    assert values[SIGNATURE_METADATA] == alice.sign(signed)
    assert verify(CANCEL, request, metadata) == alice.client_id


def test_each_call_gets_its_own_strictly_increasing_timestamp(alice):
    request = cancel()
    stamps = [int(dict(alice.call_metadata(GET, request))[TIMESTAMP_METADATA]) for _ in range(200)]
    assert stamps == sorted(set(stamps))  # same request, same millisecond: still distinct signed calls
    assert abs(stamps[0] / 1000 - time.time()) < 5


def test_the_server_computes_the_same_bytes_from_the_request_it_parsed(alice):
    # A map's order and the encoding on the wire do not matter: deterministic serialization of the
    # parsed message is what the client signed.
    one, two = pb.JobState(), pb.JobState()
    for name in ("n-b", "n-a", "n-c"):
        one.nodes[name].shards[0].node_id = name
    for name in ("n-c", "n-a", "n-b"):
        two.nodes[name].shards[0].node_id = name
    assert request_bytes(one) == request_bytes(two)
    metadata = alice.call_metadata(GET, one, now=NOW)
    parsed = pb.JobState.FromString(two.SerializeToString())
    assert verify(GET, parsed, metadata) == alice.client_id
    # Fields the server does not know are kept when it parses, and written after the known ones.
    unknown = cancel().SerializeToString() + b"\xb8\x06\x07"  # field 103, varint 7
    from_newer_client = rpb.CancelJobRequest.FromString(unknown)
    metadata = alice.call_metadata(CANCEL, from_newer_client, now=NOW)
    received = rpb.CancelJobRequest.FromString(from_newer_client.SerializeToString())
    assert request_bytes(received).endswith(b"\xb8\x06\x07")
    assert verify(CANCEL, received, metadata) == alice.client_id


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(-301, "301.0 s behind the server's clock"), (301, "301.0 s ahead of the server's clock")],
)
def test_a_timestamp_outside_five_minutes_is_refused_saying_by_how_much(alice, seconds, said):
    metadata = alice.call_metadata(GET, cancel(), now=NOW + seconds)
    with pytest.raises(UnauthenticatedError, match=said) as raised:
        verify(GET, cancel(), metadata)
    assert "at most 300 s either way" in str(raised.value)
    for inside in (-299.9, 299.9):
        assert verify(GET, cancel(), alice.call_metadata(GET, cancel(), now=NOW + inside)) == alice.client_id


def test_a_signature_over_anything_else_is_refused(alice, mallory):
    request = cancel("job-1")
    metadata = alice.call_metadata(CANCEL, request, now=NOW)
    with pytest.raises(UnauthenticatedError, match="does not match its method"):
        verify(GET, request, metadata)  # another method
    with pytest.raises(UnauthenticatedError, match="does not match"):
        verify(CANCEL, cancel("job-2"), metadata)  # another request
    with pytest.raises(UnauthenticatedError, match="does not match"):
        verify(CANCEL, cancel("job-1", reason="x"), metadata)
    values = dict(metadata)
    with pytest.raises(UnauthenticatedError, match="does not match"):
        later = {**values, TIMESTAMP_METADATA: str(int(values[TIMESTAMP_METADATA]) + 1)}
        verify_call(CANCEL, request_bytes(request), later, NOW)  # another time
    with pytest.raises(UnauthenticatedError, match="does not match"):
        swapped = {**values, CLIENT_KEY_METADATA: mallory.public_key_bytes}
        verify_call(CANCEL, request_bytes(request), swapped, NOW)  # claimed by another key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({CLIENT_KEY_METADATA: None}, "incomplete: bacalhau-client-key-bin missing"),
        ({SIGNATURE_METADATA: None}, "incomplete: bacalhau-signature-bin missing"),
        ({TIMESTAMP_METADATA: None, SIGNATURE_METADATA: None}, "bacalhau-timestamp, bacalhau-signature-bin"),
        ({CLIENT_KEY_METADATA: b"\x01" * 31}, "32 raw bytes of an Ed25519 public key, got 31 bytes"),
        ({CLIENT_KEY_METADATA: "text"}, "got 4 characters"),
        ({TIMESTAMP_METADATA: "12.5"}, "unix milliseconds as decimal digits, got '12.5'"),
        ({TIMESTAMP_METADATA: "-5"}, "decimal digits"),
        ({TIMESTAMP_METADATA: "٣٣"}, "decimal digits"),  # digits, but not ASCII ones
        ({TIMESTAMP_METADATA: "9" * 400}, "decimal digits"),
        ({SIGNATURE_METADATA: b"\x00" * 63}, "a 64-byte Ed25519 signature"),
        ({SIGNATURE_METADATA: b"\x00" * 64}, "does not match"),
    ],
)
def test_malformed_or_missing_parts_are_refused_with_the_reason(alice, change, message):
    values = dict(alice.call_metadata(GET, cancel(), now=NOW))
    for key, value in change.items():
        if value is None:
            del values[key]
        else:
            values[key] = value
    with pytest.raises(UnauthenticatedError, match=message):
        verify_call(GET, request_bytes(cancel()), values, NOW)


def test_a_key_given_twice_is_refused_and_other_metadata_is_ignored(alice):
    metadata = alice.call_metadata(GET, cancel(), now=NOW)
    assert call_credentials([("user-agent", "x"), ("bacalhau-other", "y")]) == {}
    assert call_credentials(None) == {}
    with pytest.raises(UnauthenticatedError, match="bacalhau-signature-bin more than once"):
        call_credentials([*metadata, (SIGNATURE_METADATA, b"\x00" * 64)])


def test_a_replayed_signature_is_refused_within_the_window_and_forgotten_after(alice):
    guard = ReplayGuard()
    metadata = alice.call_metadata(GET, cancel(), now=NOW)
    assert verify(GET, cancel(), metadata, now=NOW + 1, replay_guard=guard) == alice.client_id
    with pytest.raises(UnauthenticatedError, match="replayed signature"):
        verify(GET, cancel(), metadata, now=NOW + 299, replay_guard=guard)
    assert len(guard) == 1
    # Past the window the call is too old anyway, and the guard has let it go.
    with pytest.raises(UnauthenticatedError, match="behind"):
        verify(GET, cancel(), metadata, now=NOW + 301, replay_guard=guard)
    fresh = alice.call_metadata(GET, cancel(), now=NOW + 301)
    verify(GET, cancel(), fresh, now=NOW + 301, replay_guard=guard)
    assert len(guard) == 1
    # A bad signature never enters the guard (strangers cannot fill it).
    bad = dict(alice.call_metadata(GET, cancel(), now=NOW + 302))
    bad[SIGNATURE_METADATA] = b"\x00" * 64
    with pytest.raises(UnauthenticatedError, match="does not match"):
        verify_call(GET, request_bytes(cancel()), bad, NOW + 302, replay_guard=guard)
    assert len(guard) == 1


def test_the_replay_guard_is_bounded_and_a_flood_narrows_the_window_instead_of_forgetting():
    guard = ReplayGuard(max_entries=100, window=300.0)
    for i in range(1_000):
        guard.check(f"call-{i}".encode(), signed_at=NOW + i / 100, now=NOW + 10)
        assert len(guard) <= 100
    assert len(guard) == 100
    # The dropped entries' calls are refused as too old, never accepted again...
    with pytest.raises(UnauthenticatedError, match="older than the replay window"):
        guard.check(b"call-0", signed_at=NOW, now=NOW + 10)
    with pytest.raises(UnauthenticatedError, match="older than the replay window"):
        guard.check(b"call-899", signed_at=NOW + 8.99, now=NOW + 10)
    # ...the remembered ones are replays, and newer calls are taken.
    with pytest.raises(UnauthenticatedError, match="replayed signature"):
        guard.check(b"call-999", signed_at=NOW + 9.99, now=NOW + 10)
    guard.check(b"new", signed_at=NOW + 10, now=NOW + 10)
    assert len(guard) == 100
    # Once the window has moved past them, old entries go and the guard empties.
    guard.check(b"later", signed_at=NOW + 400, now=NOW + 400)
    assert len(guard) == 1


def test_a_flood_of_calls_dated_in_the_future_cannot_lock_out_calls_signed_now():
    guard = ReplayGuard(max_entries=100, window=300.0)
    for i in range(1_000):  # a client's key floods calls dated up to five minutes ahead
        guard.check(f"flood-{i}".encode(), signed_at=NOW + 299, now=NOW)
    assert guard.floor == NOW
    guard.check(b"honest", signed_at=NOW + 0.5, now=NOW + 0.5)  # signed at the present time: taken
    guard.check(b"honest-2", signed_at=NOW + 0.6, now=NOW + 0.6)
    with pytest.raises(UnauthenticatedError, match=r"replayed signature|older than the replay window"):
        guard.check(b"honest", signed_at=NOW + 0.5, now=NOW + 1)  # never accepted twice


def test_the_replay_guard_holds_100000_entries_at_most_by_default():
    guard = ReplayGuard()
    assert guard.max_entries == 100_000 and guard.window == 300.0
    for i in range(100_050):
        guard.check(i.to_bytes(8, "big"), signed_at=NOW + i / 1000, now=NOW + 100)
    assert len(guard) == 100_000


def test_the_hook_skips_listed_methods_lets_unsigned_calls_in_anonymous_and_refuses_bad_signatures(alice):
    now = [NOW]
    hook = ClientCallAuthenticator(skip={"/svc/Heartbeat"}, clock=lambda: now[0])
    garbage = [(SIGNATURE_METADATA, b"x")]
    assert hook("/svc/Heartbeat", cancel(), garbage) is ANONYMOUS  # not looked at
    assert hook(GET, cancel(), [("user-agent", "grpcurl")]) is ANONYMOUS
    assert hook(GET, cancel(), None) is ANONYMOUS
    metadata = alice.call_metadata(GET, cancel(), now=NOW)
    assert hook(GET, cancel(), metadata) == Caller(alice.client_id)
    with pytest.raises(UnauthenticatedError, match="replayed signature"):
        hook(GET, cancel(), metadata)
    with pytest.raises(UnauthenticatedError, match="incomplete"):
        hook(GET, cancel(), garbage)  # a broken signature is not taken for none
