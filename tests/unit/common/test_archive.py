"""Archives are checked entry by entry while they are read: an archive bomb costs no more memory than
the limits allow."""

import io
import tarfile
import tracemalloc

import pytest

from bacalhau_grpc.common.content.archive import ArchiveError, unpack


def many_entries(count: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for i in range(count):
            archive.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO(b""))
    return out.getvalue()


def test_an_archive_with_too_many_entries_is_refused_before_it_is_all_read(tmp_path):
    bomb = many_entries(100_000)
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveError, match="the archive holds more than the 100 entries allowed"):
            unpack(bomb, tmp_path, max_bytes=1 << 20, max_files=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Reading all 100,000 entries' headers first (as before) takes tens of megabytes.
    assert peak < 5 * 1024 * 1024, peak
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_an_archive_within_its_limits_unpacks(tmp_path):
    unpack(many_entries(3), tmp_path, max_bytes=1 << 20, max_files=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0", "f1", "f2"]
