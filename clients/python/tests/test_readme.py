"""The README's example is examples/quickstart.py, word for word, and it runs against the server;
a wheel built from the package carries the stubs its build generated."""

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent


def test_the_readme_shows_the_quickstart_example_as_it_is():
    readme = (PACKAGE / "README.md").read_text()
    shown = re.search(r"<!-- example:start -->\n```python\n(.*?)```\n<!-- example:end -->", readme, re.S)
    assert shown, "README.md has the example between its markers"
    assert shown.group(1) == (PACKAGE / "examples" / "quickstart.py").read_text()


def test_the_quickstart_example_creates_works_and_watches_a_job_to_100_percent(address, keys):
    env = {**os.environ, "RETRYD_ADDRESS": address, "RETRYD_API_KEY": keys["admin"], "PYTHONPATH": str(PACKAGE / "src")}
    run = subprocess.run(
        [sys.executable, str(PACKAGE / "examples" / "quickstart.py")], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(r"quickstart-\d+-\d+: 100% JOB_STATUS_COMPLETED", run.stdout.strip().splitlines()[-1])


def test_a_built_wheel_carries_the_generated_stubs(tmp_path):
    # --no-build-isolation: the build requirements (hatchling, grpcio-tools) are installed with
    # the test requirements, and the tests need no network.
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("retryd_client-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for stub in ("chunk_queue_pb2.py", "chunk_queue_pb2_grpc.py", "health_pb2.py", "scheduler_pb2_grpc.py", "__init__.py"):
        assert f"retryd/v1/{stub}" in names
    assert {"retryd/__init__.py", "retryd/auth.py", "retryd/worker.py"} <= names
