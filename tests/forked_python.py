"""``python ARGS`` (``-m trainer ...`` or a script) run as a child forked from a process that has already
imported torch and timm.

A fresh ``python -m trainer`` spends 7-9 s of CPU importing torch, torchvision and timm before its run starts,
and the suite runs dozens of them. multiprocessing's fork server imports those once and then forks one child
per command: a process of its own, with the command's working directory, environment, thread count, file-size
limit, exit code and output, returned as ``subprocess.run`` returns them. The server never computes, so no
thread pool exists in it for a fork to break (a child forked after a multi-threaded op hangs in libgomp).

``start`` returns at once, with the child's pid (in a session of its own with ``session=True``, so that a
test can signal its group); ``run`` waits, as ``subprocess.run`` does. torchrun's ranks are forked by
``fork_ranks.py`` run this way. Not for the fault campaign's signals, which must reach a process in every state
of its start-up, imports included: those run ``python`` as a real subprocess.
"""

import atexit
import multiprocessing
import os
import resource
import runpy
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

# What a run imports; the trainer's own modules import torch and timm only when a run starts.
PRELOAD = ["torch", "torchvision", "timm", "matplotlib.pyplot", "trainer.cli", "trainer.pretraining",
           "trainer.finetuning", "trainer.engine", "trainer.models", "trainer.data.inputs", "trainer.data.stream",
           "trainer.data.memory", "trainer.data.device_augment", "torch.distributed.run"]

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


def _exit_code(e: SystemExit) -> int:
    """The status ``python`` exits with for ``sys.exit(e.code)``."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1


def run_as_python(args: list[str]) -> None:
    """``python ARGS`` (``-m MODULE`` or a script, then its arguments) in this process."""
    if args[0] == "-m":  # as python -m does: the module's path as argv[0], the module as __main__
        sys.argv = args[1:]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        sys.path.insert(0, str(Path(args[0]).resolve().parent))  # as python SCRIPT does
        runpy.run_path(args[0], run_name="__main__")


def _child(args: list[str], cwd: str, env: dict[str, str], out: str, err: str, fsize: int | None,
           session: bool) -> None:
    if session:
        os.setsid()
    for path, fd in ((out, 1), (err, 2)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(opened, fd)
        os.close(opened)
    code = 0
    try:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        import torch  # loaded by the server; its thread count comes from the environment at start-up

        torch.set_num_threads(int(env.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        run_as_python(args)
    except SystemExit as e:
        code = _exit_code(e)
    except BaseException:  # as the interpreter does: the traceback, exit 1
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # not back into multiprocessing's bootstrap, which would report the exit its own way


class Forked:
    """A command forked from the preloaded server, running; ``wait`` gives what ``subprocess.run`` would."""

    def __init__(self, args: list[str], cwd: str | os.PathLike | None, env: dict[str, str] | None,
                 fsize: int | None, session: bool):
        self.args = [str(a) for a in args]
        self._tmp = tempfile.TemporaryDirectory()
        self._out, self._err = Path(self._tmp.name) / "stdout", Path(self._tmp.name) / "stderr"
        self._child = _CONTEXT.Process(target=_child, args=(self.args, str(cwd or os.getcwd()),
                                                            dict(env or os.environ), str(self._out),
                                                            str(self._err), fsize, session))
        self._child.start()
        self.pid = self._child.pid

    def poll(self) -> int | None:
        """The exit status, or None while it runs."""
        return self._child.exitcode

    def wait(self, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Wait for the command (killed past ``timeout``, raising ``TimeoutExpired`` as ``subprocess.run``
        does); its exit status and output."""
        argv = [sys.executable, *self.args]
        self._child.join(timeout)
        timed_out = self._child.exitcode is None
        if timed_out:
            self._child.kill()
            self._child.join()
        stdout, stderr = self._out.read_text(), self._err.read_text()
        self._tmp.cleanup()
        if timed_out:
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(argv, self._child.exitcode, stdout, stderr)


def start(args: list[str], *, cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None,
          fsize: int | None = None, session: bool = False) -> Forked:
    """``python ARGS`` forked from the preloaded server, not waited for; ``session``: in a session (and process
    group) of its own, as ``subprocess.Popen(start_new_session=True)``."""
    return Forked(args, cwd, env, fsize, session)


def run(args: list[str], *, cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None,
        timeout: float | None = None, fsize: int | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run([sys.executable, *args], capture_output=True, text=True, ...)``, forked from the
    preloaded server; ``fsize`` sets RLIMIT_FSIZE in the child as a ``preexec_fn`` would."""
    return start(args, cwd=cwd, env=env, fsize=fsize).wait(timeout)
