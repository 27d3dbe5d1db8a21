"""The SDK's count of result-file bytes in a streamed tar (`TarFileBytes`, behind `on_progress`): whatever
the archive format and however the stream is cut, it adds up to the files' total size."""

import io
import random
import tarfile

import pytest

from bacalhau_grpc.sdk.download import TarFileBytes


def archive(files: dict[str, bytes], form: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=form) as tar:
        folder = tarfile.TarInfo("outputs")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("outputs/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "stdout"
        tar.addfile(link)
    return out.getvalue()


FILES = {
    "stdout": b"x" * 100_000,
    "stderr": b"",
    "exitCode": b"0",
    "outputs/" + "long-name-" * 20 + ".txt": b"y" * 513,  # a pax or GNU long-name header
    "outputs/caf\u00e9.bin": bytes(range(256)) * 7,  # a pax header for the name (PAX format)
}


@pytest.mark.parametrize("form", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_the_counted_bytes_add_up_to_the_files_sizes_however_the_stream_is_cut(form):
    files = (
        FILES
        if form != tarfile.USTAR_FORMAT
        else {k: v for k, v in FILES.items() if len(k) < 100 and k.isascii()}
    )
    data = archive(files, form)
    total = sum(len(v) for v in files.values())
    for seed in range(20):
        pieces = random.Random(seed)
        counter, at, counted = TarFileBytes(), 0, []
        while at < len(data):
            size = pieces.choice([1, 7, 511, 512, 513, 4096, 262144])
            counted.append(counter.feed(data[at : at + size]))
            at += size
        assert sum(counted) == total
        assert all(n >= 0 for n in counted)


def test_a_pax_size_record_overrides_the_header_size():
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("big")
        info.size = 3000
        info.pax_headers = {"size": "3000"}
        tar.addfile(info, io.BytesIO(b"z" * 3000))
    assert TarFileBytes().feed(out.getvalue()) == 3000
