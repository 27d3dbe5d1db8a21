"""Maps the three import roots onto their folders (pyproject.toml holds everything else)."""

from pathlib import Path

from setuptools import find_packages, setup

ROOTS = {
    "bacalhau_grpc": "services",
    "bacalhau": "gen/python/bacalhau",
    "bacalhau_sdk": "gen/python/bacalhau_sdk",
}


def packages_under(name: str, folder: str) -> list[str]:
    return [name] + [f"{name}.{sub}" for sub in find_packages(folder)]


# gen/ is committed; a root is skipped only while bootstrapping, before the first `make gen`.
present = {name: folder for name, folder in ROOTS.items() if Path(folder).is_dir()}

setup(
    package_dir=present,
    packages=[pkg for name, folder in present.items() for pkg in packages_under(name, folder)],
    package_data={"bacalhau": ["**/*.pyi"], "bacalhau_sdk": ["py.typed"]},
)
