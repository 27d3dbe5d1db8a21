"""The README's Python SDK example runs as written against a devstack and prints what the README says."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def sdk_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python SDK") :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_sdk_example_runs_as_written(devstack, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", sdk_example()],
        cwd=tmp_path,
        env=devstack.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    job_id = re.fullmatch(r"Job ID: ([a-f0-9-]{36})", lines[0]).group(1)
    events = [line.split()[0] for line in lines[1:-1]]
    assert events[0] == "CREATED" and events[-1] == "RESULTS_PUBLISHED", lines
    assert lines[-1] == "42"
    assert (tmp_path / f"job-{job_id[:8]}" / "combined_results" / "stdout").read_text() == "42\n"
