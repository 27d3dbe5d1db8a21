"""A client of an IPFS daemon's HTTP RPC API (kubo's, also served by js-ipfs): see `client`."""

from bacalhau_grpc.common.ipfs.client import (
    IpfsClient,
    IpfsEntry,
    IpfsError,
    IpfsStat,
    IpfsTimeoutError,
    parse_api_address,
)

__all__ = [
    "IpfsClient",
    "IpfsEntry",
    "IpfsError",
    "IpfsStat",
    "IpfsTimeoutError",
    "parse_api_address",
]
