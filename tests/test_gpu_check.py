"""The prepared GPU check (``make gpu-check``) runs through on a CPU at its tiny size and writes every section."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_on_a_cpu_and_writes_its_report(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu-check.sh"), "--device", "cpu", "--out",
                           str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = (tmp_path / "gpu-check.md").read_text()
    assert "failed" not in report, report
    for heading in ("## Synthetic ceiling", "## Pre-training inputs", "## Fine-tuning mnist5k", "## Chain",
                    "## Targets"):
        assert heading in report, heading
    assert "| memory" in report and "| stream, tail on the device" in report and "| scratch |" in report
    assert "webdataset==1.0.2" in report and (tmp_path / "pretrain" / "curves.png").exists()
