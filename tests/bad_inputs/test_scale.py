"""A million-row CSV whose images are absent: exit 2 quickly, in bounded memory, naming the count and first rows."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TRAIN_CSV

N_ROWS = 1_000_000
MAX_SECONDS = 30
MAX_RSS_BYTES = int(1.5 * 2**30)

# Runs the CLI as a child and reports the child's peak RSS (ru_maxrss is KiB on Linux) and wall time.
_MEASURE = """
import json, resource, subprocess, sys, time
t0 = time.monotonic()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": proc.returncode, "seconds": time.monotonic() - t0, "stderr": proc.stderr[-4000:],
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


@pytest.mark.slow
def test_million_rows_without_images_exit_2_fast_and_small(ws: Path) -> None:
    with open(ws / TRAIN_CSV, "w") as fh:
        fh.write("input_path,golden_path,label,object_name,boardname\n")
        fh.writelines(f"big/test,big/golden,{'missing' if i % 7 == 0 else 'PASS'},C{i}@1,B{i // 1000}\n"
                      for i in range(N_ROWS))
    out = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "deftpipe", "validate-workspace",
                          str(ws)], capture_output=True, text=True, timeout=5 * MAX_SECONDS,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    m = json.loads(out.stdout)
    assert m["rc"] == 2, m["stderr"]
    assert "Traceback" not in m["stderr"]
    lines = ", ".join(str(n) for n in range(2, 22))
    assert (f"error: {TRAIN_CSV}: {N_ROWS} row(s) with missing image files (lines {lines} and "
            f"{N_ROWS - 20} more); e.g. line 2 expects") in m["stderr"]
    assert m["seconds"] < MAX_SECONDS, m
    assert m["maxrss_kib"] * 1024 < MAX_RSS_BYTES, m
