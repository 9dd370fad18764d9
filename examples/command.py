"""The command line every example shares: ``--tiny``, ``--output-dir``, ``--overwrite``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from fedmrn_pl import RunDirectoryError

__all__ = ["run_example"]

Result = TypeVar("Result")


def run_example(name: str, doc: str, main: Callable[..., Result]) -> tuple[Result, str]:
    """Parse the example's arguments, run ``main(tiny, output_dir, overwrite=...)``; return its result and the folder.

    The default folder is ``runs/<name>``, or ``runs/<name>_tiny`` with ``--tiny``, so a tiny
    run never meets a full one; a folder that already holds a run ends the example in one line.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few seconds on tiny data")
    parser.add_argument("--output-dir", help=f"default runs/{name}, or runs/{name}_tiny with --tiny")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in the output directory")
    args = parser.parse_args()
    output_dir = args.output_dir or f"runs/{name}{'_tiny' if args.tiny else ''}"
    try:
        return main(args.tiny, output_dir, overwrite=args.overwrite), output_dir
    except RunDirectoryError as error:
        raise SystemExit(f"error: {error}") from None
