"""Resource amounts: Go's `ResourceUsageData` methods, and parsing of `ResourceUsageConfig` strings.

The arithmetic mirrors `pkg/model/resource_usage.go` (v0.3) over `pb.ResourceUsageData` (CPU in cores
as a double; memory, disk and GPU as uint64). Every function returns a NEW message; inputs are never
changed. Where Go's unsigned arithmetic would wrap, we saturate instead (see `add` and `sub`).

Parsing mirrors `pkg/capacity` (v0.3): the string is lower-cased, every "i" becomes "b" and spaces are
removed; CPU is then a Kubernetes-style quantity (github.com/BTBurke/k8sresource: whole millicores
with an "m" suffix, or a decimal number of cores), memory and disk are byte sizes with 1024-based
units (github.com/c2h5oh/datasize: a whole number and an optional unit), and GPU is an unsigned
integer (strconv.ParseUint). An empty string means "unset" and parses to 0.

Unlike Go, which silently turns an unparseable value into 0 (so a typo meant "no limit"), every
parser here raises `InvalidArgumentError` naming the field and saying what is accepted: for text it
cannot read, a negative amount, NaN or infinity, a positive CPU amount below one millicore (Go
truncates it to 0), and amounts beyond uint64 (Go's int64 millicores for CPU).
"""

import math
import re
from decimal import Decimal, localcontext

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb

UINT64_MAX = 2**64 - 1
# k8sresource keeps CPU as Go `int` millicores (64-bit).
_MAX_MILLICORES = 2**63 - 1
# More significant digits than this is beyond both limits above, whatever the unit.
_MAX_DIGITS = 21

# ---------------------------------------------------------------------------------------------
# Arithmetic (Go's ResourceUsageData methods)
# ---------------------------------------------------------------------------------------------


def _saturate(value: int) -> int:
    return min(max(value, 0), UINT64_MAX)


def add(r: pb.ResourceUsageData, other: pb.ResourceUsageData) -> pb.ResourceUsageData:
    """Per-field sum (Go `Add`). Unlike Go, a sum past uint64 saturates at 2**64-1 instead of wrapping."""
    return pb.ResourceUsageData(
        cpu=r.cpu + other.cpu,
        memory=_saturate(r.memory + other.memory),
        disk=_saturate(r.disk + other.disk),
        gpu=_saturate(r.gpu + other.gpu),
    )


def sub(r: pb.ResourceUsageData, other: pb.ResourceUsageData) -> pb.ResourceUsageData:
    """Per-field difference, never below 0 (Go `Sub`).

    Deviation: Go clamps negative fields to 0 only when EVERY field of `other` is at least `r`'s
    (`r.LessThanEq(other)`); otherwise the unsigned fields wrap around to huge values and the CPU goes
    negative. Here each field is clamped at 0 on its own.
    """
    return pb.ResourceUsageData(
        cpu=max(r.cpu - other.cpu, 0.0),
        memory=_saturate(r.memory - other.memory),
        disk=_saturate(r.disk - other.disk),
        gpu=_saturate(r.gpu - other.gpu),
    )


def _scale(value: int, factor: float) -> int:
    scaled = float(value) * factor  # Go: uint64(float64(x) * factor), truncating
    return UINT64_MAX if scaled >= 2.0**64 else _saturate(int(scaled))


def multi(r: pb.ResourceUsageData, factor: float) -> pb.ResourceUsageData:
    """Every field times `factor` (Go `Multi`): CPU exactly, the integers truncated as Go does.

    `factor` must be a finite number >= 0 (Go's result for anything else is meaningless); results past
    uint64 saturate at 2**64-1.
    """
    if not math.isfinite(factor) or factor < 0:
        raise InvalidArgumentError(f"{factor!r} is not a finite number >= 0", field="factor")
    return pb.ResourceUsageData(
        cpu=r.cpu * factor,
        memory=_scale(r.memory, factor),
        disk=_scale(r.disk, factor),
        gpu=_scale(r.gpu, factor),
    )


def intersect(r: pb.ResourceUsageData, other: pb.ResourceUsageData) -> pb.ResourceUsageData:
    """`r`, with each unset (zero or negative) field taken from `other` (Go `Intersect`)."""
    return pb.ResourceUsageData(
        cpu=r.cpu if r.cpu > 0 else other.cpu,
        memory=r.memory if r.memory > 0 else other.memory,
        disk=r.disk if r.disk > 0 else other.disk,
        gpu=r.gpu if r.gpu > 0 else other.gpu,
    )


def max_usage(r: pb.ResourceUsageData, other: pb.ResourceUsageData) -> pb.ResourceUsageData:
    """Per-field maximum (Go `Max`)."""
    return pb.ResourceUsageData(
        cpu=max(r.cpu, other.cpu),
        memory=max(r.memory, other.memory),
        disk=max(r.disk, other.disk),
        gpu=max(r.gpu, other.gpu),
    )


def less_than_eq(r: pb.ResourceUsageData, other: pb.ResourceUsageData) -> bool:
    """True when every field of `r` is at most the same field of `other` (Go `LessThanEq`)."""
    return r.cpu <= other.cpu and r.memory <= other.memory and r.disk <= other.disk and r.gpu <= other.gpu


def is_zero(r: pb.ResourceUsageData) -> bool:
    """True when every field is 0 (Go `IsZero`)."""
    return r.cpu == 0 and r.memory == 0 and r.disk == 0 and r.gpu == 0


def usage_string(r: pb.ResourceUsageData) -> str:
    """Go's `String()`: `{CPU: 0.500000, Memory: 104857600, Disk: 0, GPU: 1}` (bytes as plain integers)."""
    return f"{{CPU: {r.cpu:f}, Memory: {r.memory:d}, Disk: {r.disk:d}, GPU: {r.gpu:d}}}"


# ---------------------------------------------------------------------------------------------
# Parsing (pkg/capacity's ParseResourceUsageConfig, strict)
# ---------------------------------------------------------------------------------------------

_CPU_ACCEPTS = "use cores such as '2' or '1.5', or whole millicores such as '500m'"
_BYTES_ACCEPTS = (
    "use a whole number of bytes with an optional 1024-based unit "
    "(b, kb or ki, mb or mi, gb or gi, tb or ti, pb or pi, eb or ei), such as '512Mb' or '1Gi'"
)
_GPU_ACCEPTS = "use a whole number of GPUs such as '1'"

_MILLICORES = re.compile(r"([0-9]+)m")
_CORES = re.compile(r"\+?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?")
_SIZE = re.compile(r"([0-9]+)([a-z]*)")
_DIGITS = re.compile(r"[0-9]+")


def _sanitize(text: str) -> str:
    """Go's convertBytesString: lower-case, every "i" becomes "b", spaces removed (any whitespace here)."""
    return "".join(text.lower().replace("i", "b").split())


def _byte_units() -> dict[str, int]:
    # datasize's unit names, as they read after `_sanitize`. Go rewrites "i" to "b" BEFORE calling
    # datasize, which makes its own spellings "kib", "kilo", "giga"... unreachable ("1GiB" became
    # "1gbb" and silently 0); keying the table by the rewritten spelling accepts them as datasize meant.
    names = {
        0: ("", "b", "byte"),
        1: ("k", "kb", "kib", "kilo", "kilobyte", "kilobytes"),
        2: ("m", "mb", "mib", "mega", "megabyte", "megabytes"),
        3: ("g", "gb", "gib", "giga", "gigabyte", "gigabytes"),
        4: ("t", "tb", "tib", "tera", "terabyte", "terabytes"),
        5: ("p", "pb", "pib", "peta", "petabyte", "petabytes"),
        6: ("e", "eb", "eib", "exa", "exabyte", "exabytes"),
    }
    return {_sanitize(name): 1024**power for power, spellings in names.items() for name in spellings}


_BYTE_UNITS = _byte_units()


def _shown(text: str) -> str:
    """The input as quoted in an error message, cut short so a huge value cannot flood the message."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _whole(digits: str) -> int | None:
    """The number an ASCII digit string spells, or None when it is far beyond uint64 (huge strings
    would otherwise hit Python's limit on int() conversions)."""
    return int(digits) if len(digits.lstrip("0")) <= _MAX_DIGITS else None


def _millicores(cores: Decimal) -> int:
    """Whole millicores in `cores`, truncated like Go's int(f * 1000) but computed exactly."""
    with localcontext() as ctx:
        ctx.prec = len(cores.as_tuple().digits) + 8
        return int(cores.scaleb(3))


def _negative(text: str) -> bool:
    return text.lstrip().startswith("-")


def parse_cpu(text: str, *, field: str = "Resources.CPU") -> float:
    """CPU cores from a Kubernetes-style quantity: `500m` = 0.5, `2` = 2.0, `1.5` = 1.5; "" = 0.

    Like k8sresource the amount is held in whole millicores, so digits past the third decimal are
    dropped (`0.0015` = 0.001). Lower-casing happens first, so `500M` is also 0.5 cores.
    """
    s, shown = _sanitize(text), _shown(text)
    if not s:
        return 0.0
    if _negative(s):
        raise InvalidArgumentError(f"{shown} is negative; {_CPU_ACCEPTS}", field=field)
    if match := _MILLICORES.fullmatch(s):
        millicores = _whole(match.group(1))
    elif _CORES.fullmatch(s):
        cores = Decimal(s)
        millicores = _millicores(cores) if cores.is_zero() or cores.adjusted() <= _MAX_DIGITS else None
        if millicores == 0 and cores != 0:
            raise InvalidArgumentError(
                f"{shown} is less than the smallest CPU amount, 1m (0.001 cores); {_CPU_ACCEPTS}",
                field=field,
            )
    else:
        raise InvalidArgumentError(f"{shown} is not a CPU amount; {_CPU_ACCEPTS}", field=field)
    if millicores is None or millicores > _MAX_MILLICORES:
        raise InvalidArgumentError(
            f"{shown} is too large: the most is {_MAX_MILLICORES}m; {_CPU_ACCEPTS}", field=field
        )
    return millicores / 1000


def parse_bytes(text: str, *, field: str = "Resources.Memory") -> int:
    """Bytes from a size with 1024-based units: `1Gb` = `1GB` = `1Gi` = `1g` = 2**30; `100` = 100; "" = 0."""
    s, shown = _sanitize(text), _shown(text)
    if not s:
        return 0
    if _negative(s):
        raise InvalidArgumentError(f"{shown} is negative; {_BYTES_ACCEPTS}", field=field)
    match = _SIZE.fullmatch(s)
    multiplier = _BYTE_UNITS.get(match.group(2)) if match else None
    if match is None or multiplier is None:
        raise InvalidArgumentError(f"{shown} is not a size; {_BYTES_ACCEPTS}", field=field)
    number = _whole(match.group(1))
    size = None if number is None else number * multiplier
    if size is None or size > UINT64_MAX:
        raise InvalidArgumentError(f"{shown} is too large: the most is {UINT64_MAX} bytes", field=field)
    return size


def parse_gpu(text: str, *, field: str = "Resources.GPU") -> int:
    """Whole GPUs from an unsigned integer such as `1`; "" = 0. Surrounding whitespace is ignored."""
    s, shown = text.strip(), _shown(text)
    if not s:
        return 0
    if _negative(s):
        raise InvalidArgumentError(f"{shown} is negative; {_GPU_ACCEPTS}", field=field)
    if not _DIGITS.fullmatch(s):
        raise InvalidArgumentError(f"{shown} is not a whole number of GPUs; {_GPU_ACCEPTS}", field=field)
    count = _whole(s)
    if count is None or count > UINT64_MAX:
        raise InvalidArgumentError(f"{shown} is too large: the most is {UINT64_MAX}", field=field)
    return count


def parse_resource_usage_config(
    cfg: pb.ResourceUsageConfig, *, field_prefix: str = "Resources"
) -> pb.ResourceUsageData:
    """The numbers behind a job's or node's resource strings (Go `capacity.ParseResourceUsageConfig`).

    Errors name the field as `<field_prefix>.CPU`, `.Memory`, `.Disk` or `.GPU` (Go's JSON names).
    """
    prefix = f"{field_prefix}." if field_prefix else ""
    return pb.ResourceUsageData(
        cpu=parse_cpu(cfg.cpu, field=f"{prefix}CPU"),
        memory=parse_bytes(cfg.memory, field=f"{prefix}Memory"),
        disk=parse_bytes(cfg.disk, field=f"{prefix}Disk"),
        gpu=parse_gpu(cfg.gpu, field=f"{prefix}GPU"),
    )
