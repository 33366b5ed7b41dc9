"""No import cycle in the project, counting every import, those deferred into a function too: a cycle hidden there
still ties two rooms. The packages import by dotted name; the benchmark scripts import each other by bare name."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_names(folder: Path) -> dict[str, Path]:
    """Every module under ``folder`` by the name it is imported by: dotted from the root for a package, the file's
    stem for a folder of scripts (no ``__init__.py``)."""
    if (folder / "__init__.py").exists():
        names = {}
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder.parent).with_suffix("").parts
            names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
        return names
    return {path.stem: path for path in folder.glob("*.py")}


def imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` (module ``module``) imports anywhere."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            stem = ".".join([*base, *(node.module.split(".") if node.module else [])])
            # ``from X import a``: the module X.a where there is one, else a name of X
            found |= {f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {name for name in found if name in known and name != module}


def cycles(folder: Path) -> list[tuple[str, str]]:
    names = module_names(folder)
    graph = {m: imports(path, m, set(names)) for m, path in names.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(d == goal or (d not in seen and not seen.add(d) and reaches(d, goal, seen)) for d in graph[start])

    return sorted((a, b) for a in graph for b in graph[a] if reaches(b, a, set()))


@pytest.mark.parametrize("folder", ["fracbuild", "trainer", "benchmarks"])
def test_no_import_cycle_even_inside_functions(folder):
    assert cycles(ROOT / folder) == []


def test_a_cycle_through_a_deferred_import_is_found(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "a.py").write_text("from b import X\n")
    (tmp_path / "scripts" / "b.py").write_text("X = 1\n\n\ndef later():\n    import a\n")
    (tmp_path / "scripts" / "c.py").write_text("import a\n")
    assert cycles(tmp_path / "scripts") == [("a", "b"), ("b", "a")]
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for path, text in {"__init__.py": "", "top.py": "def f():\n    from .sub import low\n",
                       "sub/__init__.py": "", "sub/low.py": "from .. import top\n"}.items():
        (package / path).write_text(text)
    assert cycles(package) == [("pkg.sub.low", "pkg.top"), ("pkg.top", "pkg.sub.low")]


# torch, timm and torchvision made unimportable: the command fails at once if it reaches for them.
WITHOUT_TORCH = ("import sys, runpy\n"
                 "for name in ('torch', 'timm', 'torchvision'):\n"
                 "    sys.modules[name] = None\n"
                 "sys.argv = ['trainer', *sys.argv[1:]]\n"
                 "runpy.run_module('trainer', run_name='__main__')\n")


@pytest.mark.parametrize("argv,code,says", [
    (["--help"], 0, "pretrain"),
    (["pretrain", "--help"], 0, "--mixup"),
    (["finetune", "--help"], 0, "--dataset"),
    (["experiment", "--table", "9", "--size", "cpu", "--dry-run"], 0, "# estimate:"),
    (["pretrain", "--data", "d", "--out", "o", "--mixup", "-1"], 1, "Error: --mixup must be >= 0, got -1.0"),
    (["probe", "--init", "scratch", "--blocks", "1", "--dataset", "digits", "--out", "o", "--epochs", "0"], 1,
     "Error: --epochs must be positive"),
])
def test_the_trainer_command_line_answers_help_and_bad_values_without_torch(argv, code, says, tmp_path):
    """``python -m trainer --help`` and a bad value take a fraction of a second, not the seconds torch and timm
    take to load; the run itself loads them."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *argv], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == code, done.stderr[-2000:]
    assert says in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())  # nothing made


def test_a_run_does_load_torch_through_the_same_entry(tmp_path):
    """The blocker above is real: a command that runs reaches torch and fails on it."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "pretrain", "--data", "d", "--out", "o"],
                          cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=60)
    assert done.returncode != 0 and "torch" in done.stderr
