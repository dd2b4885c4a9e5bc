"""Every script in examples/ runs to completion against the bundled emulator.

The scripts are found by globbing, so a new example is run without touching
this file.  Each must exit 0 within the timeout and print something; the
ones listed in ``KEY_LINES`` must also print their key line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
TIMEOUT = 60.0

# A line (or part of one) each known example prints when it did its job.
KEY_LINES = {
    "custom_pipeline.py": "contained: crash-on-purpose died 2 times",
    "mirror_library.py": "second run: 0 downloaded, 42 already on disk",
    "progress_callback.py": "failed via callback: True; report says 1",
    "query_catalogue.py": "counts: 42 items, 42 downloaded, 0 pending, 1 missing",
}

pytestmark = [pytest.mark.timeout(TIMEOUT + 30), pytest.mark.usefixtures("no_leftover_processes")]


def test_examples_exist() -> None:
    assert SCRIPTS, f"no example scripts in {EXAMPLES}"
    missing = set(KEY_LINES) - {script.name for script in SCRIPTS}
    assert not missing, f"KEY_LINES names examples that do not exist: {sorted(missing)}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[script.name for script in SCRIPTS])
def test_example_runs(script: Path, tmp_path: Path) -> None:
    # A clean environment for veo3dl: the examples bring their own emulator
    # and credentials, and must not pick up a real account's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEO3DL_")}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, f"{script.name} exited {done.returncode}:\n{done.stderr}"
    assert done.stdout.strip(), f"{script.name} printed nothing"
    key = KEY_LINES.get(script.name)
    if key is not None:
        assert key in done.stdout, f"{script.name} did not print {key!r}:\n{done.stdout}"
    assert not list(tmp_path.iterdir()), f"{script.name} left files in its working directory"
