"""The README and the docs site: every code block runs, the site builds strict, the reference is complete.

Each ``python``/``bash``/``console`` block of README.md and docs/**/*.md runs in a fresh
directory (with ``configs/``, ``examples/`` and ``benchmarks/`` linked in), as a reader would
paste it. Runs are shrunk through ``FEDMRN_PL_OVERRIDES`` (tiny data, one round), which the
CLI's ``fit`` and ``compare`` apply beneath the command line's own overrides; ``pip install -e
.[extras]`` is a stand-in that only checks the extras exist, since the suite already runs in
the installed package. A ``diff`` block must apply to the code (``git apply --check``). Blocks
that cannot run here say why (``<!-- skip-test: reason -->``).
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.doc_snippets import Block, missing_output_lines, read_blocks

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [block for path in DOC_FILES for block in read_blocks(path)]
SNIPPETS = [block for block in BLOCKS if block.kind]
LINKED = ("configs", "examples", "benchmarks")  # what the docs' commands refer to, relative to the repository
TINY = "data.name=digits data.num_clients=4 train.clients_per_round=2 train.rounds=1 train.local_epochs=1"
MAX_SKIPPED = 6  # blocks that cannot run here (SLURM, GPUs, the network, the suite itself): keep them few
TIMEOUT_SECONDS = 300
README_MAX_LINES = 200

PIP_STAND_IN = '''#!{python}
"""pip for the docs' snippets: `pip install -e .[extras]` checks the extras exist; the suite already runs installed."""
import configparser, re, sys
match = re.fullmatch(r"\\.(?:\\[([\\w,-]+)\\])?", sys.argv[3]) if sys.argv[1:3] == ["install", "-e"] and len(sys.argv) == 4 else None
if match is None:
    sys.exit("the docs' tests only stand in for `pip install -e .[extras]`, not: pip " + " ".join(sys.argv[1:]))
setup = configparser.ConfigParser()
setup.read({setup_cfg!r})
unknown = set(filter(None, (match[1] or "").split(","))) - set(setup["options.extras_require"])
if unknown:
    sys.exit(f"setup.cfg declares no extra {{sorted(unknown)}}")
print(f"(docs test: `pip install -e {{sys.argv[3]}}` stands in for the install; the suite runs installed)")
'''


def _label(block: Block) -> str:
    return f"{block.path.relative_to(ROOT)}:{block.line}"


def _environment(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pip = bin_dir / "pip"
    pip.write_text(PIP_STAND_IN.format(python=sys.executable, setup_cfg=str(ROOT / "setup.cfg")))
    pip.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "COV_"))}
    env.update(
        PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")]),
        FEDMRN_PL_OVERRIDES=TINY,
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        MPLBACKEND="Agg",
        OMP_NUM_THREADS="1",  # two xdist workers share the 2 cores
    )
    return env


@pytest.mark.parametrize("block", SNIPPETS, ids=_label)
def test_code_block_runs(block: Block, tmp_path: Path) -> None:
    if block.skip_reason:
        pytest.skip(f"{_label(block)}: {block.skip_reason}")
    if block.kind == "diff":  # an edit a how-to asks for: it must still apply to the code as it is
        if shutil.which("git") is None:
            pytest.skip("git is not installed: it checks that the diff applies")
        result = subprocess.run(["git", "apply", "--check", "-"], input=block.code, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, f"{_label(block)} no longer applies: {result.stderr}"
        return
    work = tmp_path / "work"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(ROOT / name, target_is_directory=True)
    if block.kind == "python":
        script = tmp_path / "snippet.py"
        script.write_text(block.script())
        command = [sys.executable, str(script)]
    else:
        script = tmp_path / "snippet.sh"
        script.write_text(block.script())
        command = ["bash", "-e", "-o", "pipefail", str(script)]
    result = subprocess.run(
        command, cwd=work, env=_environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=TIMEOUT_SECONDS,
    )  # fmt: skip
    assert result.returncode == 0, f"{_label(block)} exited {result.returncode}:\n{block.code}\n{result.stdout[-6000:]}"
    if block.expected_output is not None:
        missing = missing_output_lines(block.expected_output, result.stdout)
        assert not missing, f"{_label(block)}: its documented output has lines it no longer prints: {missing}\n{result.stdout[-4000:]}"


def test_skipped_blocks_are_few_and_say_why() -> None:
    skipped = [block for block in SNIPPETS if block.skip_reason]
    assert len(skipped) <= MAX_SKIPPED, [f"{_label(b)}: {b.skip_reason}" for b in skipped]
    assert len(SNIPPETS) - len(skipped) >= 20  # the runner found the docs' blocks


def test_skip_markers_sit_on_runnable_blocks() -> None:
    # A marker before a `text` block (or a typo'd language) would silently guard nothing.
    stray = [_label(block) for block in BLOCKS if block.skip_reason and not block.kind]
    assert not stray


def test_every_config_key_is_in_the_generated_reference() -> None:
    hooks = _docs_hooks()
    table = hooks.config_reference()
    missing = [key for key in _schema_keys() if f"| `{key}` |" not in table]
    assert not missing
    undocumented = [key for _, key, _, _, doc in hooks.config_rows() if not doc]
    assert not undocumented, f"add a comment to these fields in fedmrn_pl/config.py: {undocumented}"
    stale = sorted(set(hooks.FALLBACK_DOCS) - set(_schema_keys()))
    assert not stale, f"docs/hooks.py documents keys the schema no longer has: {stale}"


def test_readme_main_keys_are_schema_keys() -> None:
    keys = set(_schema_keys())
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")]
    named = [re.match(r"\| `([\w.]+)` \|", row)[1] for row in rows]
    assert named and not [key for key in named if key not in keys]


def test_readme_is_a_landing_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    links = re.findall(r"\]\((docs/[^)#]+)", "\n".join(lines))
    assert links and not [link for link in links if not (ROOT / link).is_file()]


def test_ci_runs_the_readme_test_command() -> None:
    readme = [b for b in read_blocks(ROOT / "README.md") if b.kind and "pytest" in b.code]
    assert len(readme) == 1
    command = readme[0].code.strip()
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
    extras = set(re.search(r"\.\[([\w,]+)\]", command)[1].split(","))
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert "docs" in extras and extras <= set(setup["options.extras_require"])


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        if not _installed(module):
            pytest.skip(f"{module} is not installed: pip install -e '.[docs]' (.ci/run does)")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=TIMEOUT_SECONDS,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:]
    config_page = (site / "reference" / "config" / "index.html").read_text()
    assert not [key for key in _schema_keys() if f"<code>{key}</code>" not in config_page]
    assert "usage: fedmrn-pl fit" in (site / "reference" / "cli" / "index.html").read_text()
    assert "FederatedTrainer" in (site / "reference" / "api" / "index.html").read_text()


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _schema_keys() -> list[str]:
    """Every leaf key of the config schema, dotted."""
    from fedmrn_pl.config import config_schema

    def walk(node: dict, prefix: str) -> list[str]:
        keys = []
        for name, value in node.items():
            key = f"{prefix}{name}"
            keys += walk(value, f"{key}.") if isinstance(value, dict) else [key]
        return keys

    return walk(OmegaConf.to_container(config_schema()), "")


def _docs_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
