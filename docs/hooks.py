"""MkDocs hooks: the reference pages that are generated from the code, so they cannot drift.

A page asks for a generated part with an HTML comment on a line of its own:

- ``<!-- generated: config-keys -->``: one table per section of ``ExperimentConfig``
  (``fedmrn_pl/config.py``): every key, its default, its values and the field's comment.
- ``<!-- generated: cli-help -->``: the ``--help`` of ``fedmrn-pl`` and of each command.

``tests/test_docs.py`` imports this file to check that every config key is documented.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import io
import os
import tokenize
import types
import typing
from pathlib import Path
from typing import Any

CONFIG_MARKER = "<!-- generated: config-keys -->"
CLI_MARKER = "<!-- generated: cli-help -->"

# Keys whose field in fedmrn_pl/config.py has no comment yet; a comment there wins over these.
FALLBACK_DOCS = {
    "output_dir": "where the run writes config.yaml, metrics.json, the plots and its checkpoint",
    "seed": "the run seed: every random stream (split, partition, init, sampling, noise) derives from it",
    "data.num_clients": "clients the training set is partitioned among",
    "data.partition": "how the training set is split among clients",
    "data.test_batch_size": "batch size of the server's test loader",
    "data.name": "the dataset (see Datasets and models)",
    "model.name": "the built-in network",
    "method.name": "the federated method (see Methods)",
    "method.mask": "FedMRN's mask values: binary {0, 1} (the paper's CNNs) or signed {-1, +1}",
    "method.noise": "the noise family masks select from",
    "train.rounds": "federated rounds",
    "train.clients_per_round": "clients sampled each round",
    "train.local_epochs": "epochs each sampled client trains per round",
    "train.batch_size": "local batch size",
    "train.lr": "the local SGD learning rate",
    "train.momentum": "local SGD momentum",
    "train.weight_decay": "local SGD weight decay",
    "train.precision": "passed to lightning.Trainer (32-true, 16-mixed, bf16-mixed ...)",
    "wandb.enabled": "log the run to Weights & Biases",
    "wandb.project": "W&B project",
    "wandb.entity": "W&B entity (user or team); null: your default",
    "wandb.name": "W&B run name; null: W&B picks one",
    "wandb.group": "W&B group",
    "wandb.tags": "W&B tags",
}


def config_sections() -> list[tuple[str, type]]:
    """``(prefix, dataclass)`` for the top level, each section of ``ExperimentConfig`` and each method's settings."""
    from fedmrn_pl.config import ExperimentConfig

    from fedmrn_pl.methods import registered_methods

    hints = typing.get_type_hints(ExperimentConfig)
    sections = [("", ExperimentConfig)]
    for field in dataclasses.fields(ExperimentConfig):
        if dataclasses.is_dataclass(hints[field.name]):
            sections.append((field.name, hints[field.name]))
        if field.name == "method":  # each method's own section, nested under its name
            sections += [(f"method.{name}", m.settings) for name, m in registered_methods().items() if m.settings]
    return sections


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from the ``# ...`` at the end of each field's line in the source."""
    import inspect

    source = Path(inspect.getsourcefile(cls)).read_text(encoding="utf-8")
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    comment = comments.get(statement.end_lineno or statement.lineno)
                    if comment:
                        found[statement.target.id] = comment
    return found


def config_rows() -> list[tuple[str, str, str, str, str]]:
    """``(section, key, default, values, doc)`` for every leaf key of the schema."""
    rows = []
    for prefix, cls in config_sections():
        hints = typing.get_type_hints(cls)
        comments = field_comments(cls)
        for field in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[field.name]):
                continue
            key = f"{prefix}.{field.name}" if prefix else field.name
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
            doc = comments.get(field.name) or FALLBACK_DOCS.get(key, "")
            rows.append((prefix, key, _yaml(default), _values(hints[field.name]), doc))
    return rows


def config_reference() -> str:
    """The generated Markdown: one table per section, in schema order."""
    parts = []
    for prefix, cls in config_sections():
        title = f"`{prefix}`" if prefix else "Top level"
        intro = (cls.__doc__ or "").strip().splitlines()[0]
        parts += [f"### {title}", "", intro, "", "| key | default | values | what it does |", "| --- | --- | --- | --- |"]
        for section, key, default, values, doc in config_rows():
            if section == prefix:
                parts.append(f"| `{key}` | `{default}` | {_cell(values)} | {_cell(doc)} |")
        parts.append("")
    return "\n".join(parts)


def _yaml(value: Any) -> str:
    """A default as it would be written in YAML."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(item) for item in value) + "]"
    return str(value)


def _values(annotation: Any) -> str:
    """What a key accepts: an Enum's choices, or the type's name; ``null`` when optional."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_values(a) for a in inner) + (", or `null`" if len(inner) < len(args) else "")
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return ", ".join(f"`{member.value}`" for member in annotation)
    if typing.get_origin(annotation) is list:
        return f"list of {_values(args[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no column breaks, no HTML tags)."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def cli_reference() -> str:
    """``fedmrn-pl --help`` and each command's ``--help``, as printed at 100 columns."""
    from fedmrn_pl.cli import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps help at the terminal's width
    try:
        parser = build_parser()
        helps = [("fedmrn-pl", parser.format_help())]
        for action in parser._subparsers._group_actions:  # the commands, in the order they were added
            helps += [(f"fedmrn-pl {name}", command.format_help()) for name, command in action.choices.items()]
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    return "\n".join(f"### `{title}`\n\n```text\n{text.rstrip()}\n```\n" for title, text in helps)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs hook: fill in the generated parts a page asks for."""
    if CONFIG_MARKER in markdown:
        markdown = markdown.replace(CONFIG_MARKER, config_reference())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return markdown
