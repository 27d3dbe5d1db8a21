"""How a URLDownload input's file is named and where a job sees it (`checks.url_file_name`,
`checks.mount_path`): one rule for the requester's sharding atoms and the compute node's download."""

import pytest

from bacalhau_grpc.common.model import checks, pb

URL = pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://example.com/data.txt", "data.txt"),
        ("http://example.com/a%20b.txt", "a b.txt"),
        ("https://example.com/dir/sub/report.csv?version=2&x=1#top", "report.csv"),
        ("http://example.com/caf%C3%A9.txt", "café.txt"),
        ("http://example.com/a+b.txt", "a+b.txt"),  # a path is not a form: "+" stays
        ("http://example.com/dir", "dir"),
        ("http://example.com/..a", "..a"),
    ],
)
def test_the_name_is_the_last_path_segment_of_the_url_percent_decoded(url, name):
    assert checks.url_file_name(url) == name
    assert checks.url_error(url) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com", "URL 'http://example.com' has no file name: its path must end in the name"),
        ("http://example.com/", "URL 'http://example.com/' has no file name: its path must end in the name"),
        ("http://example.com/dir/", "URL 'http://example.com/dir/' has no file name: its path must end in"),
        ("http://example.com/dir/?f=a.txt", "has no file name"),
        ("http://example.com/dir/.", "URL 'http://example.com/dir/.' has no file name: its path ends in '.'"),
        ("http://example.com/%2E%2E", "has no file name: its path ends in '..'"),
        (
            "http://example.com/a%2Fb.txt",
            "ends in 'a/b.txt', which cannot be a file name: it holds an encoded",
        ),
        ("http://example.com/a%00b", "which cannot be a file name: it holds an encoded '/' or NUL"),
        ("http://example.com/" + "x" * 256, "ends in a file name longer than 255 bytes"),
    ],
)
def test_a_url_naming_no_file_is_refused_saying_why(url, message):
    problem = checks.url_error(url)
    assert problem is not None and message in problem, problem
    with pytest.raises(ValueError) as caught:
        checks.url_file_name(url)
    assert str(caught.value) == problem


def test_a_name_of_255_bytes_is_taken():
    assert checks.url_file_name("http://example.com/" + "é" * 127 + "x") == "é" * 127 + "x"


def test_a_url_input_is_seen_at_its_path_slash_its_name_and_other_inputs_at_their_path():
    assert checks.mount_path(
        pb.StorageSpec(storage_source=URL, url="http://h/a%20b.txt", path="/inputs")
    ) == ("/inputs/a b.txt")
    assert checks.mount_path(pb.StorageSpec(storage_source=URL, url="http://h/x", path="/in/")) == "/in/x"
    ipfs = pb.StorageSpec(
        storage_source=pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS, cid="Qm", path="/inputs"
    )
    assert checks.mount_path(ipfs) == "/inputs"


def test_the_field_blamed_at_submission_names_the_input():
    volumes = [
        pb.StorageSpec(storage_source=URL, url="http://h/ok.txt", path="/inputs"),
        pb.StorageSpec(storage_source=URL, url="http://h/dir/", path="/inputs"),
    ]
    problem = checks.input_error(volumes, field="Spec.inputs")
    assert problem == (
        "URL 'http://h/dir/' has no file name: its path must end in the name of the file to download",
        "Spec.inputs[1].URL",
    )
