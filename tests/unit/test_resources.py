"""Resource strings and resource arithmetic, against Go v0.3's pkg/capacity and pkg/model behaviour."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model import resources as res

GIB = 2**30
MIB = 2**20
UINT64_MAX = 2**64 - 1


def data(cpu=0.0, memory=0, disk=0, gpu=0) -> pb.ResourceUsageData:
    return pb.ResourceUsageData(cpu=cpu, memory=memory, disk=disk, gpu=gpu)


def fields(r: pb.ResourceUsageData) -> tuple:
    return (r.cpu, r.memory, r.disk, r.gpu)


# ---------------------------------------------------------------------------------------------
# Parsing: the cases Go documents and tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cores"),
    [
        ("500m", 0.5),
        ("2", 2.0),
        ("1.5", 1.5),
        ("100m", 0.1),
        ("500 m", 0.5),  # Go's "with spaces" case
        ("500M", 0.5),  # Go's "with capitals" case: lower-cased first, so M is milli
        ("0.25", 0.25),
        (".5", 0.5),
        ("1e1", 10.0),
        ("0", 0.0),
        ("0.0015", 0.001),  # whole millicores, truncated as k8sresource does
        ("", 0.0),
        ("   ", 0.0),
    ],
)
def test_cpu_is_a_kubernetes_quantity(text, cores):
    assert res.parse_cpu(text) == cores


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1Gb", GIB),
        ("1GB", GIB),
        ("1Gi", GIB),
        ("1gb", GIB),
        ("1g", GIB),
        ("1 Gb", GIB),
        ("1GiB", GIB),  # Go's i->b rewrite turned this into "1gbb" (silently 0); datasize meant 2**30
        ("100Mi", 100 * MIB),
        ("512mb", 512 * MIB),  # Go's "basic" case
        ("512mi", 512 * MIB),  # Go's "with i" case
        ("512 mi", 512 * MIB),
        ("512MB", 512 * MIB),
        ("1Ki", 1024),
        ("2Ti", 2 * 2**40),
        ("3Pb", 3 * 2**50),
        ("15Eb", 15 * 2**60),
        ("1 kilobyte", 1024),
        ("4 megabytes", 4 * MIB),
        ("123", 123),
        ("123b", 123),
        ("7 byte", 7),
        ("0", 0),
        ("", 0),
    ],
)
def test_memory_and_disk_are_1024_based_sizes(text, size):
    assert res.parse_bytes(text) == size


@pytest.mark.parametrize(("text", "count"), [("1", 1), ("0", 0), ("8", 8), (" 2 ", 2), ("", 0)])
def test_gpu_is_an_unsigned_integer(text, count):
    assert res.parse_gpu(text) == count


def test_a_config_parses_field_by_field():
    cfg = pb.ResourceUsageConfig(cpu="500m", memory="1Gb", disk="100Mi", gpu="1")
    assert fields(res.parse_resource_usage_config(cfg)) == (0.5, GIB, 100 * MIB, 1)


def test_an_empty_config_is_all_zero():
    assert res.is_zero(res.parse_resource_usage_config(pb.ResourceUsageConfig()))


def test_parsing_returns_a_new_message_and_leaves_the_config_alone():
    cfg = pb.ResourceUsageConfig(cpu="2", memory="1Gb")
    before = cfg.SerializeToString()
    res.parse_resource_usage_config(cfg)
    assert cfg.SerializeToString() == before


# ---------------------------------------------------------------------------------------------
# Parsing: unlike Go, a bad value is an error naming the field, never a silent 0
# ---------------------------------------------------------------------------------------------

CPU_ERRORS = [
    ("abc", "not a CPU amount"),
    ("-1", "negative"),
    ("-500m", "negative"),
    ("1.5m", "not a CPU amount"),  # millicores are whole (k8sresource uses Atoi)
    ("nan", "not a CPU amount"),
    ("inf", "not a CPU amount"),
    ("Infinity", "not a CPU amount"),
    ("1Gb", "not a CPU amount"),
    ("0.0001", "less than the smallest CPU amount"),
    ("1e30", "too large"),
    ("1e999999999", "too large"),
    ("9" * 5000 + "m", "too large"),
]
BYTES_ERRORS = [
    ("abc", "not a size"),
    ("-1", "negative"),
    ("-1Gb", "negative"),
    ("1.5Gb", "not a size"),
    ("10Qb", "not a size"),
    ("Gb", "not a size"),
    ("1 Gb/s", "not a size"),
    ("16Eb", "too large"),
    ("18446744073709551616", "too large"),
    ("9" * 5000, "too large"),
]
GPU_ERRORS = [
    ("abc", "not a whole number"),
    ("-1", "negative"),
    ("1.5", "not a whole number"),
    ("1Gb", "not a whole number"),
    ("18446744073709551616", "too large"),
]


@pytest.mark.parametrize(("text", "why"), CPU_ERRORS)
def test_a_bad_cpu_is_an_error_naming_the_field(text, why):
    with pytest.raises(InvalidArgumentError) as caught:
        res.parse_resource_usage_config(pb.ResourceUsageConfig(cpu=text))
    assert caught.value.field == "Resources.CPU"
    assert "Resources.CPU" in str(caught.value)
    assert why in str(caught.value)
    assert "'500m'" in str(caught.value)  # says what is accepted


@pytest.mark.parametrize(("text", "why"), BYTES_ERRORS)
@pytest.mark.parametrize("field", ["Memory", "Disk"])
def test_a_bad_size_is_an_error_naming_the_field(text, why, field):
    with pytest.raises(InvalidArgumentError) as caught:
        res.parse_resource_usage_config(pb.ResourceUsageConfig(**{field.lower(): text}))
    assert caught.value.field == f"Resources.{field}"
    assert f"Resources.{field}" in str(caught.value)
    assert why in str(caught.value)


@pytest.mark.parametrize(("text", "why"), GPU_ERRORS)
def test_a_bad_gpu_is_an_error_naming_the_field(text, why):
    with pytest.raises(InvalidArgumentError) as caught:
        res.parse_resource_usage_config(pb.ResourceUsageConfig(gpu=text))
    assert caught.value.field == "Resources.GPU"
    assert "Resources.GPU" in str(caught.value)
    assert why in str(caught.value)


def test_a_size_error_lists_the_accepted_units():
    with pytest.raises(InvalidArgumentError) as caught:
        res.parse_bytes("10Qb")
    assert "1024-based" in str(caught.value)
    assert "gb or gi" in str(caught.value)


def test_the_field_prefix_is_the_callers():
    with pytest.raises(InvalidArgumentError) as caught:
        res.parse_resource_usage_config(pb.ResourceUsageConfig(memory="lots"), field_prefix="limit-total")
    assert caught.value.field == "limit-total.Memory"


def test_a_huge_bad_value_is_cut_short_in_the_message():
    with pytest.raises(InvalidArgumentError) as caught:
        res.parse_bytes("x" * 10_000)
    assert len(str(caught.value)) < 400


def test_the_largest_sizes_fit():
    assert res.parse_bytes(str(UINT64_MAX)) == UINT64_MAX
    assert res.parse_gpu(str(UINT64_MAX)) == UINT64_MAX
    assert res.parse_bytes("15Eb") < UINT64_MAX


# ---------------------------------------------------------------------------------------------
# Parsing: properties
# ---------------------------------------------------------------------------------------------

UNITS = {"": 1, "b": 1, "k": 2**10, "Ki": 2**10, "Mi": MIB, "MB": MIB, "Gi": GIB, "gb": GIB, "Ti": 2**40}


@given(st.integers(min_value=0, max_value=2**20), st.sampled_from(sorted(UNITS)))
def test_a_formatted_size_round_trips(n, unit):
    assert res.parse_bytes(f"{n}{unit}") == n * UNITS[unit]
    assert res.parse_bytes(f" {n} {unit.upper()} ") == n * UNITS[unit]


@given(st.integers(min_value=0, max_value=10**12))
def test_formatted_millicores_round_trip(n):
    assert res.parse_cpu(f"{n}m") == n / 1000


@given(st.integers(min_value=0, max_value=10**12))
def test_millicores_and_decimal_cores_agree(n):
    assert res.parse_cpu(f"{n // 1000}.{n % 1000:03d}") == res.parse_cpu(f"{n}m")


@given(st.integers(min_value=0, max_value=UINT64_MAX))
def test_a_plain_number_round_trips_up_to_uint64(n):
    assert res.parse_gpu(str(n)) == n
    assert res.parse_bytes(str(n)) == n


@given(st.text(max_size=30))
def test_any_text_parses_or_is_an_invalid_argument(text):
    for parse in (res.parse_cpu, res.parse_bytes, res.parse_gpu):
        try:
            value = parse(text)
        except InvalidArgumentError as err:
            assert err.field
        else:
            assert value >= 0
            assert not (isinstance(value, float) and not math.isfinite(value))


# ---------------------------------------------------------------------------------------------
# Arithmetic: Go's ResourceUsageData methods
# ---------------------------------------------------------------------------------------------


def test_add_sums_every_field():
    assert fields(res.add(data(0.5, 1, 2, 3), data(1.0, 10, 20, 30))) == (1.5, 11, 22, 33)


def test_sub_takes_away_every_field():
    assert fields(res.sub(data(2.0, 10, 20, 3), data(0.5, 1, 2, 1))) == (1.5, 9, 18, 2)


def test_sub_clamps_each_field_at_zero_instead_of_wrapping():
    # Go clamps only when every field is smaller; otherwise Memory would wrap to ~2**64.
    assert fields(res.sub(data(2.0, 10, 20, 0), data(1.0, 100, 2, 1))) == (1.0, 0, 18, 0)
    assert fields(res.sub(data(0.5, 0, 0, 0), data(1.0, 1, 1, 1))) == (0.0, 0, 0, 0)


def test_add_saturates_instead_of_wrapping():
    assert res.add(data(memory=UINT64_MAX), data(memory=1)).memory == UINT64_MAX


def test_multi_scales_like_go():
    # Go: CPU * f; uint64(float64(x) * f), truncating.
    assert fields(res.multi(data(10.0, 1000, 999, 3), 0.8)) == (8.0, 800, 799, 2)
    assert fields(res.multi(data(1.0, 7, 7, 7), 0)) == (0.0, 0, 0, 0)
    assert res.multi(data(memory=UINT64_MAX), 2).memory == UINT64_MAX


@pytest.mark.parametrize("factor", [-1.0, math.nan, math.inf])
def test_multi_refuses_a_meaningless_factor(factor):
    with pytest.raises(InvalidArgumentError):
        res.multi(data(1.0, 1, 1, 1), factor)


def test_intersect_fills_only_unset_fields():
    got = res.intersect(data(0.0, 5, 0, 2), data(4.0, 50, 60, 70))
    assert fields(got) == (4.0, 5, 60, 2)
    assert fields(res.intersect(data(-1.0), data(4.0))) == (4.0, 0, 0, 0)  # Go: r.CPU <= 0


def test_max_is_per_field():
    assert fields(res.max_usage(data(1.0, 50, 0, 2), data(0.5, 60, 1, 1))) == (1.0, 60, 1, 2)


def test_less_than_eq_needs_every_field():
    assert res.less_than_eq(data(1.0, 1, 1, 1), data(1.0, 1, 1, 1))
    assert res.less_than_eq(data(0.5, 1, 0, 0), data(1.0, 2, 0, 0))
    assert not res.less_than_eq(data(0.5, 3, 0, 0), data(1.0, 2, 0, 0))
    assert not res.less_than_eq(data(gpu=1), data(8.0, GIB, GIB, 0))


def test_is_zero():
    assert res.is_zero(data())
    assert not res.is_zero(data(gpu=1))
    assert not res.is_zero(data(cpu=0.001))


def test_usage_string_is_gos_format():
    # Go: fmt.Sprintf("{CPU: %f, Memory: %d, Disk: %d, GPU: %d}", ...)
    assert (
        res.usage_string(data(0.5, 100 * MIB, 0, 1)) == "{CPU: 0.500000, Memory: 104857600, Disk: 0, GPU: 1}"
    )
    assert res.usage_string(data()) == "{CPU: 0.000000, Memory: 0, Disk: 0, GPU: 0}"


def test_arithmetic_never_changes_its_inputs():
    a, b = data(1.0, 10, 20, 1), data(2.0, 5, 30, 0)
    snapshot = (a.SerializeToString(), b.SerializeToString())
    for result in (
        res.add(a, b),
        res.sub(a, b),
        res.multi(a, 2),
        res.intersect(b, a),
        res.max_usage(a, b),
    ):
        assert result is not a and result is not b
    assert (a.SerializeToString(), b.SerializeToString()) == snapshot


# ---------------------------------------------------------------------------------------------
# Arithmetic: properties
# ---------------------------------------------------------------------------------------------

uints = st.integers(min_value=0, max_value=2**62)
cpus = st.integers(min_value=0, max_value=10**9).map(lambda m: m / 1000)
usages = st.builds(data, cpus, uints, uints, uints)


def close_to(a: pb.ResourceUsageData, b: pb.ResourceUsageData) -> bool:
    return math.isclose(a.cpu, b.cpu, rel_tol=1e-9, abs_tol=1e-9) and fields(a)[1:] == fields(b)[1:]


@given(usages, usages)
def test_add_then_sub_gives_back_the_start(a, b):
    assert close_to(res.sub(res.add(a, b), b), a)


@given(usages, usages)
def test_sub_then_add_gives_back_the_start_when_nothing_clamps(a, b):
    big, small = res.max_usage(a, b), b
    assert close_to(res.add(res.sub(big, small), small), big)


@given(usages, usages)
def test_add_is_commutative(a, b):
    assert res.add(a, b) == res.add(b, a)


@given(usages, usages)
def test_max_is_an_upper_bound_of_both(a, b):
    top = res.max_usage(a, b)
    assert res.less_than_eq(a, top) and res.less_than_eq(b, top)
    assert top == res.max_usage(b, a)


@given(usages, usages)
def test_less_than_eq_means_max_is_the_larger(a, b):
    assert res.less_than_eq(a, b) == (res.max_usage(a, b) == b)


@given(usages)
def test_less_than_eq_is_reflexive_and_zero_is_least(a):
    assert res.less_than_eq(a, a)
    assert res.less_than_eq(data(), a)


@given(usages, usages)
def test_intersect_fills_only_zero_fields(a, b):
    got = res.intersect(a, b)
    for mine, theirs, result in zip(fields(a), fields(b), fields(got), strict=True):
        assert result == (mine if mine > 0 else theirs)


@given(usages)
def test_intersect_with_zero_and_of_zero(a):
    assert res.intersect(a, data()) == a
    assert res.intersect(data(), a) == a


@given(st.builds(data, cpus, *[st.integers(min_value=0, max_value=2**53)] * 3))
def test_multi_by_one_is_identity(a):
    assert res.multi(a, 1.0) == a


@given(usages)
def test_is_zero_only_for_the_zero_usage(a):
    assert res.is_zero(a) == (a == data())
