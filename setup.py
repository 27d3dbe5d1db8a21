"""Maps the import root onto its folder (pyproject.toml holds everything else). The generated code lives
inside the package (services/pb, services/sdk/types): `bacalhau_grpc` is the only top-level package."""

from setuptools import find_packages, setup

setup(
    package_dir={"bacalhau_grpc": "services"},
    packages=["bacalhau_grpc"] + [f"bacalhau_grpc.{sub}" for sub in find_packages("services")],
    package_data={"bacalhau_grpc": ["py.typed", "pb/**/*.pyi", "sdk/types/py.typed", "dashboard/static/*"]},
)
