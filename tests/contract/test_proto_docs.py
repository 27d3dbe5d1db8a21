"""Every message, field, enum and enum value in proto/ carries a comment of its own."""

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"


def descriptor_set(tmp_path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "model.binpb"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *protos,
        ],
        check=True,
    )
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def undocumented(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Names of the declarations in `file` that have no leading comment."""
    comments = {tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location}
    missing = []

    def check(path: tuple[int, ...], name: str) -> None:
        if not comments.get(path):
            missing.append(f"{file.name}: {name}")

    def walk_message(path, message, prefix):
        check(path, prefix + message.name)
        for i, f in enumerate(message.field):
            check((*path, 2, i), f"{prefix}{message.name}.{f.name}")
        for i, nested in enumerate(message.nested_type):
            if not nested.options.map_entry:
                walk_message((*path, 3, i), nested, f"{prefix}{message.name}.")
        for i, enum in enumerate(message.enum_type):
            walk_enum((*path, 4, i), enum, f"{prefix}{message.name}.")

    def walk_enum(path, enum, prefix):
        check(path, prefix + enum.name)
        for i, v in enumerate(enum.value):
            check((*path, 2, i), f"{prefix}{enum.name}.{v.name}")

    for i, message in enumerate(file.message_type):
        walk_message((4, i), message, "")
    for i, enum in enumerate(file.enum_type):
        walk_enum((5, i), enum, "")
    for i, service in enumerate(file.service):
        check((6, i), service.name)
        for j, method in enumerate(service.method):
            check((6, i, 2, j), f"{service.name}.{method.name}")
    return missing


def test_every_declaration_has_a_comment(tmp_path):
    files = [f for f in descriptor_set(tmp_path).file if f.name.startswith("bacalhau/")]
    assert files, "no proto files found under proto/bacalhau"
    missing = [name for f in files for name in undocumented(f)]
    assert not missing, "undocumented declarations:\n" + "\n".join(missing)
