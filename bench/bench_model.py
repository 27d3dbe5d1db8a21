"""Model benchmarks: the wire messages (upb) against the SDK dataclasses (betterproto2), and the
Bacalhau job-file codec. Prints rates, per-operation medians and the upb/betterproto2 ratios: the reason
the services use the upb messages on the wire and in hot paths, and only the SDK and the CLI the
dataclasses (see "Repository layout and dependency rules" in docs/architecture.md).

Run with `make bench`.
"""

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import bacalhau_grpc.sdk.types.bacalhau.model.v1beta1 as sdk
from bacalhau_grpc.common.model import jobfile, pb

ROOT = Path(__file__).resolve().parents[1]
JOB_FILE = ROOT / "tests" / "data" / "bacalhau_v03_job.yaml"


def sample_job_with_events(events: int = 20) -> pb.Job:
    """The hand-written test job, with a run of events and shard states as a live job has."""
    job = jobfile.load_job(JOB_FILE.read_text())
    job.id = "92d5d4ee-3765-4f78-8353-623f5f26df08"
    for i in range(events):
        event = job.events.add(job_id=job.id, shard_index=i % 4, source_node_id=f"node-{i % 3}")
        event.event_name = pb.JobEventType.JOB_EVENT_TYPE_BID + i % 10
        event.event_time.GetCurrentTime()
        event.run_output.stdout = "hello\n" * 10
        event.run_output.exit_code = 0
        shard = job.state.nodes[f"node-{i % 3}"].shards[i % 4]
        shard.state = pb.JobStateType.JOB_STATE_TYPE_VERIFYING
        shard.verification_proposal = bytes(range(32))
    return job


def measure(fn: Callable[[], object], seconds: float = 1.0) -> tuple[float, float]:
    """Runs fn repeatedly for about `seconds`; returns (operations per second, median µs per op)."""
    batch, samples, spent = 1, [], 0.0
    while spent < seconds:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        elapsed = time.perf_counter() - start
        samples.append(elapsed / batch)
        spent += elapsed
        if elapsed < 0.01:
            batch *= 2
    median = statistics.median(samples)
    return 1 / median, median * 1e6


def report(name: str, fn: Callable[[], object]) -> float:
    rate, micros = measure(fn)
    print(f"  {name:<44} {rate:>12,.0f}/s  {micros:>10.1f} µs")
    return rate


def main() -> None:
    job = sample_job_with_events()
    wire = job.SerializeToString()
    sdk_job = sdk.Job.parse(wire)
    yaml_text = jobfile.dump_job(job, format="yaml")
    json_text = jobfile.dump_job(job, format="json")
    print(
        f"Job with {len(job.events)} events: {len(wire)} bytes on the wire, "
        f"{len(json_text)} bytes as JSON, {len(yaml_text)} as YAML\n"
    )

    print("wire encode/decode")
    pb_decode = report("upb  decode (Job.FromString)", lambda: pb.Job.FromString(wire))
    sdk_decode = report("betterproto2 decode (Job.parse)", lambda: sdk.Job.parse(wire))
    pb_encode = report("upb  encode (SerializeToString)", job.SerializeToString)
    sdk_encode = report("betterproto2 encode (bytes())", lambda: bytes(sdk_job))
    print(
        f"  ratio decode upb/betterproto2: {pb_decode / sdk_decode:.0f}x, "
        f"encode: {pb_encode / sdk_encode:.0f}x\n"
    )

    print("Bacalhau job files")
    report("load JSON → pb.Job", lambda: jobfile.load_job(json_text))
    report("load YAML → pb.Job", lambda: jobfile.load_job(yaml_text))
    report("dump pb.Job → JSON", lambda: jobfile.dump_job(job, format="json"))
    report("dump pb.Job → YAML", lambda: jobfile.dump_job(job, format="yaml"))


if __name__ == "__main__":
    main()
