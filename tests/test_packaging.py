"""Every third-party module the project imports is declared in setup.cfg.

A fresh machine gets only what ``pip install -e '.[dev,zoo]'`` brings; a module imported
directly but pulled in only transitively (or present only on this machine) breaks
the README's commands there. Imports are read with ``ast``, not executed.
"""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("fedmrn_pl", "callbacks", "tests", "benchmarks", "examples")
LOCAL_MODULES = {"fedmrn_pl", "callbacks", "tests", "benchmarks", "examples", "conftest"}


def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def declared_distributions() -> set[str]:
    """Distribution names in install_requires and every extra of setup.cfg."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config.get("options", "install_requires").splitlines()
    for _, extra in config.items("options.extras_require"):
        lines += extra.splitlines()
    return {_normalise(re.split(r"[<>=!~\[; ]", line.strip())[0]) for line in lines if line.strip()}


def imported_top_level_modules() -> dict[str, str]:
    """``{top-level module: first file importing it}`` for absolute imports in the project."""
    found: dict[str, str] = {}
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared_in_setup_cfg():
    declared = declared_distributions()
    owners = packages_distributions()
    problems = []
    for module, where in sorted(imported_top_level_modules().items()):
        if module in sys.stdlib_module_names or module in LOCAL_MODULES:
            continue
        # Installed: the distributions that provide the module; not installed (an optional
        # extra such as bench's zstandard): the distribution of the same name.
        distributions = {_normalise(name) for name in owners.get(module, [])} or {_normalise(module)} & declared
        if not distributions:
            problems.append(f"{module} (imported in {where}) is not installed by any declared distribution")
        elif not distributions & declared:
            problems.append(f"{module} (imported in {where}) comes from {sorted(distributions)}, not declared in setup.cfg")
    assert not problems, "\n".join(problems)


def test_the_check_sees_the_known_imports():
    # Guards the test above against reading nothing: these imports exist in the project.
    modules = imported_top_level_modules()
    assert {"torch", "lightning", "omegaconf", "pytest", "hypothesis"} <= set(modules)
    assert {"torch", "lightning", "omegaconf", "pytest", "hypothesis", "tqdm"} <= declared_distributions()


def test_no_file_holds_a_merge_conflict_marker():
    markers = ("<" * 7 + " ", "=" * 7 + "\n", ">" * 7 + " ")
    suffixes = {".py", ".md", ".cfg", ".toml", ".yaml", ".sh", ".txt"}
    found = []
    for path in ROOT.rglob("*"):
        if path.suffix in suffixes and not any(part.startswith(".") for part in path.relative_to(ROOT).parts):
            text = path.read_text(errors="replace")
            found += [f"{path.relative_to(ROOT)}" for marker in markers if f"\n{marker}" in text]
    assert not found, sorted(set(found))
