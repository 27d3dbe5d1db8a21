"""Reads the Go model documentation (the seed) into types, enum constants and struct json tags."""

import re
from functools import cache
from pathlib import Path

# A copy of ../shared/seed/000_28bac6bc3a473f07.txt (the Go documentation of pkg/model, the authority
# for the model), kept here so the contract holds in any checkout.
SEED = Path(__file__).with_name("pkg_model_godoc.txt")

# Seed types that have no protobuf counterpart, and why.
NOT_DATA = {
    "DebugInfoProvider": "a Go interface (a method set), not data",
    "KeyInt": "a Go context-key type, not data",
    "KeyString": "a Go context-key type, not data",
    "PublicKey": "Go's name for []byte; carried as `bytes` fields",
    "TestFatalErrorHandlerContents": "a helper of Go's own tests",
}

# Seed enums: the prefix their Go constants carry ("" where the constants have none).
ENUM_CONST_PREFIX = {
    "APIVersion": "",
    "Engine": "Engine",
    "Verifier": "Verifier",
    "Publisher": "Publisher",
    "StorageSourceType": "StorageSource",
    "JobStateType": "JobState",
    "JobEventType": "JobEvent",
    "JobLocalEventType": "JobLocalEvent",
    "JobSelectionDataLocality": "",
}


@cache
def text() -> str:
    return SEED.read_text()


@cache
def index_types() -> list[str]:
    """Every `type X` listed in the seed's index."""
    index = text().split("Constants ¶", 1)[0]
    return re.findall(r"^- type (\w+)$", index, flags=re.M)


@cache
def enum_constants(go_type: str) -> list[str]:
    """The Go constants of an enum, in declaration (iota) order, without their prefix."""
    body = re.search(
        rf"^type {go_type} ¶\ntype {go_type} int(?:64)?\n.*?const \((.*?)\)\n", text(), re.M | re.S
    )
    assert body, f"no const block for {go_type} in the seed"
    prefix = ENUM_CONST_PREFIX[go_type]
    if not prefix:  # `V1alpha1 APIVersion V1beta1`, `Local JobSelectionDataLocality = 0 ...`
        return [t for t in re.findall(r"[A-Za-z]\w*", body.group(1)) if t != go_type]
    names = re.findall(rf"\b{prefix}([A-Z]\w*)\b", body.group(1))
    return [n for n in names if f"{prefix}{n}" != go_type]


@cache
def struct_json_tags(go_type: str) -> list[str]:
    """The json names of a seed struct's fields, in order (`-` tags and elided literals skipped)."""
    body = re.search(rf"^type {go_type} struct \{{(.*?)\}}\n", text(), re.M | re.S)
    assert body, f"no struct body for {go_type} in the seed"
    return re.findall(r'`json:"([^",]+)', body.group(1))


@cache
def documented_structs() -> list[str]:
    return re.findall(r"^type (\w+) struct \{", text(), re.M)
