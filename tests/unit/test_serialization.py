"""Go's size-limited JSON/YAML helpers: limits, error messages and lossless round trips."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bacalhau_grpc.common.errors import InvalidArgumentError, LimitExceededError
from bacalhau_grpc.common.model import serialization as s

MIB = 1024 * 1024


def test_constants_are_gos():
    assert s.MAX_SERIALIZED_STRING_INPUT == 10 * MIB
    assert s.MAX_SERIALIZED_STRING_OUTPUT == 10 * MIB
    assert s.MAX_NUMBER_OF_OBJECTS_TO_SERIALIZE == 1000
    assert s.JSON_INDENT_SPACE_NUMBER == 4


# --- JSON -------------------------------------------------------------------------------------------


def test_json_marshal_is_compact_like_go():
    out = s.json_marshal_with_max({"a": [1, 2.5, None, True], "b": "é"})
    assert out == '{"a":[1,2.5,null,true],"b":"é"}'.encode()


def test_json_marshal_indent_uses_four_spaces_by_default():
    assert s.json_marshal_indent_with_max({"a": {"b": [1]}, "c": []}).decode() == (
        '{\n    "a": {\n        "b": [\n            1\n        ]\n    },\n    "c": []\n}'
    )
    assert s.json_marshal_indent_with_max({"a": 1}, 2).decode() == '{\n  "a": 1\n}'


def test_json_marshal_escapes_html_characters_like_go():
    out = s.json_marshal_with_max({"cmd": "a > b && c < d", "sep": "x\u2028y"})
    assert out == b'{"cmd":"a \\u003e b \\u0026\\u0026 c \\u003c d","sep":"x\\u2028y"}'
    assert s.json_unmarshal_with_max(out) == {"cmd": "a > b && c < d", "sep": "x\u2028y"}


def test_json_marshal_refuses_nan():
    with pytest.raises(InvalidArgumentError, match="cannot serialize to JSON"):
        s.json_marshal_with_max({"x": math.nan})


def test_malformed_json_names_line_and_column():
    expected = r"malformed JSON at line 3, column 9: Expecting ':' delimiter"
    with pytest.raises(InvalidArgumentError, match=expected) as info:
        s.json_unmarshal_with_max('{\n  "a": 1,\n    "b" 2\n}')
    assert not isinstance(info.value, LimitExceededError)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_unmarshal_refuses_non_json_constants(constant):
    with pytest.raises(InvalidArgumentError, match=f"{constant} is not a JSON value"):
        s.json_unmarshal_with_max(f'{{"a": {constant}}}')


def test_json_unmarshal_refuses_invalid_utf8():
    with pytest.raises(InvalidArgumentError, match="not valid UTF-8"):
        s.json_unmarshal_with_max(b'{"a": "\xff"}')


def test_deeply_nested_json_is_an_error_not_a_crash():
    with pytest.raises(InvalidArgumentError, match="nested too deeply"):
        s.json_unmarshal_with_max("[" * 100_000 + "]" * 100_000)


# --- Limits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("unmarshal", [s.json_unmarshal_with_max, s.yaml_unmarshal_with_max])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_input_over_10_mib_names_max_serialized_string_input(unmarshal, as_bytes):
    text = '"' + "x" * (10 * MIB - 1) + '"'  # 10 MiB + 1 byte
    with pytest.raises(LimitExceededError) as info:
        unmarshal(text.encode() if as_bytes else text)
    assert info.value.limit == "MaxSerializedStringInput"
    assert "MaxSerializedStringInput" in str(info.value)
    assert str(10 * MIB + 1) in str(info.value) and str(10 * MIB) in str(info.value)


def test_input_limit_counts_utf8_bytes_not_characters():
    text = '"' + "é" * (5 * MIB) + '"'  # 5 Mi characters, 10 MiB + 2 bytes
    with pytest.raises(LimitExceededError, match="MaxSerializedStringInput"):
        s.json_unmarshal_with_max(text)


def test_input_of_exactly_10_mib_is_accepted():
    text = '"' + "x" * (10 * MIB - 2) + '"'
    assert len(s.json_unmarshal_with_max(text)) == 10 * MIB - 2


@pytest.mark.parametrize(
    "marshal", [s.json_marshal_with_max, s.json_marshal_indent_with_max, s.yaml_marshal_with_max]
)
def test_output_over_10_mib_names_max_serialized_string_output(marshal):
    with pytest.raises(LimitExceededError) as info:
        marshal({"big": "x" * (10 * MIB)})
    assert info.value.limit == "MaxSerializedStringOutput"
    assert "MaxSerializedStringOutput" in str(info.value)


@pytest.mark.parametrize(
    "marshal", [s.json_marshal_with_max, s.json_marshal_indent_with_max, s.yaml_marshal_with_max]
)
def test_marshalling_a_list_over_1000_names_max_number_of_objects(marshal):
    assert marshal([{}] * 1000)
    with pytest.raises(LimitExceededError) as info:
        marshal([{}] * 1001)
    assert info.value.limit == "MaxNumberOfObjectsToSerialize"
    assert "(1001)" in str(info.value) and "(1000)" in str(info.value)


@pytest.mark.parametrize(
    ("unmarshal", "text"),
    [
        (s.json_unmarshal_with_max, "[" + ",".join(["1"] * 1001) + "]"),
        (s.yaml_unmarshal_with_max, "- 1\n" * 1001),
    ],
)
def test_unmarshalling_a_top_level_list_over_1000_names_max_number_of_objects(unmarshal, text):
    with pytest.raises(LimitExceededError, match="MaxNumberOfObjectsToSerialize") as info:
        unmarshal(text)
    assert info.value.limit == "MaxNumberOfObjectsToSerialize"


def test_only_the_top_level_list_is_limited_like_go():
    assert len(s.json_unmarshal_with_max('{"a": [' + ",".join(["1"] * 5000) + "]}")["a"]) == 5000
    s.confirm_max_slice_size({"a": [1] * 5000})
    with pytest.raises(LimitExceededError):
        s.confirm_max_slice_size([1, 2, 3], 2)


# --- YAML -------------------------------------------------------------------------------------------


def test_yaml_marshal_keeps_key_order_and_unicode():
    out = s.yaml_marshal_with_max({"b": 1, "a": ["ü", "日本"]}).decode()
    assert out == "b: 1\na:\n- ü\n- 日本\n"


def test_yaml_empty_document_is_none():
    assert s.yaml_unmarshal_with_max("") is None
    assert s.yaml_unmarshal_with_max("# only a comment\n") is None


def test_malformed_yaml_names_line_and_column():
    expected = r"malformed YAML at line 4, column 3: while parsing a block collection"
    with pytest.raises(InvalidArgumentError, match=expected):
        s.yaml_unmarshal_with_max("a: 1\nb:\n  - c\n  d: 2\n")


def test_yaml_with_two_documents_is_refused_clearly():
    with pytest.raises(InvalidArgumentError, match=r"more than one document \(another starts at line 2\)"):
        s.yaml_unmarshal_with_max("a: 1\n--- {b: 2}\n")


def test_yaml_single_explicit_document_is_fine():
    assert s.yaml_unmarshal_with_max("---\na: 1\n...\n") == {"a": 1}


def test_yaml_timestamps_stay_strings_with_their_nanoseconds():
    doc = s.yaml_unmarshal_with_max("t: 2022-11-17T13:29:01.871140291Z\nd: 2022-11-17\n")
    assert doc == {"t": "2022-11-17T13:29:01.871140291Z", "d": "2022-11-17"}


def test_yaml_reads_go_style_floats():
    assert s.yaml_unmarshal_with_max("a: 1e3\nb: 1.5E-3\nc: 1.0e+2\nd: 12\n") == {
        "a": 1000.0,
        "b": 0.0015,
        "c": 100.0,
        "d": 12,
    }


@pytest.mark.parametrize("text", ["1e3", "=", "2022-11-17", "yes", "0x10", "1_000", "~", "", "\x85a\u2028b"])
def test_yaml_strings_that_look_like_other_things_round_trip(text):
    value = {"k": text, text: "v"}
    assert s.yaml_unmarshal_with_max(s.yaml_marshal_with_max(value)) == value


def test_yaml_plain_equals_sign_is_a_string():
    assert s.yaml_unmarshal_with_max("a: =\n") == {"a": "="}


def test_yaml_alias_bombs_are_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
    with pytest.raises(InvalidArgumentError, match="expands through aliases"):
        s.yaml_unmarshal_with_max("\n".join(lines))


def test_recursive_yaml_is_refused():
    with pytest.raises(InvalidArgumentError, match="expands through aliases"):
        s.yaml_unmarshal_with_max("a: &a [*a]\n")


def test_yaml_a_few_aliases_are_fine():
    assert s.yaml_unmarshal_with_max("a: &x {k: v}\nb: *x\n") == {"a": {"k": "v"}, "b": {"k": "v"}}


# --- Round trips ------------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)))
)
_plain_data = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=("Cs",)), max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(_plain_data)
def test_plain_data_round_trips_through_json(value):
    assert s.json_unmarshal_with_max(s.json_marshal_with_max(value)) == value
    assert s.json_unmarshal_with_max(s.json_marshal_indent_with_max(value)) == value


@settings(max_examples=150, deadline=None)
@given(_plain_data)
def test_plain_data_round_trips_through_yaml(value):
    assert s.yaml_unmarshal_with_max(s.yaml_marshal_with_max(value)) == value
