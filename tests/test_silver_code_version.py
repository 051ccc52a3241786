"""The Silver lineage's code version (issue 13 item 6): the hash covers exactly the project
modules the build imports, so a change to any of them (the front-month rule, the Bronze
schemas) changes the recorded code version, and a module the build never imports does not."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.silver_builder import code_files, code_version
from tests.silver_fixtures import ROOT


def test_hash_covers_what_silver_inputs_imports():
    files = code_files()
    for needed in ("transforms/front_month.py", "transforms/schemas.py",
                   "io_connectors/lake/silver_inputs.py", "transforms/silver/stage_physics.py",
                   "transforms/silver/validation.py", "pipelines/silver_builder.py"):
        assert needed in files, needed
    assert "pipelines/demo.py" not in files and "pipelines/bronze_stream.py" not in files


def test_every_project_module_loaded_by_the_build_is_hashed():
    code = ("import sys, os, pipelines.silver_builder as b\n"
            "root = os.path.realpath(os.getcwd())\n"
            "for m in list(sys.modules.values()):\n"
            "    f = os.path.realpath(getattr(m, '__file__', None) or '')\n"
            "    if f.startswith(root + os.sep) and '.venv' not in f:\n"
            "        print(os.path.relpath(f, root))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    loaded = {line for line in out.stdout.split() if line.endswith(".py")}
    assert loaded and loaded <= set(code_files()), sorted(loaded - set(code_files()))


def test_changing_an_imported_module_changes_the_hash_and_others_do_not(tmp_path):
    copy = tmp_path / "code"
    for rel in code_files() + ["pipelines/demo.py"]:
        dst = copy / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(ROOT) / rel, dst)
    before = code_version(copy)
    assert before["source_sha256"] == code_version(ROOT)["source_sha256"]
    (copy / "pipelines/demo.py").write_text("# not part of the build\n")
    assert code_version(copy)["source_sha256"] == before["source_sha256"]
    fm = copy / "transforms/front_month.py"
    fm.write_text(fm.read_text().replace("0.6", "0.7"))
    assert code_version(copy)["source_sha256"] != before["source_sha256"]
