"""`make demo`: read Bacalhau v0.3 job files through the model and show what the network would see.

Usage: python -m bacalhau_grpc.common.model.demo FILE [FILE ...]
Each file (flat seed shape or v0.3.15 nested shape, YAML or JSON) is summarised, its resources parsed
to numbers, and written back in the canonical flat shape as JSON. Bad files get one clear error line.
"""

import sys
from pathlib import Path

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import enums, jobfile, jobs, resources, version


def summary(job) -> list[str]:
    spec = job.spec
    usage = resources.parse_resource_usage_config(spec.resources, field_prefix="Spec.Resources")
    lines = [
        f"engine {enums.ENGINE.name(spec.engine)}, verifier {enums.VERIFIER.name(spec.verifier)}, "
        f"publisher {enums.PUBLISHER.name(spec.publisher)}",
        f"deal: concurrency {job.deal.concurrency}, confidence {job.deal.confidence}, "
        f"min bids {job.deal.min_bids}",
        f"resources: {resources.usage_string(usage)}",
        f"timeout: {spec.timeout:g} s",
    ]
    for volume in (*spec.inputs, *spec.outputs):
        source = enums.STORAGE_SOURCE_TYPE.name(volume.storage_source)
        lines.append(f"volume {source} {volume.cid or volume.url or volume.name} at {volume.path}")
    if spec.sharding.glob_pattern:
        lines.append(
            f"sharding: {spec.sharding.glob_pattern!r} under {spec.sharding.base_path or '/'}, "
            f"{spec.sharding.batch_size} per shard; first shard ID {jobs.get_shard_id(job.id or '<id>', 0)}"
        )
    return lines


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    info = version.build_version_info()
    print(f"bacalhau-grpc {info.git_version} ({info.git_commit[:8] or 'no git'}) {info.goos}/{info.goarch}")
    status = 0
    for name in argv:
        print(f"\n== {name}")
        try:
            job = jobfile.load_job(Path(name).read_bytes())
            print("\n".join(f"  {line}" for line in summary(job)))
            print(jobfile.dump_job(job, format="json"))
        except (OSError, InvalidArgumentError) as err:
            print(f"Error: {name}: {err}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
