"""The CID kubo's `ipfs add -r` gives a folder, empty subfolders included.

Why this exists: aleph-cid 0.1.0's `hash_folder` builds a folder's DAG from its files alone, so it leaves
empty subfolders out (and refuses an empty folder), while kubo and js-ipfs link each of them as an empty
UnixFS directory: a result folder with an empty `outputs/` got another CID here than on IPFS.

Files are hashed by aleph-cid (`CidHasher`); directories are built here the way aleph-cid builds them,
so a folder without empty subfolders keeps the CID `aleph_cid.hash_folder` gives it:

- a directory is a dag-pb node: PBLinks {Hash, Name, Tsize} sorted by the names' UTF-8 bytes, then
  Data = UnixFS {Type: Directory}. Tsize is the cumulative size of the linked DAG (the serialized size
  of every block in it);
- a directory whose links' names and binary CIDs add up to 256 KiB or more is a HAMT shard (kubo's
  `HAMTShardingSize`): fanout 256, names hashed with murmur3-x64-64;
- a file is cut in 256 KiB chunks under a balanced DAG of at most 174 links per node, sha2-256; CIDv1
  (base32, `bafy…`) has raw leaves, CIDv0 (base58, `Qm…`) UnixFS File leaves;
- symbolic links, fifos, sockets and devices are left out and never followed (`safe.walk`; result
  folders never hold them, see `safe.prune`): the CID is kubo's for the folder without them.
"""

import base64
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import aleph_cid

from bacalhau_grpc.common.content import safe

CHUNK = 256 * 1024
LINKS_PER_NODE = 174
HAMT_SHARDING_SIZE = 256 * 1024
HAMT_FANOUT = 256
MURMUR3_X64_64 = 0x22
# UnixFS Data.Type
DIRECTORY, FILE, HAMT_SHARD = 1, 2, 5
_READ = 1024 * 1024
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_MASK64 = (1 << 64) - 1

# A link to a child: its name, its binary CID (as PBLink.Hash holds it: CIDv1 bytes, or a CIDv0's bare
# multihash) and the cumulative size of its DAG.
Link = tuple[str, bytes, int]


def folder_cid(folder: Path, *, cid_version: int = 1) -> str:
    """The CID kubo gives `folder` (`ipfs add -r` with default settings, CIDv1 or CIDv0), empty subfolders
    and an empty folder included."""
    if cid_version not in (0, 1):
        raise ValueError(f"cid_version must be 0 or 1, not {cid_version!r}")
    v1 = cid_version == 1
    cid, _ = _directory(Path(folder), v1)
    return "b" + base64.b32encode(cid).decode().lower().rstrip("=") if v1 else _base58(cid)


def _directory(path: Path, v1: bool) -> tuple[bytes, int]:
    links: list[Link] = []
    for name, child, is_dir in safe.walk(path, recursive=False):
        cid, size = _directory(child, v1) if is_dir else _file(child, v1)
        links.append((_utf8(name, os.fspath(child)), cid, size))
    links.sort(key=lambda link: link[0].encode())
    if sum(len(name.encode()) + len(cid) for name, cid, _ in links) >= HAMT_SHARDING_SIZE:
        return _hamt_shard([(_murmur3_64(link[0].encode()), link) for link in links], v1, 0)
    return _node(links, _field(1, DIRECTORY), v1)


def _hamt_shard(entries: list[tuple[int, Link]], v1: bool, level: int) -> tuple[bytes, int]:
    """A node of a HAMT-sharded directory, holding `entries` (each with the hash of its name). Byte
    `level` of the hash (from the top) picks an entry's slot: a slot with one entry links it as
    "XXname", a slot with several links a sub-shard of them as "XX"."""
    if level == 8:
        raise ValueError("HAMT: two names have the same 64-bit hash")
    slots: dict[int, list[tuple[int, Link]]] = {}
    for entry in entries:
        slots.setdefault(entry[0] >> (56 - 8 * level) & 0xFF, []).append(entry)
    links: list[Link] = []
    for slot, inside in sorted(slots.items()):
        if len(inside) == 1:
            name, cid, size = inside[0][1]
            links.append((f"{slot:02X}{name}", cid, size))
        else:
            links.append((f"{slot:02X}", *_hamt_shard(inside, v1, level + 1)))
    bits = sum(1 << slot for slot in slots)
    data = (
        _field(1, HAMT_SHARD)
        + _field(2, bits.to_bytes((bits.bit_length() + 7) // 8, "big"))
        + _field(5, MURMUR3_X64_64)
        + _field(6, HAMT_FANOUT)
    )
    return _node(links, data, v1)


def _file(path: Path, v1: bool) -> tuple[bytes, int]:
    hasher = aleph_cid.CidHasher.for_ipfs_v1_raw_leaves() if v1 else aleph_cid.CidHasher.for_ipfs()
    size = 0
    with safe.open_file(path) as file:
        while data := file.read(_READ):
            hasher.update(data)
            size += len(data)
    cid = hasher.finalize()
    binary = base64.b32decode(cid[1:].upper() + "=" * (-(len(cid) - 1) % 8)) if v1 else _unbase58(cid)
    return binary, _file_dag_size(size, v1)


def _file_dag_size(size: int, v1: bool) -> int:
    """The cumulative size of the DAG of a file of `size` bytes (the Tsize of a link to it). It depends on
    the size alone, so the nodes are encoded here with placeholder hashes as long as the real ones:
    chunks, then layers of nodes of at most LINKS_PER_NODE links until one is left."""
    chunks = [CHUNK] * (size // CHUNK) + ([size % CHUNK] if size % CHUNK or not size else [])
    # Each node of a layer: (cumulative size, file bytes below it).
    layer = [(n if v1 else len(_pb_node([], _file_data(n, chunk=bytes(n)))), n) for n in chunks]
    placeholder = bytes(36 if v1 else 34)
    while len(layer) > 1:
        groups = [layer[i : i + LINKS_PER_NODE] for i in range(0, len(layer), LINKS_PER_NODE)]
        layer = [_file_node_size(group, placeholder) for group in groups]
    return layer[0][0]


def _file_node_size(children: list[tuple[int, int]], placeholder: bytes) -> tuple[int, int]:
    links = [("", placeholder, dag_size) for dag_size, _ in children]
    blocksizes = [n for _, n in children]
    block = _pb_node(links, _file_data(sum(blocksizes), blocksizes=blocksizes))
    return len(block) + sum(dag_size for dag_size, _ in children), sum(blocksizes)


def _file_data(filesize: int, *, chunk: bytes = b"", blocksizes: Sequence[int] = ()) -> bytes:
    """UnixFS {Type: File, Data: chunk (when not empty), filesize, blocksizes}."""
    data = _field(2, chunk) if chunk else b""
    return _field(1, FILE) + data + _field(3, filesize) + b"".join(_field(4, n) for n in blocksizes)


def _node(links: list[Link], data: bytes, v1: bool) -> tuple[bytes, int]:
    """The binary CID (CIDv1 dag-pb, or CIDv0) and the cumulative size of a dag-pb node."""
    block = _pb_node(links, data)
    multihash = b"\x12\x20" + hashlib.sha256(block).digest()
    return (b"\x01\x70" + multihash if v1 else multihash), len(block) + sum(size for _, _, size in links)


def _pb_node(links: list[Link], data: bytes) -> bytes:
    """A dag-pb PBNode, canonically encoded: PBLinks {Hash, Name, Tsize} (field 2) first, Data (field 1)
    last."""
    encoded = (_field(1, cid) + _field(2, name.encode()) + _field(3, size) for name, cid, size in links)
    return b"".join(_field(2, link) for link in encoded) + _field(1, data)


def _field(number: int, value: int | bytes) -> bytes:
    """A protobuf field: a varint, or length-delimited bytes."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _utf8(name: str, path: str) -> str:
    """The name, when it is UTF-8 (a UnixFS name must be); ValueError otherwise."""
    try:
        name.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{path!r}: the name is not UTF-8") from None
    return name


def _base58(data: bytes) -> str:
    number, text = int.from_bytes(data, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = _BASE58[digit] + text
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + text


def _unbase58(text: str) -> bytes:
    number = 0
    for char in text:
        number = number * 58 + _BASE58.index(char)
    zeros = len(text) - len(text.lstrip("1"))
    return bytes(zeros) + number.to_bytes((number.bit_length() + 7) // 8, "big")


def _murmur3_64(data: bytes) -> int:
    """The first 64 bits of MurmurHash3 x64_128 with seed 0 (spaolacci/murmur3's Sum64, which kubo's HAMT
    hashes names with)."""
    c1, c2 = 0x87C37B91114253D5, 0x4CF5AD432745937F

    def rotl(x: int, r: int) -> int:
        return (x << r | x >> (64 - r)) & _MASK64

    def fmix(k: int) -> int:
        k = (k ^ k >> 33) * 0xFF51AFD7ED558CCD & _MASK64
        k = (k ^ k >> 33) * 0xC4CEB9FE1A85EC53 & _MASK64
        return k ^ k >> 33

    h1 = h2 = 0
    end = len(data) - len(data) % 16
    for i in range(0, end, 16):
        k1, k2 = int.from_bytes(data[i : i + 8], "little"), int.from_bytes(data[i + 8 : i + 16], "little")
        h1 ^= rotl(k1 * c1 & _MASK64, 31) * c2 & _MASK64
        h1 = ((rotl(h1, 27) + h2) * 5 + 0x52DCE729) & _MASK64
        h2 ^= rotl(k2 * c2 & _MASK64, 33) * c1 & _MASK64
        h2 = ((rotl(h2, 31) + h1) * 5 + 0x38495AB5) & _MASK64
    tail = data[end:]
    if len(tail) > 8:
        h2 ^= rotl(int.from_bytes(tail[8:], "little") * c2 & _MASK64, 33) * c1 & _MASK64
    if tail:
        h1 ^= rotl(int.from_bytes(tail[:8], "little") * c1 & _MASK64, 31) * c2 & _MASK64
    h1 ^= len(data)
    h2 ^= len(data)
    h1 = (h1 + h2) & _MASK64
    h2 = (h2 + h1) & _MASK64
    h1, h2 = fmix(h1), fmix(h2)
    return (h1 + h2) & _MASK64
