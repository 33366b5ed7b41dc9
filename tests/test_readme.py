"""The examples of the README and of the documentation site run as written, and the site builds.

Every ```sh and ```python block of README.md, then of each page of docs/ in the order of mkdocs.yml's
``nav``, runs, in the order written, in one scratch directory that
holds a copy of ``manifests/``, the Makefile and pyproject.toml, with this interpreter's ``bin``
first on PATH (what activating ``.venv`` does). The command words are the README's; only sizes
shrink, by setting the options in ``SMALL`` (replacing a value the README gives, appending one it
does not). A synopsis runs without its optional ``[...]`` parts, with the first of each ``a|b``
choice and the values of ``PLACEHOLDERS``. ``make TARGET`` is checked with ``make -n TARGET``, and
the ``.venv/bin/fracbuild`` lines it would run are run (small). Every command must exit 0 with
nothing on stderr that looks like a traceback or a warning.

A block that cannot run here is marked in its page by a comment on the line before it,
``<!-- readme-test: skip (REASON) -->``; its commands are still checked: their options must be
options of the command (``--help``), and pip's extras must exist in pyproject.toml. A command this
file does not know fails in a block that runs, with a message that says what to do.

The site itself is built with ``mkdocs build --strict`` (skipped where mkdocs is not installed: the
``docs`` extra), so a link to a missing page or anchor fails.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import forked_python
import pytest

# The blocks run in README order in one workspace: under pytest-xdist, all on one worker.
pytestmark = pytest.mark.xdist_group("readme")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
VENV_BIN = ".venv/bin/"

# Options set on each command so that a block runs in seconds: option -> value.
SMALL: dict[tuple[str, str], dict[str, str]] = {
    ("fracbuild", "render"): {"--classes": "4", "--size": "64"},
    ("trainer", "pretrain"): {"--samples": "32", "--batch-size": "16", "--workers": "0"},
    ("trainer", "finetune"): {"--epochs": "1", "--shots": "2", "--batch-size": "16", "--workers": "0"},
    ("trainer", "probe"): {"--epochs": "1", "--shots": "2", "--batch-size": "16", "--workers": "0"},
}
# Set only where the README gives a value (a fractal search's --classes would change its recipe).
SMALL_GIVEN: dict[tuple[str, str], dict[str, str]] = {
    ("fracbuild", "search"): {"--classes": "4"},
    ("fracbuild", "verify"): {"--deep": "1"},
}
# Set only where the README gives no value: one process starts faster than a pool.
SMALL_DEFAULTS: dict[tuple[str, str], dict[str, str]] = {("fracbuild", "render"): {"--jobs": "1"}}
PLACEHOLDERS = {"RECIPE": "manifests/1p-frac.json", "OUT_DIR": "shards/example"}
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
MARKER = re.compile(r"<!--\s*readme-test:")
LANGUAGES = {"sh": "sh", "bash": "sh", "shell": "sh", "console": "sh", "python": "python", "py": "python"}
TIMEOUT = 300


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    skip: str | None = None  # the reason, for a block that cannot run here
    problems: list[str] = field(default_factory=list)
    page: str = "README.md"  # relative to the checkout

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.language}{', skipped: ' + self.skip if self.skip else ''})"


def read_blocks(text: str, page: str = "README.md") -> list[Block]:
    """A page's shell and Python blocks, with the skip marker (if any) on the line before each."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        language = LANGUAGES.get(fence.group(2))
        if language:
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            block = Block(i + 1, language, "\n".join(lines[i + 1:end]), page=page)
            skip = SKIP.search(before)
            if skip:
                block.skip = skip.group("reason").strip()
            elif MARKER.search(before):
                block.problems.append(f"unknown marker {before.strip()!r}; the one marker is "
                                      "<!-- readme-test: skip (REASON) -->")
            blocks.append(block)
        i = end + 1
    return blocks


def site_pages() -> list[Path]:
    """The site's pages in the order of mkdocs.yml's ``nav`` (entries ``- Title: page.md``)."""
    nav = re.split(r"\n(?=\S)", (ROOT / "mkdocs.yml").read_text().split("\nnav:", 1)[1], maxsplit=1)[0]
    return [DOCS / name for name in re.findall(r"^\s+- [^:\n]+:\s*(\S+\.md)\s*$", nav, re.M)]


PAGES = [README, *site_pages()]
BLOCKS = [block for page in PAGES for block in read_blocks(page.read_text(), page.relative_to(ROOT).as_posix())]


# ---- shell lines: words, synopsis notation, the program --------------------------------------------

@dataclass
class Command:
    written: str  # the README's line
    words: list[str]  # as run: optional parts dropped, choices and placeholders resolved
    options: list[str]  # every option the line names, optional parts included
    env: dict[str, str]


def shell_lines(text: str) -> list[str]:
    """Lines with continuations joined (a backslash, or a synopsis' indented next line); blank and
    comment lines dropped."""
    lines: list[str] = []
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[:1].isspace() and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def parse(line: str) -> Command:
    words = shlex.split(line, comments=True)
    kept, options, depth = [], [], 0
    for word in words:
        opening = word.startswith("[")  # '[--classes L]': an optional part; '.[dask]' is a word
        inner = word[1:] if opening else word
        closing = inner.endswith("]") and inner.count("]") > inner.count("[")
        bare = word.strip("[]") if opening or closing else word
        if re.match(r"^--?[A-Za-z]", bare):
            options.append(bare.split("=")[0])
        depth += opening
        if depth == 0 and word != "...":
            kept.append(word)
        depth -= closing
    env = {}
    while kept and re.match(r"^[A-Za-z_]\w*=", kept[0]):
        key, _, value = kept.pop(0).partition("=")
        env[key] = value
    resolved = []
    for word in kept:
        if "|" in word and "://" not in word:
            word = word.split("|")[0]
        resolved.append(PLACEHOLDERS.get(word, word))
    return Command(line, resolved, options, env)


def program(words: list[str]) -> tuple[str, str | None, int]:
    """``(program, subcommand, index of the first argument)``: fracbuild, trainer, torchrun, make, pip,
    activate, venv, or "" for a command this file does not know."""
    if not words:
        return "", None, 0
    head = words[0].removeprefix(VENV_BIN)
    if head == "fracbuild":
        return "fracbuild", words[1] if len(words) > 1 else None, 2
    if head in ("python", "python3"):
        if words[1:3] == ["-m", "trainer"]:
            return "trainer", words[3] if len(words) > 3 else None, 4
        if words[1:3] == ["-m", "fracbuild"]:
            return "fracbuild", words[3] if len(words) > 3 else None, 4
        if words[1:3] == ["-m", "pip"]:
            return "pip", words[3] if len(words) > 3 else None, 4
        if words[1:3] == ["-m", "venv"]:
            return "venv", None, 3
        return "", None, 0
    if head == "torchrun":
        return "torchrun", None, 1
    if head in ("make", "pip", "pip3"):
        return head.rstrip("3"), words[1] if len(words) > 1 else None, 2
    if head in (".", "source") and len(words) == 2 and words[1].endswith("bin/activate"):
        return "activate", None, 2
    return "", None, 0


# ---- what --help offers ------------------------------------------------------------------------------

def click_options(command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        names.update(getattr(param, "opts", ()))
        names.update(getattr(param, "secondary_opts", ()))
    return names


@cache
def help_options(name: str, sub: str | None) -> set[str]:
    """The options ``name [sub] --help`` lists (from click's own records for fracbuild and trainer)."""
    if name in ("fracbuild", "trainer"):
        if name == "fracbuild":
            from fracbuild.cli import main
        else:
            from trainer.cli import main
        if sub is None or sub.startswith("-"):  # the group itself: fracbuild --help, --version
            return click_options(main) | {"--version"}
        if sub not in main.commands:
            raise AssertionError(f"{name} has no command {sub!r} (it has {', '.join(sorted(main.commands))})")
        return click_options(main.commands[sub])
    argv = {"torchrun": [str(BIN / "torchrun"), "--help"],
            "pip": [sys.executable, "-m", "pip", sub or "install", "--help"]}[name]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", out))


def extras() -> set[str]:
    """The extras pyproject.toml declares (the keys of its optional-dependencies table)."""
    text = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]", 1)[1]
    return set(re.findall(r"^([\w-]+)\s*=", text.split("\n[", 1)[0], re.M))


def check_syntax(command: Command) -> list[str]:
    """Problems with a line's options (and pip's extras); nothing is run."""
    words = shlex.split(command.written, comments=True)
    name, sub, start = program(command.words)
    if name in ("", "make", "activate", "venv"):
        return []
    if name == "torchrun":  # torchrun's options, then the trainer's after -m trainer SUB
        m = words.index("-m") if "-m" in words else len(words)
        own = [w for w in words[1:m] if w.startswith("-")]
        problems = [f"torchrun has no option {o}" for o in own if o.split("=")[0] not in help_options("torchrun", None)]
        rest = parse(" ".join(shlex.quote(w) for w in ["python", *words[m:]]))
        return problems + check_syntax(rest)
    if name == "pip":
        problems = []
        for word in words:
            for extra in re.findall(r"\[([\w,-]+)\]", word):
                problems += [f"pyproject.toml has no extra [{e}]" for e in extra.split(",") if e not in extras()]
        offered = help_options("pip", sub)
        return problems + [f"pip {sub} has no option {o}" for o in command.options if o not in offered]
    offered = help_options(name, sub)
    own = command.options[sum(w.startswith("-") for w in command.words[:start]):]  # not python's -m
    return [f"{name} {sub} has no option {o}" for o in own if o not in offered]


# ---- running -----------------------------------------------------------------------------------------

def small(key: tuple[str, str | None], words: list[str], start: int) -> list[str]:
    """``words`` with ``SMALL``'s options set, ``SMALL_GIVEN``'s where given, ``SMALL_DEFAULTS``' where not."""
    words = list(words)
    for option, value in {**SMALL.get(key, {}), **SMALL_GIVEN.get(key, {})}.items():
        if option in words[start:]:
            words[words.index(option, start) + 1] = value
        elif option in SMALL.get(key, {}):
            words += [option, value]
    for option, value in SMALL_DEFAULTS.get(key, {}).items():
        if option not in words[start:]:
            words += [option, value]
    return words


def environment(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("COLUMNS", None)
    return {**env, **extra}


def execute(argv: list[str], cwd: Path, env: dict[str, str], written: str) -> None:
    if argv[0] == sys.executable:  # python -m trainer, or a page's Python block: forked with torch loaded
        result = forked_python.run(argv[1:], cwd=cwd, env=environment(env), timeout=TIMEOUT)
    else:
        result = subprocess.run(argv, cwd=cwd, env=environment(env), capture_output=True, text=True, timeout=TIMEOUT)
    noise = [line for line in result.stderr.splitlines() if re.search(r"Traceback|Warning", line)]
    assert result.returncode == 0 and not noise, (
        f"{written!r} ran as {shlex.join(argv)!r}: exit {result.returncode}\n"
        f"stdout: {result.stdout[-1500:]}\nstderr: {result.stderr[-3000:]}")


def run_line(command: Command, cwd: Path) -> None:
    name, sub, start = program(command.words)
    if name == "activate":
        return  # the commands already run with this interpreter's bin first on PATH
    if name in ("torchrun", "pip", "venv"):
        raise AssertionError(f"{command.written!r}: {name} is not run by the README test (it needs GPUs or changes "
                             "the environment); mark its block <!-- readme-test: skip (REASON) -->")
    if name == "":
        raise AssertionError(f"{command.written!r}: the README test does not know this command; teach "
                             "tests/test_readme.py to run it, or mark its block <!-- readme-test: skip (REASON) -->")
    unknown = [w for w in command.words[start:] if re.fullmatch(r"[A-Z][A-Z_]+", w)]
    assert not unknown, f"{command.written!r}: placeholder {unknown[0]} has no value in PLACEHOLDERS"
    if name == "make":
        dry = subprocess.run(["make", "-n", *command.words[1:]], cwd=cwd, capture_output=True, text=True,
                             timeout=60)
        assert dry.returncode == 0, f"{command.written!r}: make -n fails: {dry.stderr.strip()}"
        for line in dry.stdout.splitlines():
            if line.startswith(VENV_BIN + "fracbuild "):
                run_line(parse(line), cwd)
        return
    head = [str(BIN / "fracbuild")] if name == "fracbuild" else [sys.executable, "-m", "trainer"]
    argv = head + small((name, sub), command.words, start)[start - 1:]
    execute(argv, cwd, command.env, command.written)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A scratch checkout: the recipes and the files make reads; datasets and runs land here."""
    where = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "manifests", where / "manifests")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, where / name)
    return where


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.page}:{b.line}" for b in BLOCKS])
def test_readme_block(block: Block, workspace: Path):
    assert not block.problems, f"{block}: {block.problems[0]}"
    if block.language == "python":
        assert not block.skip or block.text.strip(), block
        compile(block.text, str(block), "exec")  # its syntax, even where it cannot run
        if not block.skip:
            script = workspace / f"{Path(block.page).stem}_{block.line}.py"
            script.write_text(block.text)
            execute([sys.executable, script.name], workspace, {}, f"the Python block at {block}")
        return
    commands = [parse(line) for line in shell_lines(block.text)]
    problems = [f"{c.written!r}: {p}" for c in commands for p in check_syntax(c)]
    assert not problems, f"{block}: " + "; ".join(problems)
    if block.skip:
        return
    for command in commands:
        run_line(command, workspace)


def test_every_block_is_found_and_has_commands():
    assert len(BLOCKS) >= 8 and {b.language for b in BLOCKS} == {"sh", "python"}
    for block in BLOCKS:
        assert block.text.strip(), f"{block} is empty"
    assert {b.page for b in BLOCKS} >= {"README.md", "docs/commands.md", "docs/training.md"}


def test_every_page_of_docs_is_in_the_site_and_its_blocks_are_run():
    """A page left out of mkdocs.yml's nav would be neither in the site's navigation nor run here."""
    pages = site_pages()
    assert sorted(pages) == sorted(DOCS.glob("*.md")) and len(set(pages)) == len(pages)
    assert read_blocks("```sh\nfracbuild info x\n```\n", "docs/x.md")[0].page == "docs/x.md"


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**environment({}), "NO_MKDOCS_2_WARNING": "1"}  # material's notice of its successor, not a problem
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, env=env, capture_output=True, text=True, timeout=TIMEOUT)


needs_mkdocs = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None
                                  or importlib.util.find_spec("material") is None,
                                  reason="mkdocs and its material theme are the docs extra: pip install '.[docs]'")


@needs_mkdocs
def test_the_site_builds_with_no_warning(tmp_path):
    result = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert result.returncode == 0 and not warnings, result.stderr[-3000:]
    assert (tmp_path / "site" / "training" / "index.html").exists()


@needs_mkdocs
def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    with open(tmp_path / "docs" / "sharing.md", "a") as page:
        page.write("\nSee [the missing page](missing.md) and [a missing section](training.md#no-such-section).\n")
    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "missing.md" in result.stderr and "no-such-section" in result.stderr, result.stderr[-3000:]


def test_the_default_recipe_is_what_its_search_command_finds(workspace):
    """docs/recipes.md: manifests/1p-frac.json is what ``fracbuild search --sigma 3.5 --seed 0`` finds today."""
    from fracbuild.recipe import load_recipe

    found = workspace / "1p-frac.json"
    if not found.exists():
        pytest.skip("the docs/recipes.md block that writes 1p-frac.json has not run (run the whole file)")
    assert load_recipe(found) == load_recipe(ROOT / "manifests" / "1p-frac.json")


def test_a_wheel_built_from_the_checkout_holds_both_packages_and_the_command(tmp_path):
    """docs/commands.md: ``pip wheel . --no-deps -w dist`` makes the wheel a user installs elsewhere."""
    import zipfile

    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for package in ("fracbuild", "trainer"):  # a copy: building writes build/ and egg-info beside the sources
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", *isolation, "-w", "dist", "-q"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("fracbuild-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for package in ("fracbuild", "trainer")
               for p in (ROOT / package).rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "fracbuild = fracbuild.cli:main" in zipfile.ZipFile(wheel).read(info).decode()


@pytest.mark.parametrize("line,words,options", [
    ("fracbuild render R -o O [--classes L] [--draw point|patch] [--jobs J]", ["fracbuild", "render", "R", "-o", "O"],
     ["-o", "--classes", "--draw", "--jobs"]),
    ("fracbuild search --source noise-gaussian|noise-uniform -o x.json  # a comment",
     ["fracbuild", "search", "--source", "noise-gaussian", "-o", "x.json"], ["--source", "-o"]),
    ("fracbuild render RECIPE -o OUT_DIR [--address ray://HEAD:10001]",
     ["fracbuild", "render", "manifests/1p-frac.json", "-o", "shards/example"], ["-o", "--address"]),
    ("pip install '.[dask]'", ["pip", "install", ".[dask]"], []),
])
def test_synopsis_lines_parse_into_the_command_that_runs(line, words, options):
    command = parse(line)
    assert (command.words, command.options) == (words, options)


def test_small_sizes_replace_and_add_options():
    words = ["fracbuild", "render", "r.json", "-o", "d", "--classes", "100", "--jobs", "2"]
    assert small(("fracbuild", "render"), words, 2) == [
        "fracbuild", "render", "r.json", "-o", "d", "--classes", "4", "--jobs", "2", "--size", "64"]
    search = ["fracbuild", "search", "--sigma", "3.5", "-o", "r.json"]
    assert small(("fracbuild", "search"), search, 2) == search
    assert small(("fracbuild", "search"), [*search, "--classes", "1000"], 2) == [*search, "--classes", "4"]


def test_an_unknown_command_and_an_unknown_option_fail_clearly(workspace):
    with pytest.raises(AssertionError, match="does not know this command"):
        run_line(parse("curl https://example.org"), workspace)
    assert check_syntax(parse("fracbuild render r.json -o d [--colour red]")) == ["fracbuild render has no option "
                                                                                  "--colour"]
    assert check_syntax(parse("pip install '.[gpu]'")) == ["pyproject.toml has no extra [gpu]"]
    assert check_syntax(parse("fracbuild --help")) == check_syntax(parse("python -m trainer --version")) == []
    blocks = read_blocks("<!-- readme-test: maybe -->\n```sh\nfracbuild info x\n```\n")
    assert blocks[0].problems and "unknown marker" in blocks[0].problems[0]


def test_the_reference_the_project_cites_is_its_own():
    """Code and docs cite docs/reference.md, never a file outside the project; the project paths that the
    reference and the README name exist (links between the site's pages are checked by its strict build)."""
    cited = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if p.suffix in (".py", ".md", ".toml")
             and not {".venv", ".git", "node_modules"} & set(p.relative_to(ROOT).parts)
             and "REFERENCE.md" in p.read_text(errors="replace") and p.name != "test_readme.py"]
    assert cited == []
    reference = (ROOT / "docs" / "reference.md").read_text()
    named = set(re.findall(r"`((?:manifests|trainer|fracbuild|docs|tests)/[\w./-]+)`", reference))
    named |= set(re.findall(r"\]\(((?:docs|experiments|manifests)/[^)#\s]+)\)", README.read_text()))
    assert "docs/reference.md" in named and [p for p in sorted(named) if not (ROOT / p).exists()] == []
