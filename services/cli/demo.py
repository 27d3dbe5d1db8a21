"""`make demo`: a whole network on this machine, one job through its whole lifecycle.

Starts a devstack (the verifier, the requester and three compute nodes, each its own OS process on a
free 127.0.0.1 port), submits a Bacalhau v0.3 job file that asks three nodes to run the job and the
deterministic verifier to compare their results, prints every event as it happens and the verified
result, then stops the devstack.
"""

import asyncio
import sys

from bacalhau.requester.v1 import requester_service_pb2 as rpb
from bacalhau.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.cli import output
from bacalhau_grpc.cli.devstack import Devstack
from bacalhau_grpc.cli.jobs import client_key, report_end, watch_events
from bacalhau_grpc.common.channels import call, open_channel
from bacalhau_grpc.common.model import jobfile

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
        job = jobfile.load_job(JOB_FILE)
        print("\nSubmitting this Bacalhau job file:\n" + JOB_FILE)
        async with open_channel(stack.requester_address) as channel:
            stub = rgrpc.RequesterServiceStub(channel)
            request = client_key().signed_submit_request(job)  # signed with your key, as `create` does
            job_id = (await call(stub.SubmitJob, request)).job.id
            print(f"Job {job_id} submitted; its events:")
            async for event in watch_events(stub, stack.requester_address, job_id, 10.0):
                print("  " + output.event_line(event), flush=True)
            info = (await call(stub.GetJob, rpb.GetJobRequest(job_id=job_id))).job
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
