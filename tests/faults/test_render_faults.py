"""Renders killed at random moments (kill -9 of the parent, of one worker, SIGTERM to the parent or its
process group) and a file-size limit met mid-shard: running the same command again gives the shards of an
uninterrupted render, byte for byte, and no temporary file is left."""

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import trials

from fracbuild.dataset import verify
from fracbuild.rendering import render
from fracbuild.rundir import JOURNAL

# Under pytest-xdist, on one worker: the reference render (a module fixture) is made once.
pytestmark = pytest.mark.xdist_group("faults-render")


def shard_bytes(out_dir):
    return {p.name: p.read_bytes() for p in sorted(out_dir.glob("*.tar"))}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A recipe of 60 shards of 4 small images, its command, and the shards of an uninterrupted render."""
    cmd, reference, _ = rendered(tmp_path_factory, "render-faults", classes=240, size=64, points=20000, shard_size=4)
    return cmd, reference


@pytest.fixture(scope="module")
def small_job(tmp_path_factory):
    """A recipe of 48 one-image shards, whose manifest is larger than any shard or journal: its
    command, the shards of an uninterrupted render, and that render's directory."""
    return rendered(tmp_path_factory, "render-faults-small", classes=48, size=16, points=2000, shard_size=1)


def rendered(tmp_path_factory, name: str, *, classes: int, **render_settings):
    """The shipped 1p-frac recipe shrunk as given: the command that renders it, the shards of an uninterrupted
    render, and that render's directory."""
    from fracbuild.recipe import load_recipe

    root = tmp_path_factory.mktemp(name)
    recipe = load_recipe(os.path.join(os.path.dirname(__file__), "..", "..", "manifests", "1p-frac.json"))
    recipe["perturb"]["classes"] = classes
    recipe["render"].update(render_settings)
    (root / "r.json").write_text(json.dumps(recipe))
    render(recipe, root / "ref", jobs=1, progress=False, preview=False)
    cmd = [sys.executable, "-m", "fracbuild", "render", str(root / "r.json"), "--jobs", "2", "--no-preview"]
    return cmd, shard_bytes(root / "ref"), root / "ref"


def journal_bytes(ref) -> int:
    """The size of the journal of a complete render of ``ref``'s recipe (its lines' order aside)."""
    m = json.loads((ref / "manifest.json").read_text())
    lines = [{"recipe": m["recipe"]}, *({"shard": i, **r} for i, r in enumerate(m["shards"]))]
    return sum(len(json.dumps(line)) + 1 for line in lines)


def failed_at_the_manifest(run, out, reason: str) -> bool:
    """Failed in one line that names manifest.json and ``reason``, leaving no temporary file."""
    lines = run.stderr.strip().splitlines()
    return (run.returncode == 1 and len(lines) == 1 and str(out / "manifest.json") in lines[0]
            and reason in lines[0] and not [p for p in out.iterdir() if p.name.endswith(".tmp")])


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (none once it is gone); a thread listed may end before its file is read."""
    out = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie nobody reaps has stopped: it holds no file, does no work)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def seconds_to_go(pids: list[int], most: float) -> float:
    """Seconds until every one of ``pids`` stopped running (``inf`` if some still ran after ``most``)."""
    start = time.time()
    while any(running(p) for p in pids):
        if time.time() - start > most:
            return float("inf")
        time.sleep(0.02)
    return time.time() - start


#: Seconds the slowest worker of each kill -9 of the parent took to go, for the report.
ORPHAN_SECONDS: list[float] = []


def where(backend: str) -> str:
    """A backend's part of a trial's seed: loky's trials land where they did before the fork backend."""
    return "" if backend == "loky" else f"/{backend}"


def wait_for_shards(out, proc, n: int) -> None:
    journal = out / JOURNAL
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) > n:
            return
        time.sleep(0.01)


def survives(cmd, out, reference) -> tuple[bool, int]:
    """Run the same command again; (shards identical to the reference and no temporary file, shards lost)."""
    again = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True, timeout=300)
    got = shard_bytes(out)
    lost = sum(got.get(name) != data for name, data in reference.items())
    clean = not [p for p in out.iterdir() if p.name.startswith(".")]
    return again.returncode == 0 and lost == 0 and clean and verify(out) == [], lost


@pytest.mark.parametrize("backend", ["fork", "loky"])
@pytest.mark.parametrize("victim", ["parent", "worker"])
def test_kill_9_at_a_random_moment(job, tmp_path, tally, victim, backend):
    cmd, reference = job
    cmd = [*cmd, "--backend", backend]
    failures = []
    for t, rng in enumerate(trials(f"render/kill/{victim}{where(backend)}")):
        out = tmp_path / str(t)
        err_file = tmp_path / f"{t}.err"
        with open(err_file, "w") as err_out:  # a file, not a pipe: orphaned workers may keep a pipe open
            proc = subprocess.Popen([*cmd, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=err_out,
                                    start_new_session=True)
        wait_for_shards(out, proc, rng.randrange(1, 40))
        time.sleep(rng.uniform(0, 0.05))
        if victim == "parent":
            workers = children(proc.pid)  # the resource trackers too: nothing may outlive the render
            os.kill(proc.pid, signal.SIGKILL)
        else:  # one of its workers (the resource tracker writes nothing, killing it proves nothing)
            workers = render_workers(proc.pid)
            if workers:
                os.kill(rng.choice(workers), signal.SIGKILL)
        proc.wait(timeout=300)
        err = err_file.read_text()
        # A worker's death ends the render with one line (or it finished first); nothing else on stderr.
        clean_exit = victim == "parent" or "Traceback" not in err
        orphans = None
        if victim == "parent":  # its workers follow it within seconds, not loky's 300 s idle timeout
            orphans = seconds_to_go(workers, 10)
            ORPHAN_SECONDS.append(orphans)
            print(f"kill -9 of the parent, trial {t}: its {len(workers)} children gone in {orphans:.2f} s")
            clean_exit = orphans <= 10
        deadline = time.time() + 10  # orphaned workers may finish their shard; then they are stopped
        while time.time() < deadline:
            try:
                os.killpg(proc.pid, 0)
                time.sleep(0.1)
            except ProcessLookupError:
                break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        ok, lost = survives(cmd, out, reference)
        tally(f"render: kill -9 of the {victim} ({backend})").record(ok and clean_exit, lost)
        if not (ok and clean_exit):
            failures.append((t, lost, orphans, err[-1500:]))
    if victim == "parent":
        print(f"kill -9 of the parent: the slowest children took {max(ORPHAN_SECONDS):.2f} s to go")
    assert not failures, failures


def test_file_size_limit_mid_shard(job, tmp_path, tally):
    cmd, reference = job
    sizes = sorted(len(b) for b in reference.values())
    failures = []
    for t, rng in enumerate(trials("render/fsize")):
        out = tmp_path / str(t)
        first = subprocess.run([*cmd, "-o", str(out)], capture_output=True, timeout=300)
        assert first.returncode == 0
        # Some shards lost, then a render under a file-size limit smaller than a shard: it fails mid-shard.
        lost_before = rng.sample(sorted(out.glob("*.tar")), rng.randrange(1, 10))
        for p in lost_before:
            p.unlink()
        (out / "manifest.json").unlink()
        kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
        limit = rng.randrange(4096, sizes[0])

        def limited(limit=limit):
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        failed = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True, timeout=300,
                                preexec_fn=limited)
        lines = failed.stderr.strip().splitlines()
        one_line = failed.returncode == 1 and len(lines) == 1 and "File too large" in lines[0]
        untouched = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == kept
        no_tmp = not list(out.glob(".*.tmp"))
        ok, lost = survives(cmd, out, reference)
        survived = one_line and untouched and no_tmp and ok
        tally("render: file-size limit mid-shard").record(survived, lost)
        if not survived:
            failures.append((t, one_line, untouched, no_tmp, ok, failed.stderr[-1500:]))
    assert not failures, failures


def test_two_renders_into_one_directory(job, tmp_path, tally):
    cmd, reference = job
    failures = []
    for t, rng in enumerate(trials("render/two-at-once")):
        out = tmp_path / str(t)
        first = subprocess.Popen([*cmd, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0, 0.5))
        after = first.poll() is not None  # then both may finish: they never overlapped
        second = subprocess.Popen([*cmd, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
        runs = [(p.wait(timeout=300), p.stderr.read().strip().splitlines()) for p in (first, second)]
        for p in (first, second):
            p.stderr.close()
        codes = sorted(code for code, _ in runs)
        refused = [lines for code, lines in runs if code == 1]
        # Refused, in one line that names the directory: not failed mid-way for having been overrun.
        one_refused = (codes == [0, 1] and len(refused[0]) == 1
                       and f"{out} is being rendered by another process" in refused[0][0])
        got = shard_bytes(out)
        lost = sum(got.get(name) != data for name, data in reference.items())
        clean = not [p for p in out.iterdir() if p.name.startswith(".")]
        survived = (one_refused or (after and codes == [0, 0])) and lost == 0 and clean and verify(out) == []
        tally("render: two renders into one directory").record(survived, lost)
        if not survived:
            failures.append((t, [(code, lines[-1:]) for code, lines in runs], lost, clean))
    assert not failures, failures


def crash_state(out, complete, reference, rng) -> str:
    """Write into ``out`` what a power loss at a random shard may leave of the render in ``complete``,
    given that files are fsynced before their rename and journal lines as they come: never a renamed
    file with data missing, but a rename or a journal line lost, a line torn. Returns what it left."""
    manifest = json.loads((complete / "manifest.json").read_text())
    records = [{"shard": i, **r} for i, r in enumerate(manifest["shards"])]
    k = rng.randrange(len(records))
    state = rng.choice(["written, not renamed", "renamed, not recorded", "its line torn", "manifest half-written"])
    if state == "manifest half-written":
        k = len(records)
    out.mkdir()
    for r in records[:k]:
        (out / r["file"]).write_bytes(reference[r["file"]])
    lines = [json.dumps({"recipe": manifest["recipe"]}), *(json.dumps(r) for r in records[:k])]
    journal = "".join(line + "\n" for line in lines)
    if state == "manifest half-written":  # timm's index is written first, then the manifest
        (out / "_info.json").write_bytes((complete / "_info.json").read_bytes())
        text = (complete / "manifest.json").read_bytes()
        (out / f".manifest.json.{rng.randrange(2, 1 << 22)}.tmp").write_bytes(text[:rng.randrange(len(text))])
    else:
        name = records[k]["file"]
        if state == "written, not renamed":
            (out / f".{name}.{rng.randrange(2, 1 << 22)}.tmp").write_bytes(reference[name])
        else:
            (out / name).write_bytes(reference[name])
        if state == "its line torn":
            line = json.dumps(records[k])
            journal += line[:rng.randrange(1, len(line))]
        if k + 1 < len(records) and rng.random() < 0.5:  # the other worker's shard, half-written
            other = records[k + 1]["file"]
            (out / f".{other}.{rng.randrange(2, 1 << 22)}.tmp").write_bytes(
                reference[other][:rng.randrange(len(reference[other]))])
    (out / JOURNAL).write_text(journal)
    return f"{state} at shard {k}"


def test_crash_between_write_and_rename(job, tmp_path, tally):
    cmd, reference = job
    complete = tmp_path / "complete"
    assert subprocess.run([*cmd, "-o", str(complete)], capture_output=True, timeout=300).returncode == 0
    failures = []
    for t, rng in enumerate(trials("render/crash-before-rename")):
        out = tmp_path / str(t)
        state = crash_state(out, complete, reference, rng)
        # The shards the journal records are kept as they are, the rest rendered again.
        recorded = [json.loads(line)["file"] for line in (out / JOURNAL).read_text().splitlines()[1:]
                    if line.endswith("}")]
        kept = {name: (out / name).stat().st_mtime_ns for name in recorded}
        ok, lost = survives(cmd, out, reference)
        untouched = {name: (out / name).stat().st_mtime_ns for name in recorded} == kept
        tally("render: crash between write and rename").record(ok and untouched, lost)
        if not (ok and untouched):
            failures.append((t, state, lost, untouched, sorted(p.name for p in out.iterdir())))
    assert not failures, failures


def test_file_size_limit_during_the_manifest_write(small_job, tmp_path, tally):
    cmd, reference, ref = small_job
    manifest = (ref / "manifest.json").stat().st_size
    least = max(journal_bytes(ref), (ref / "_info.json").stat().st_size, *map(len, reference.values()))
    assert least < manifest, "the recipe must make the manifest the largest file"
    failures = []
    for t, rng in enumerate(trials("render/fsize-manifest")):
        out = tmp_path / str(t)
        limit = rng.randrange(least + 1, manifest)
        # A new render, or one over a complete dataset of the same recipe (its manifest must survive).
        over = rng.random() < 0.5
        if over:
            shutil.copytree(ref, out)
        before = (ref / "manifest.json").read_bytes()

        def limited(limit=limit):
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        failed = subprocess.run([*cmd, "-o", str(out), *(["--force"] if over else [])], capture_output=True,
                                text=True, timeout=300, preexec_fn=limited)
        one_line = failed_at_the_manifest(failed, out, "File too large")
        intact = shard_bytes(out) == reference
        if over:  # the dataset as it was: its manifest, whole, and nothing to resume from
            kept = (out / "manifest.json").read_bytes() == before and not (out / JOURNAL).exists()
            kept = kept and verify(out) == []
        else:
            kept = not (out / "manifest.json").exists() and (out / JOURNAL).exists()
        ok, lost = survives(cmd, out, reference)
        survived = one_line and intact and kept and ok
        tally("render: file-size limit during the manifest write").record(survived, lost)
        if not survived:
            failures.append((t, limit, over, one_line, intact, kept, ok, failed.stderr[-500:]))
    assert not failures, failures


def test_disk_full_during_the_manifest_write(small_job, tmp_path, tally):
    cmd, reference, ref = small_job
    page = os.sysconf("SC_PAGE_SIZE")  # tmpfs counts whole pages

    def pages(n: int) -> int:
        return -(-n // page) * page

    manifest = (ref / "manifest.json").stat().st_size
    # What the render holds when it starts the manifest: shards, the journal, timm's index.
    held = sum(pages(len(b)) for b in reference.values()) + pages(journal_bytes(ref))
    held += pages((ref / "_info.json").stat().st_size)
    failures = []
    for t, rng in enumerate(trials("render/enospc-manifest")):
        disk = tmp_path / str(t)
        disk.mkdir()
        free = rng.randrange(0, pages(manifest) - page + 1)  # room for all but the manifest's last page
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={held + free}", "tmpfs", str(disk)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill: {mounted.stderr.strip()}")
        try:
            out = disk / "out"
            failed = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True, timeout=300)
            left = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            one_line = failed_at_the_manifest(failed, out, "No space left on device")
            intact = shard_bytes(out) == reference if out.exists() else False
            kept = not (out / "manifest.json").exists() and (out / JOURNAL).exists()
            # Space freed, the same command completes from the same data.
            subprocess.run(["mount", "-o", f"remount,size={2 * held + 4 * manifest}", str(disk)], check=True)
            ok, lost = survives(cmd, out, reference)
        finally:
            subprocess.run(["umount", str(disk)], check=True)
        survived = one_line and intact and kept and ok
        tally("render: disk full during the manifest write").record(survived, lost)
        if not survived:
            failures.append((t, free, left, one_line, intact, kept, ok, failed.stderr[-500:]))
    assert not failures, failures


def render_workers(pid: int) -> list[int]:
    """The render's worker processes (its resource trackers aside)."""
    out = []
    for c in children(pid):
        with contextlib.suppress(OSError):
            if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes():
                out.append(c)
    return out


#: How long each backend's workers take from their start to their first task, where this test's kill lands:
#: loky's import numpy and numba and load the kernels (about a second); forked ones start with all of it and
#: take their first task within milliseconds (over the whole job, 60 shards, they live about 0.4 s on a quiet
#: 2-core machine, so a kill drawn in loky's window often came after they had finished).
START_SECONDS = {"loky": 0.3, "fork": 0.02}


@pytest.mark.parametrize("backend", ["fork", "loky"])
def test_kill_9_while_the_workers_start(job, tmp_path, tally, backend):
    """kill -9 of the parent as soon as its first worker exists, before any task reached it: the workers and
    resource trackers go with it (they watch their parent from their start, not from their first task)."""
    cmd, reference = job
    cmd = [*cmd, "--backend", backend]
    failures = []
    for t, rng in enumerate(trials(f"render/kill-at-start{where(backend)}")):
        out = tmp_path / str(t)
        with open(tmp_path / f"{t}.err", "w") as err_out:
            proc = subprocess.Popen([*cmd, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=err_out,
                                    start_new_session=True)
        deadline = time.time() + 60
        while not render_workers(proc.pid) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, START_SECONDS[backend]))
        spawned = children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        seconds = seconds_to_go(spawned, 10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        ok, lost = survives(cmd, out, reference)
        ok = ok and seconds <= 10 and len(spawned) > 0
        tally(f"render: kill -9 of the parent while its workers start ({backend})").record(ok, lost)
        if not ok:
            failures.append((t, len(spawned), seconds, lost))
    assert not failures, failures


@pytest.mark.parametrize("backend", ["fork", "loky"])
@pytest.mark.parametrize("target", ["parent", "process group"])
def test_sigterm_at_a_random_moment(job, tmp_path, tally, target, backend):
    """SIGTERM (``kill``; ``timeout`` and Slurm signal the whole group) ends a render as Ctrl-C does: the one
    line, exit 143, nothing from loky or its resource tracker, every child gone, and the same command resumes."""
    cmd, reference = job
    cmd = [*cmd, "--backend", backend]
    failures = []
    for t, rng in enumerate(trials(f"render/sigterm/{target}{where(backend)}")):
        out = tmp_path / str(t)
        err_file = tmp_path / f"{t}.err"
        with open(err_file, "w") as err_out:  # a file, not a pipe: a child that outlived the render may hold it
            proc = subprocess.Popen([*cmd, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=err_out,
                                    start_new_session=True)
        wait_for_shards(out, proc, rng.randrange(0, 40))  # 0: the journal begun, its workers maybe still starting
        time.sleep(rng.uniform(0, 0.05))
        spawned = children(proc.pid)
        if target == "parent":
            os.kill(proc.pid, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=120)
        seconds = seconds_to_go(spawned, 10)
        print(f"SIGTERM to the {target}, trial {t}: exit {code}, its {len(spawned)} children gone in {seconds:.2f} s")
        err = err_file.read_text()  # read after the children went: a resource tracker warns as it exits
        one_line = err.strip().splitlines() == [f"Interrupted: finished shards are kept in {out}; "
                                                "run the same command to resume."]
        quiet = "resource_tracker" not in err and "leaked" not in err
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        ok, lost = survives(cmd, out, reference)
        survived = ok and code == 143 and one_line and quiet and seconds <= 10
        tally(f"render: SIGTERM to the {target} ({backend})").record(survived, lost)
        if not survived:
            failures.append((t, code, len(spawned), seconds, lost, ok, err[-1500:]))
    assert not failures, failures
