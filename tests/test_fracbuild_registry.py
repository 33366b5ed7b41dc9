"""A source is one module: the registry is the only list of source names, and the layers import downwards."""

import ast
from pathlib import Path

import click
import pytest

from fracbuild.cli import main
from fracbuild.sources import SOURCES, source_module

PACKAGE = Path(__file__).resolve().parents[1] / "fracbuild"
HOOKS = ("validate", "new_recipe", "describe", "summary", "create")


def imports(path: Path) -> set[str]:
    """The fracbuild modules ``path`` imports, as dotted names (``fracbuild.recipe``, ...)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1] if parts[-1] != "__init__" else parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, *(node.module.split(".") if node.module else ())))
            if node.module:
                found.add(module)
            else:  # ``from . import x``: a submodule, or a name from the package's __init__
                folder = PACKAGE.parent.joinpath(*module.split("."))
                found |= {f"{module}.{a.name}" if (folder / f"{a.name}.py").exists() else module for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {name for name in found if name.startswith("fracbuild")}


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_module_has_the_protocol(source):
    module = source_module(source)
    assert all(callable(getattr(module, hook, None)) for hook in HOOKS)
    assert {"perturb", "render"} <= set(module.DEFAULTS[source])
    assert {"classes", "seed"} <= set(module.DEFAULTS[source]["perturb"])
    assert {"size", "instances", "shard_size"} <= set(module.DEFAULTS[source]["render"])
    assert isinstance(module.OPTIONS[source], set)


def test_the_command_line_offers_the_registry():
    search = main.commands["search"]
    option = next(p for p in search.params if p.name == "source")
    assert isinstance(option.type, click.Choice) and list(option.type.choices) == list(SOURCES)


def test_no_source_module_imports_the_recipe_layer_or_the_registry():
    """Sources sit below ``recipe.py`` (which dispatches to them) and beside their registry."""
    above = {"fracbuild.recipe", "fracbuild.rendering", "fracbuild.dataset", "fracbuild.cli", "fracbuild.sources"}
    for path in sorted((PACKAGE / "sources").glob("*.py")):
        if path.name != "__init__.py":
            assert not imports(path) & above, (path.name, imports(path) & above)


def test_the_bottom_layers_import_no_source_and_no_recipe():
    for name in ("checks.py", "jsonfile.py", "kernels.py", "ifs.py", "errors.py"):
        assert not {m for m in imports(PACKAGE / name) if m.startswith(("fracbuild.sources", "fracbuild.recipe"))}


def test_the_command_line_builds_its_options_without_numpy():
    """fracbuild.settings holds the choice lists so that ``fracbuild --help`` never waits for numpy and numba."""
    import subprocess
    import sys

    assert not {m for m in imports(PACKAGE / "settings.py") if m.startswith("fracbuild")}
    loaded = subprocess.run([sys.executable, "-c", "import sys, fracbuild.cli; print(sorted(sys.modules))"],
                            capture_output=True, text=True, check=True).stdout
    assert "'numpy'" not in loaded and "'numba'" not in loaded
