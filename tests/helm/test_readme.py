"""The chart's README documents every value: each key of values.yaml has a row in its table (objects handed
to Kubernetes as they are count as one key), with the right default, and no row names a key that is gone."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.helm.support import helm_check

README = helm_check.CHART_DIR / "README.md"
ROW = re.compile(r"^\| `(?P<key>[A-Za-z0-9_.]+)` \| (?P<default>.*?) \| (?P<description>.*) \|$")


def value_keys() -> dict[str, Any]:
    """Every documented key of values.yaml with its default: descends into an object only where
    values.schema.json lists its properties (pass-through Kubernetes objects and empty ones are one key)."""
    values = yaml.safe_load((helm_check.CHART_DIR / "values.yaml").read_text())
    schema = json.loads((helm_check.CHART_DIR / "values.schema.json").read_text())
    definitions = schema["definitions"]
    keys: dict[str, Any] = {}

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        return definitions[ref.rsplit("/", 1)[1]] if ref else node

    def walk(value: Any, node: dict[str, Any], prefix: str) -> None:
        node = resolve(node)
        if isinstance(value, dict) and value and "properties" in node:
            for key, item in value.items():
                assert key in node["properties"], f"{prefix}{key} is in values.yaml, not in the schema"
                walk(item, node["properties"][key], f"{prefix}{key}.")
        else:
            keys[prefix.rstrip(".")] = value

    walk(values, schema, "")
    return keys


def readme_rows() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in README.read_text().splitlines():
        match = ROW.match(line)
        if match:
            assert match["key"] not in rows, f"{match['key']} has two rows"
            rows[match["key"]] = (match["default"], match["description"])
    return rows


def shown(value: Any) -> str | None:
    """How the table shows a default: `true`, `""`, `[]`, `1Gi`; None for objects it describes in words."""
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    if isinstance(value, int | float | str):
        return f"`{value}`"
    if value in ([], {}):
        return f"`{json.dumps(value)}`"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return f"`[{', '.join(value)}]`"
    return None


def test_every_value_has_a_row_and_every_row_a_value():
    keys, rows = value_keys(), readme_rows()
    assert len(keys) > 80
    assert sorted(set(keys) - set(rows)) == [], "values missing from the README's table"
    assert sorted(set(rows) - set(keys)) == [], "README rows for keys that values.yaml does not have"


def test_the_table_shows_each_default():
    rows = readme_rows()
    for key, value in value_keys().items():
        expected = shown(value)
        if expected is not None:
            assert rows[key][0] == expected, key
        assert rows[key][1].strip(), f"{key} has no description"


def test_the_table_rows_follow_values_yaml_order():
    order = list(value_keys())
    assert [key for key in readme_rows() if key in order] == order
