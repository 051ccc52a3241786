"""Stopping child processes and syncing folders on the local machine (shared helpers)."""
from __future__ import annotations

import os
import subprocess
from typing import Optional


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


def fsync_dir(path: str) -> None:
    """fsync a folder, making the names created or removed in it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
