"""The ``fedmrn-pl`` command: ``fit``, ``compare``, ``inspect`` and ``plot``.

Each command imports what it needs when it runs, so ``inspect`` starts without the
training stack (Lightning, torchvision, scikit-learn, matplotlib, wandb).
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import stat
import sys
import textwrap
from pathlib import Path

__all__ = ["main"]

OVERRIDES_ENV = "FEDMRN_PL_OVERRIDES"  # extra key=value overrides for fit/compare, beneath the command line's


def _show_library_logs() -> None:
    """Show the library's progress messages (the ``fedmrn_pl`` logger) on the console."""
    from fedmrn_pl.console import show_library_logs

    show_library_logs(force=True)


def _fit(args: argparse.Namespace) -> int:
    from fedmrn_pl.config import ConfigError, load_config

    overrides = list(args.overrides)
    config_path = args.config
    if args.resume:
        from fedmrn_pl.run_directory import CHECKPOINT_NAME

        # Continue in the run's own directory with the config it was started with.
        resume_dir = Path(args.resume)
        if not (resume_dir / CHECKPOINT_NAME).is_file():
            print(
                f"error: {resume_dir} holds no {CHECKPOINT_NAME}; pass the output_dir of an earlier run",
                file=sys.stderr,
            )
            return 2
        config_path = config_path or resume_dir / "config.yaml"
        overrides += [f"resume={resume_dir}", f"output_dir={resume_dir}"]
    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:  # a typo or bad value, refused before the training stack loads
        return _refuse(error)
    from fedmrn_pl.callbacks.checkpoint import CheckpointError
    from fedmrn_pl.experiment import run_experiment
    from fedmrn_pl.federated.distributed import DistributedError
    from fedmrn_pl.federated.evaluation import EvaluationError
    from fedmrn_pl.run_directory import RunDirectoryError
    from fedmrn_pl.saving import SaveError

    try:
        leader = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 alone prints
        if leader:
            _show_library_logs()
        summary = run_experiment(config)
    except SaveError as error:  # a full disk: the file it would have replaced is intact, no partial file is left
        kept = ""
        if leader:  # the run directory is rank 0's to judge (and tidy)
            full = error.errno in (errno.ENOSPC, errno.EDQUOT)
            found = _kept(Path(config.output_dir), config.checkpoint_every, "free some space, then " if full else "")
            kept = f"; {found or 'no round was saved; nothing to resume'}"
        print(f"error: {_printable(str(error))}{_printable(kept)}", file=sys.stderr)
        return 1
    except (ConfigError, CheckpointError, FileNotFoundError, RunDirectoryError) as error:  # bad config, dataset, checkpoint or directory
        return _refuse(error)  # nothing was written
    except DistributedError as error:  # a peer rank died or hung: the last checkpoint is still valid
        print(f"error: {_printable(str(error))}", file=sys.stderr)
        return 1
    except EvaluationError as error:  # the module's own test/validation step failed; earlier rounds are saved
        saved = f"; the rounds before it are saved in {config.output_dir}" if (error.server_round or 0) > 1 else ""
        print(f"error: {_printable(str(error))}{_printable(saved)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM or the user's own: say what was kept and how to go on
        if leader:
            line = _interrupted(interrupt, Path(config.output_dir), config.checkpoint_every)
            print(_printable(line), file=sys.stderr)
        return getattr(interrupt, "exit_code", 130)  # 143 after SIGTERM, a SystemExit's own code
    if not leader:
        return 0
    per_round = summary.get("per_round") or ()
    if per_round and not any(metrics.get("accepted_clients") for metrics in per_round):
        reasons = [d["reason"] for r in per_round for d in r.get("dropped_clients", ())]
        first = f" (the first: {reasons[0]})" if reasons else ""
        print(
            f"error: no client update was accepted in any round{_printable(first)}; the model never changed. "
            f"Every reason is in {Path(config.output_dir) / 'metrics.json'} per_round[].dropped_clients",
            file=sys.stderr,
        )
        return 1
    print(
        f"{summary['method']}: {_result(summary)} after {summary['rounds']} rounds; "
        f"uplink {summary['uplink_bytes'] / 1e6:.3f} MB vs {summary['dense_uplink_bytes'] / 1e6:.3f} MB dense float32"
        f"{_compression(summary['uplink_compression'])}"
    )
    if summary["dropped_clients"]:
        print(
            f"{summary['dropped_clients']} client update(s) were dropped; reasons in metrics.json per_round[].dropped_clients"
        )
    print(f"metrics written to {Path(config.output_dir) / 'metrics.json'} (plots beside it)")
    return 0


def _interrupted(interrupt: KeyboardInterrupt, output_dir: Path, checkpoint_every: int) -> str:
    """The one line after Ctrl-C, SIGTERM or the user's own interrupt: what was kept, and how to continue."""
    from fedmrn_pl.interrupt import RunInterrupted

    what = str(interrupt) if isinstance(interrupt, RunInterrupted) else "interrupted by Ctrl-C"
    kept = _kept(output_dir, checkpoint_every)
    return f"{what}; {kept}" if kept else f"{what} before any round was saved; nothing to resume"


def _kept(output_dir: Path, checkpoint_every: int, advice: str = "") -> str | None:
    """What a stopped run left in ``output_dir`` and how to go on; None when nothing.

    A run stopped before its first checkpoint loses its lone config.yaml, so the directory
    never looks like a run that ``--resume`` would then refuse.
    """
    from fedmrn_pl.callbacks.checkpoint import CheckpointError, load_checkpoint
    from fedmrn_pl.run_directory import CHECKPOINT_NAME, run_files

    if (output_dir / CHECKPOINT_NAME).is_file():
        try:
            kept = f"its checkpoint of round {load_checkpoint(output_dir)['completed_rounds']}"
        except CheckpointError:
            kept = "its last checkpoint"
        return f"{output_dir} keeps {kept}; {advice}continue with: fedmrn-pl fit --resume {output_dir}"
    found = run_files(output_dir)
    if found:
        why = "checkpoint_every=0" if not checkpoint_every else "none was saved yet"
        return f"{output_dir} keeps {', '.join(found)} but no checkpoint ({why}), so it cannot be resumed"
    (output_dir / "config.yaml").unlink(missing_ok=True)
    return None


def _compare(args: argparse.Namespace) -> int:
    from fedmrn_pl.compare import compare, parse_compare_args
    from fedmrn_pl.config import ConfigError, load_config
    from fedmrn_pl.methods.registry import compare_variants

    try:
        settings, overrides = parse_compare_args(args.overrides)
        variants = compare_variants()
        for method in settings.methods:  # every method's config, checked before the training stack loads
            load_config(args.config, [*overrides, *variants[method]])
    except (ConfigError, ValueError) as error:
        return _refuse(error)
    from fedmrn_pl.callbacks.checkpoint import CheckpointError

    try:
        _show_library_logs()
        paths = compare(args.config, settings, overrides)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as error:
        return _refuse(error)
    print(paths["md"].read_text(), end="")
    for path in paths.values():
        print(path)
    return 0


def _number(value: float | None, spec: str) -> str:
    """Format a figure that may be missing (no test metric logged, nothing uploaded)."""
    return "-" if value is None else format(value, spec)


def _result(summary: dict) -> str:
    """The final and best value of the metric the run is judged by, by its name; accuracy runs as they always read."""
    from fedmrn_pl.monitor import Monitor

    monitor = Monitor.of_summary(summary)
    if monitor == Monitor():
        return (
            f"final test accuracy {_number(summary['final_test_accuracy'], '.4f')} "
            f"(best {_number(summary['best_test_accuracy'], '.4f')})"
        )
    best = _number(summary.get("best_value"), ".4f")
    where = f" in round {summary['best_round']}" if summary.get("best_round") is not None else ""
    accuracy = summary.get("final_test_accuracy")
    also = f", test accuracy {accuracy:.4f}" if accuracy is not None and monitor.standard_key != "test/acc" else ""
    return (
        f"final {monitor.label} {_number(summary.get('final_value'), '.4f')} "
        f"(best {best}{where}, {monitor.better}){also}"
    )


def _compression(ratio: float | None) -> str:
    """The compression clause; a ratio that is missing or not positive is no figure at all."""
    if ratio is None or not ratio > 0 or ratio == float("inf"):
        return " (no accepted uplink, so no compression figure)"
    return f" = {ratio:.2f}x compression"


def _inspect(args: argparse.Namespace) -> int:
    from fedmrn_pl.wire import PayloadError, describe_payload
    from fedmrn_pl.wire.format import DEFAULT_MAX_BYTES as limit  # the wire's own payload size limit

    path = Path(args.payload)
    try:
        payload = _read_at_most(path, limit)
    except OSError as error:
        print(f"error: cannot read {_printable(str(path))}: {error.strerror}", file=sys.stderr)
        return 2
    try:
        if payload is None:
            raise PayloadError(f"larger than the wire format's limit of {limit} bytes")
        info = describe_payload(payload, max_bytes=limit, max_elements=args.max_elements)
    except PayloadError as error:
        print(f"error: invalid payload {_printable(str(path))}: {_printable(str(error))}", file=sys.stderr)
        return 1
    try:
        print(_format_payload(path, info), flush=True)
    except BrokenPipeError:  # `inspect x.fmrn | head -1`: the reader stopped reading; the payload is still valid
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit is quiet too
    return 0


def _element_count(text: str) -> int:
    """``--max-elements``: a count >= 0."""
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return count


def _read_at_most(path: Path, limit: int) -> bytearray | None:
    """The file's bytes, or None when it holds more than ``limit``, found without reading it whole.

    A regular file is judged by its size before any read; a device or pipe (``/dev/zero``)
    reports none, so the read stops one byte past the limit. The file is opened without
    blocking: a named pipe that no one writes to reads as empty instead of waiting forever.
    """
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX: opening a named pipe does not wait for a writer
    descriptor = os.open(path, os.O_RDONLY | nonblocking)
    if nonblocking:
        os.set_blocking(descriptor, True)  # reads wait for a writer that is there, as a pipe's reader should
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            return None
        data = bytearray()
        while len(data) <= limit:
            chunk = handle.read(min(1 << 20, limit + 1 - len(data)))
            if not chunk:
                break
            data += chunk
    return None if len(data) > limit else data


def _printable(text: str) -> str:
    """``text`` with control and other non-printable characters escaped (``\\x1b``), safe for a terminal."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def _format_payload(path: Path, info: dict) -> str:
    """The inspect report; every value from the payload is escaped, since its sender chose it."""
    head = f"valid FedMRN payload, format v{info['format_version']}, {info['total_bytes']} bytes"
    lines = [f"{_printable(str(path))}: {head}"]
    for key in (
        "server_round",
        "client_id",
        "seed",
        "mask_kind",
        "noise_family",
        "noise_alpha",
        "num_examples",
        "overhead_bytes",
    ):
        if key in info:
            lines.append(f"  {key:<15} {_printable(str(info[key]))}")
    lines.append(f"  {'tensor':<40} {'shape':<18} {'encoding':<16} {'numel':>10} {'bytes':>10}  ones   noise scale")
    for tensor in info["tensors"]:
        ones = f"{tensor['ones_fraction']:.3f}" if tensor.get("ones_fraction") is not None else "-"
        scale = tensor.get("noise_scale")
        scale = "-" if scale is None else ("alpha" if scale == 0 else f"{scale:.4g}")
        lines.append(
            f"  {_printable(tensor['name']):<40} {str(tuple(tensor['shape'])):<18} "
            f"{_printable(tensor['encoding']):<16} "
            f"{tensor['numel']:>10} {tensor['body_bytes']:>10}  {ones:<6} {scale}"
        )
    return "\n".join(lines)


def _plot(args: argparse.Namespace) -> int:
    from fedmrn_pl.plots import plot_runs

    run_dirs = [Path(run_dir) for run_dir in args.run_dirs]
    if args.out:
        out_dir = Path(args.out)
    else:
        out_dir = run_dirs[0] if len(run_dirs) == 1 else Path("plots")
    try:
        paths = plot_runs(run_dirs, out_dir)
    except (OSError, ValueError) as error:  # missing or malformed metrics.json, unwritable OUT
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


class _HelpParser(argparse.ArgumentParser):
    """A command's parser whose ``epilog`` may be a function: called only when help is shown, so parsing stays light."""

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def _fit_epilog() -> str:
    """``fit --help``'s reference: every config key with its default and choices, read from the schema."""
    from fedmrn_pl.config import bundled_config_path, describe_keys
    from fedmrn_pl.methods.registry import registered_methods

    bundled = bundled_config_path().parent
    methods = registered_methods()
    width = max(map(len, methods))
    return "\n".join([
        "config keys as key=default (the bundled configs/default.yaml); '|' lists a key's other choices.",
        "Override any key as section.key=value:",
        describe_keys(),
        "",
        "methods (method.name=...):",
        *(f"  {name:<{width}}  {method.summary}" for name, method in methods.items()),
        "",
        f"bundled configs (--config FILE), in {bundled}:",
        "  " + "  ".join(sorted(path.name for path in bundled.glob("*.yaml"))),
        "",
        "examples:",
        "  fedmrn-pl fit train.rounds=3                              # a shorter run of the default",
        "  fedmrn-pl fit method.name=fedavg output_dir=runs/fedavg   # the dense baseline",
        "  fedmrn-pl fit --config configs/fmnist_cnn4.yaml data.download=true data.root=data",
        "  fedmrn-pl fit --resume runs/default train.rounds=20       # continue a stopped run, or extend it",
    ])  # fmt: skip


def _compare_epilog() -> str:
    """``compare --help``'s reference: the methods it runs, each as the config overrides it applies."""
    from fedmrn_pl.methods.registry import compare_variants

    variants = compare_variants()
    width = max(map(len, variants))
    return "\n".join([
        "methods (methods=[a,b,...]; default: all of them), each a set of config overrides:",
        *(f"  {name:<{width}}  {' '.join(overrides)}" for name, overrides in variants.items()),
        "",
        "examples:",
        '  fedmrn-pl compare "methods=[fedmrn,fedavg,signsgd]" "seeds=[0,1,2]" train.rounds=20',
        "  fedmrn-pl compare methods=fedmrn_signed target_accuracy=0.9 output_dir=runs/signed",
    ])  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fedmrn-pl``."""
    parser = argparse.ArgumentParser(
        prog="fedmrn-pl", description="Federated learning with masked random noise (FedMRN)."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_HelpParser)
    fit = commands.add_parser(
        "fit",
        help="run a federated experiment",
        description="Run a federated experiment. Overrides look like train.rounds=5.",
        epilog=_fit_epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("--config", default=None, help="YAML config (default: the bundled configs/default.yaml)")
    fit.add_argument("--resume", default=None, metavar="DIR", help="continue the run saved in DIR")
    fit.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    fit.set_defaults(handler=_fit)
    compare = commands.add_parser(
        "compare",
        help="run several methods on the same partition and seeds; write a table and plots",
        description=textwrap.fill(
            "Run methods=[fedmrn,fedavg,...] (default: all) for seeds=[0,...] on one config and write "
            "compare.csv, compare.md, accuracy_vs_round.png and accuracy_vs_uplink.png into output_dir. "
            "target_accuracy=0.9 adds the rounds and uplink MB each method needs to reach it. "
            "Rerunning resumes where a stopped compare stopped.",
            width=100,
        ),
        epilog=_compare_epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the method table keeps its lines
    )
    compare.add_argument("--config", default=None, help="YAML config (default: the bundled configs/default.yaml)")
    compare.add_argument("overrides", nargs="*", metavar="key=value", help="methods=, seeds=, target_accuracy= and config overrides")
    compare.set_defaults(handler=_compare)
    inspect = commands.add_parser(
        "inspect",
        help="validate and summarise a saved payload",
        description="Validate a payload as the server's decode_update does, every body decoded, and print its "
        "header and tensors. What only a run can check (its model's shapes, the seed and noise it issued, dense "
        "values) is left to the server. Exit code 0: valid, 1: invalid, 2: unreadable.",
    )
    inspect.add_argument("payload", help="a .fmrn payload file")
    inspect.add_argument(
        "--max-elements",
        type=_element_count,
        default=None,
        metavar="N",
        help="refuse a payload whose tensors declare more than N elements in all, before decoding any "
        "(default: 1422 per payload byte, more than any valid payload holds)",
    )
    inspect.set_defaults(handler=_inspect)
    plot = commands.add_parser(
        "plot",
        help="plot the monitored metric (test accuracy unless the run says otherwise) per round and vs. uplink bytes",
        description="Plot the metrics.json of one or more runs: accuracy_vs_round.png and accuracy_vs_uplink.png.",
    )
    plot.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directories holding a metrics.json")
    plot.add_argument(
        "--out",
        default=None,
        metavar="OUT",
        help="where to write the PNGs (default: DIR for one run, ./plots for several)",
    )
    plot.set_defaults(handler=_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command in ("fit", "compare") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]  # overrides on both sides of --config/--resume
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command in ("fit", "compare") and os.environ.get(OVERRIDES_ENV):
        args.overrides = [*shlex.split(os.environ[OVERRIDES_ENV]), *args.overrides]  # the command line's own win
    try:
        return args.handler(args)
    except KeyboardInterrupt:  # before a run started (fit handles its own): nothing to keep
        print("interrupted by Ctrl-C", file=sys.stderr)
        return 130


def _refuse(error: Exception) -> int:
    """Print ``error`` as one escaped line on stderr; exit code 2 (the command was refused)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    print(f"error: {_printable(text)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
