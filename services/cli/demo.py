"""`make demo`: a whole network on this machine, one job through its whole lifecycle.

Starts a devstack (the verifier, the requester and three compute nodes, each its own OS process on a
free 127.0.0.1 port, talking mutual TLS with the certificates the devstack issues), submits a Bacalhau
v0.3 job file that asks three nodes to run the job and the deterministic verifier to compare their
results, prints every event as it happens and the verified result, then stops the devstack.
"""

import asyncio
import sys

from bacalhau_grpc.cli import output
from bacalhau_grpc.cli.follow import report_end
from bacalhau_grpc.common.model import jobfile, pb
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.sdk import Client, sdk_types
from bacalhau_grpc.sdk.client import to_pb, to_sdk

JOB_FILE = """\
APIVersion: V1beta1
Spec:
  Engine: Noop
  Verifier: Deterministic
  Publisher: Noop
  Timeout: 60
  Annotations: [demo]
Deal:
  Concurrency: 3
  Confidence: 2
"""
STDOUT = "hello from bacalhau-grpc\n"


async def run() -> int:
    print("Starting a devstack: 1 verifier, 1 requester, 3 compute nodes ...", flush=True)
    async with Devstack(nodes=3, compute_flags=["--noop-stdout", STDOUT], log_level="WARNING") as stack:
        print(f"  requester at {stack.requester_address}, verifier at {stack.verifier_address}")
        for address in stack.compute_addresses:
            print(f"  compute node at {address}")
        print(f"  TLS everywhere, certificates from the devstack's CA {stack.ca_cert}")
        job = jobfile.load_job(JOB_FILE)
        print("\nSubmitting this Bacalhau job file:\n" + JOB_FILE)
        # Signs with your key, as `create` does; verifies the requester with the devstack's CA.
        async with Client(stack.requester_address, tls=stack.client_tls()) as client:
            job_id = (await client.submit(to_sdk(job, sdk_types.Job))).id
            print(f"Job {job_id} submitted; its events:")
            async for _, event in client.event_messages(job_id, follow=True):
                print("  " + output.event_line(event), flush=True)
            info = to_pb(await client.get(job_id), pb.JobWithInfo)
            print()
            status = report_end(info)
        print("\nStopping the devstack.")
    return status


def main() -> int:
    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
