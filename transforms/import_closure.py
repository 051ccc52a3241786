"""The project modules a module depends on, found by reading import statements (pure, ast).

``project_module_files(roots, root_dir)`` returns the source files (relative POSIX paths,
sorted) of the modules ``roots`` import, directly or through each other, restricted to the
packages under ``root_dir`` (third-party and standard-library imports are ignored).  Both
``import a.b`` and ``from a.b import c`` count; when ``c`` is itself a module (a file or
package of ``a.b``) it counts too, and every package on the way (``a/__init__.py``) is
included.  Imports inside functions count as well: what a build may import is what the
hash must cover.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable, List, Optional


def _module_file(root: Path, dotted: str) -> Optional[Path]:
    base = root.joinpath(*dotted.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imported_names(path: Path, package: str) -> Iterable[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:                                    # relative import
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in parts + [node.module or ""] if p)
            else:
                base = node.module or ""
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"


def project_module_files(roots: Iterable[str], root_dir: Path) -> List[str]:
    """Sorted relative paths of the project modules ``roots`` (dotted names) depend on."""
    root_dir = Path(root_dir)
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        dotted = todo.pop()
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):               # packages on the way, then the module
            name = ".".join(parts[:i])
            if name in seen:
                continue
            path = _module_file(root_dir, name)
            if path is None:
                break
            seen[name] = path
            package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
            todo.extend(_imported_names(path, package))
    return sorted(p.relative_to(root_dir).as_posix() for p in seen.values())
