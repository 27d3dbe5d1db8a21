"""`certs ca`: make the cluster's CA. `certs issue`: a certificate for a node (requester, compute,
verifier) or an operator (client), its identity `spiffe://bacalhau-grpc/<role>/<node-id>` in its SANs.
The certificates themselves are `common.certs`."""

import argparse

from bacalhau_grpc.cli.flags import command_parser
from bacalhau_grpc.common import certs

CERTS_EXAMPLES = """\
examples:
  # the cluster's CA: certs/ca.pem and certs/ca-key.pem (keep the key safe: it signs every certificate)
  bacalhau-grpc certs ca --out certs

  # a certificate for each node, for a devstack on this machine (localhost, 127.0.0.1)
  bacalhau-grpc certs issue --ca certs --role requester --node-id requester-0
  bacalhau-grpc certs issue --ca certs --role compute --node-id node-1

  # an operator's certificate, for grpcurl
  bacalhau-grpc certs issue --ca certs --role client --node-id alice
  grpcurl -cacert certs/ca.pem -cert certs/client-alice.pem -key certs/client-alice-key.pem \
      localhost:1234 list
"""

CA_EXAMPLES = """\
examples:
  # certs/ca.pem (0644) and certs/ca-key.pem (0600), valid for 10 years
  bacalhau-grpc certs ca --out certs

  # replace an existing CA (every certificate it issued stops working)
  bacalhau-grpc certs ca --out certs --days 365 --force
"""

ISSUE_EXAMPLES = """\
examples:
  # certs/compute-node-1.pem and certs/compute-node-1-key.pem, for localhost and 127.0.0.1
  bacalhau-grpc certs issue --ca certs --role compute --node-id node-1

  # a requester reached as requester.example.org and 10.0.0.5, its files in another folder, for 90 days
  bacalhau-grpc certs issue --ca certs --role requester --node-id requester-0 \\
      --dns requester.example.org --ip 10.0.0.5 --days 90 --out /etc/bacalhau-grpc

  # an operator's certificate (client authentication only), for grpcurl -cert/-key
  bacalhau-grpc certs issue --ca certs --role client --node-id alice
"""


def add_parser(subparsers) -> None:
    group = command_parser(
        subparsers,
        "certs",
        help="make the cluster's CA and issue node and operator certificates",
        description="The cluster's TLS certificates: one CA (`certs ca`) and a certificate per node or "
        "operator (`certs issue`) whose identity, spiffe://bacalhau-grpc/<role>/<node-id>, is a URI "
        "subject alternative name. Keys are ECDSA P-256, PEM, mode 0600.",
        epilog=CERTS_EXAMPLES,
    )
    commands = group.add_subparsers(dest="certs_command", metavar="SUBCOMMAND", required=True)

    ca = command_parser(
        commands,
        "ca",
        help="make the cluster's CA",
        description="Make the cluster's CA in DIR (created when missing): ca.pem (the certificate every "
        "node and client trusts, mode 0644) and ca-key.pem (its ECDSA P-256 key, mode 0600). Refuses to "
        "replace an existing CA unless --force.",
        epilog=CA_EXAMPLES,
    )
    ca.add_argument(
        "--out", required=True, metavar="DIR", help="the folder to write ca.pem and ca-key.pem to"
    )
    ca.add_argument(
        "--days",
        type=int,
        default=certs.DEFAULT_CA_DAYS,
        help=f"how long the CA is valid, in days (default {certs.DEFAULT_CA_DAYS})",
    )
    ca.add_argument(
        "--common-name",
        default=certs.DEFAULT_CA_NAME,
        help=f"its subject's CN (default {certs.DEFAULT_CA_NAME!r})",
    )
    ca.add_argument(
        "--force",
        action="store_true",
        help="replace an existing CA (every certificate it issued stops working)",
    )
    ca.set_defaults(handler=cmd_ca)

    issue = command_parser(
        commands,
        "issue",
        help="issue a certificate for a node or an operator",
        description="Issue a certificate signed by the CA in --ca for NODE_ID in ROLE: <role>-<node-id>.pem "
        "(mode 0644) and <role>-<node-id>-key.pem (mode 0600) in --out (default: the CA's folder), "
        "replacing a pair issued before. Its identity is the URI SAN spiffe://bacalhau-grpc/<role>/<node-id> "
        "(subject CN=<node-id>, O=<role>). A node certificate (requester, compute, verifier) serves and "
        "calls (TLS server and client auth) and names the host names and addresses it is reached at: "
        "--dns and --ip, localhost and 127.0.0.1 when neither is given. A client certificate is an "
        "operator's (grpcurl -cert/-key), for client auth only.",
        epilog=ISSUE_EXAMPLES,
    )
    issue.add_argument("--ca", required=True, metavar="DIR", help="the CA's folder (ca.pem, ca-key.pem)")
    issue.add_argument(
        "--role", required=True, metavar="{" + ",".join(certs.ROLES) + "}", help="the holder's role"
    )
    issue.add_argument(
        "--node-id",
        required=True,
        help="the node's ID (an operator's name for --role client): 1 to 128 letters, digits, '.', '_', '-'",
    )
    issue.add_argument(
        "--dns", action="append", default=[], metavar="NAME", help="a DNS name it is reached at (repeatable)"
    )
    issue.add_argument(
        "--ip", action="append", default=[], metavar="IP", help="an IP address it is reached at (repeatable)"
    )
    issue.add_argument(
        "--days",
        type=int,
        default=certs.DEFAULT_DAYS,
        help=f"how long the certificate is valid, in days (default {certs.DEFAULT_DAYS})",
    )
    issue.add_argument("--out", metavar="DIR", help="the folder to write to (default: the CA's folder)")
    issue.set_defaults(handler=cmd_issue)


def cmd_ca(args: argparse.Namespace) -> int:
    written = certs.create_ca(args.out, days=args.days, common_name=args.common_name, force=args.force)
    print(f"CA certificate: {written.cert}")
    print(f"CA key:         {written.key} (mode 0600: keep it safe, it signs every certificate)")
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    issued = certs.issue(
        args.ca,
        role=args.role,
        node_id=args.node_id,
        dns=args.dns,
        ips=args.ip,
        days=args.days,
        out_dir=args.out,
    )
    print(f"Identity:    {issued.identity.uri}")
    print(f"Certificate: {issued.cert}")
    print(f"Key:         {issued.key} (mode 0600)")
    print(f"CA:          {issued.ca}")
    if issued.dns or issued.ips:
        print(f"Hosts:       {', '.join([*issued.dns, *issued.ips])}")
    print(f"Expires:     {issued.not_valid_after:%Y-%m-%d %H:%M:%S} UTC")
    return 0
