"""One way to configure a node, for the three services: each has a settings dataclass (RequesterSettings,
ComputeSettings, VerifierSettings) that checks its own values, filled by `load_settings` from, in
increasing precedence:

1. the dataclass's defaults;
2. an optional YAML config file (`serve --config FILE`): a mapping of setting names (`node_timeout` or
   `node-timeout`) to values;
3. `BACALHAU_<SETTING>` environment variables (`BACALHAU_NODE_TIMEOUT=30`);
4. command-line flags (`--node-timeout 30`).

A value that cannot be read (an unknown setting in the file, `BACALHAU_PORT=http`, a list where a number
belongs) is an InvalidArgumentError whose field is the setting's name and whose text says where the value
came from; the dataclasses' own checks use `setting_error`, which names the variable and the flag too.
"""

import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml

from bacalhau_grpc.common.errors import InvalidArgumentError

ENV_PREFIX = "BACALHAU_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
T = TypeVar("T")


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def flag_name(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def setting_error(setting: str, message: str) -> InvalidArgumentError:
    """An error about a setting's value that names every way to set it."""
    return InvalidArgumentError(
        f"{message} (setting {setting}: {env_name(setting)} or {flag_name(setting)})", field=setting
    )


LOG_FORMATS = ("text", "json")


def check_observability(settings: Any) -> None:
    """The checks of the observability settings every node has: `metrics_port` (-1: none, 0: a free one)
    and `log_format` (text or json)."""
    port = settings.metrics_port
    if isinstance(port, bool) or not isinstance(port, int) or not -1 <= port <= 65535:
        raise setting_error("metrics_port", f"{port!r} is not a TCP port (-1 for none, 0 to 65535)")
    if settings.log_format not in LOG_FORMATS:
        raise setting_error(
            "log_format", f"{settings.log_format!r} is not a log format ({' or '.join(LOG_FORMATS)})"
        )


class Settings:
    """The loading every node's settings dataclass shares (it inherits this)."""

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        config_file: Path | None = None,
        **overrides: Any,
    ) -> Self:
        """`load_settings` for this class: overrides (flags) whose value is None were not given."""
        return load_settings(cls, environ=environ, config_file=config_file, overrides=overrides)


def load_settings(
    cls: type[T],
    *,
    environ: Mapping[str, str] = os.environ,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """An instance of the settings dataclass `cls`: defaults < `config_file` < `environ` < `overrides`."""
    kinds = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]  # a dataclass
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_config(config_file, kinds, names))
    for name in names:
        if env_name(name) in environ:
            values[name] = _from_text(environ[env_name(name)], kinds[name], name, env_name(name))
    for name, value in (overrides or {}).items():
        if name not in kinds:
            raise TypeError(f"unknown setting {name!r} of {cls.__name__}")
        if value is not None:
            values[name] = value
    return cls(**values)


def _read_config(path: Path, kinds: dict[str, Any], names: list[str]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot read the config file {path}: {exc.strerror}", field="config"
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidArgumentError(f"the config file {path} is not YAML: {exc}", field="config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgumentError(
            f"the config file {path} must be a mapping of setting names to values, "
            f"not a {type(data).__name__}",
            field="config",
        )
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in names:
            raise InvalidArgumentError(
                f"unknown setting {key!r} in the config file {path} (the settings are those of "
                "`serve --help`, written as `node_timeout: 30`)",
                field=str(key),
            )
        values[name] = _from_config(value, kinds[name], name, f"{name} in {path}")
    return values


def _from_config(value: Any, kind: Any, name: str, source: str) -> Any:
    """A YAML value as the setting's type: text is read as an environment variable would be; numbers and
    booleans must fit the type (a number is accepted for a text setting, e.g. `limit_total_cpu: 2`)."""
    if isinstance(value, str):
        return _from_text(value, kind, name, source)
    if kind is bool and isinstance(value, bool):
        return value
    if kind in (int, float) and isinstance(value, int | float) and not isinstance(value, bool):
        if kind is int and not float(value).is_integer():
            raise InvalidArgumentError(f"expected a whole number, got {value!r} (from {source})", field=name)
        return kind(value)
    if kind in (str, Path) and isinstance(value, int | float) and not isinstance(value, bool):
        return kind(str(value))
    raise InvalidArgumentError(
        f"expected {_describe(kind)}, got {value!r} (from {source})",
        field=name,
    )


def _from_text(text: str, kind: Any, name: str, source: str) -> Any:
    if kind is bool:
        folded = text.strip().lower()
        if folded in _TRUE or folded in _FALSE:
            return folded in _TRUE
    elif kind in (int, float):
        try:
            return kind(text.strip())
        except ValueError:
            pass
    elif kind is Path:
        return Path(text)
    else:
        return text
    raise InvalidArgumentError(f"expected {_describe(kind)}, got {text!r} (from {source})", field=name)


def _describe(kind: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", Path: "a path"}.get(kind, "text")
