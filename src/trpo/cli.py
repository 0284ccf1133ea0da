"""`trpo` command line: train, eval, export, plot, compare, benchmark, presets.

Maps arguments to the library only."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
import tomllib
import typing
from pathlib import Path
from typing import Any

from trpo.config import (
    Algo,
    Config,
    ConfigError,
    Settings,
    choices,
    resolve_settings,
)
from trpo.config_text import field_docs, parse_key_values, shown

if typing.TYPE_CHECKING:
    pass

ALGOS = typing.get_args(Algo)
COMPARED = ("vpg", "npg", "trpo")
"""`trpo compare`'s default: the comparison TRPO's theory is built on."""


class CLIError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        # argparse's own errors (unknown option, bad int, …) in the same one-line form
        self.exit(2, f"trpo: error: {_one_line(message)} (see `{self.prog} --help`)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(split_key_values(argv))
    except SystemExit as exit_:  # --help, or a usage error already printed
        return int(exit_.code or 0)
    args.argv = argv
    if args.command is None:
        parser.print_help()
        return 2
    _terminate_as_interrupt()
    try:
        return args.handler(args)
    except KeyboardInterrupt as interrupt:
        from trpo.run import Terminated

        if isinstance(interrupt, Terminated):
            print("trpo: terminated (SIGTERM)", file=sys.stderr)
            return 143
        print("trpo: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - user errors become one line, see _user_error
        message = _user_error(err)
        if message is None:
            raise
        print(f"trpo: error: {_one_line(message)}", file=sys.stderr)
        return 2


def _terminate_as_interrupt() -> None:
    """Until a run takes over SIGTERM (`trpo.run`), it stops the command as Ctrl-C does,
    with one line and exit status 143, instead of killing it silently mid-setup."""
    import signal
    import threading

    def terminate(signum: int, frame: typing.Any) -> None:
        from trpo.run import Terminated

        raise Terminated

    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminate)


def _one_line(message: str) -> str:
    """Escape line breaks and other control characters (from user input echoed in a
    message), so an error is always exactly one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _user_error(err: Exception) -> str | None:
    from trpo.checkpoint import CheckpointError
    from trpo.distributed import BackendError
    from trpo.envs import EnvError
    from trpo.export import ExportError
    from trpo.grid import GridError
    from trpo.policies import UnsupportedSpaceError
    from trpo.rundir import RunDirLockedError

    known = (
        RunDirLockedError
        | CLIError
        | ConfigError
        | EnvError
        | CheckpointError
        | UnsupportedSpaceError
        | GridError
        | BackendError
        | ExportError
    )
    if isinstance(err, known):
        return str(err)
    if isinstance(err, OSError):  # unwritable or full disk, missing file, …
        reason = err.strerror or str(err)
        return f"{reason}: {err.filename}" if err.filename else reason
    return None


KEY_VALUE_FLAGS = ("--set", "--env-kwargs")


def split_key_values(argv: list[str]) -> list[str]:
    """``--set a=1 b=2`` as ``--set a=1 --set b=2``: a flag takes one KEY=VALUE, and the
    words with ``=`` after it are its too, so a following env id (which has no ``=``) stays
    a positional argument, and options may come before or after it."""
    out: list[str] = []
    words = iter(argv)
    for word in words:
        out.append(word)
        if word == "--":
            out.extend(words)
            break
        if word not in KEY_VALUE_FLAGS:
            continue
        value = next(words, None)
        if value is None:
            break
        out.append(value)
        for following in words:
            if "=" in following and not following.startswith("-"):
                out += [word, following]
                continue
            # a positional or another option (maybe another KEY=VALUE flag): done with this one
            out.extend(split_key_values([following, *words]))
            break
    return out


MOST_USED = ("max_kl", "steps_per_iter", "n_envs", "gamma", "gae_lambda", "seed", "total_steps")
"""The settings `trpo train --help` lists with their defaults."""


def _train_epilog() -> str:
    docs, defaults = field_docs(), Config().to_dict()
    width = min(shutil.get_terminal_size((100, 24)).columns, 100)
    lines = ["most used settings (--set KEY=VALUE; every setting: --help-config):"]
    for name in MOST_USED:
        first = f"  {name}={shown(defaults[name])}"
        doc = docs.get(name, "").split(". ")[0].rstrip(".")
        lines += textwrap.wrap(
            doc, width, initial_indent=f"{first:<26}", subsequent_indent=" " * 26
        ) or [first]
    lines += [
        "",
        "settings resolve as: defaults < the env's preset (--no-preset skips it) < --config",
        "< --set < flags. Options may come before or after ENV_ID. Your own env:",
        "  trpo train mypkg.envs:MyEnv-v0      (imports mypkg.envs, as gymnasium.make does)",
        "  trpo train MyEnv-v0 --import mypkg.envs",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    from trpo.commands import (  # what the subcommands do; it reads this module's helpers
        cmd_benchmark,
        cmd_compare,
        cmd_eval,
        cmd_export,
        cmd_plot,
        cmd_presets,
        cmd_train,
    )

    parser = _Parser(
        prog="trpo", description="Trust Region Policy Optimization on Gymnasium environments."
    )
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser(
        "train",
        help="train a policy and write a run directory",
        epilog=_train_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "env_id",
        nargs="?",
        help="Gymnasium environment id, e.g. CartPole-v1, ALE/Pong-v5 or mypkg.envs:MyEnv-v0",
    )
    _add_settings_arguments(train)
    train.add_argument(
        "--run-dir", type=Path, help="output directory (default runs/ENV-ALGO-sSEED)"
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue a run from its last checkpoint"
    )
    train.add_argument("--no-progress", action="store_true", help="no live progress bar")
    train.add_argument(
        "--force",
        action="store_true",
        help="train even when the settings' memory estimate exceeds the memory available",
    )
    train.add_argument(
        "--vec",
        choices=choices()["vec"],
        help="step the envs in this process, in subprocesses or in EnvPool's thread pool",
    )
    train.add_argument(
        "--backend", choices=choices()["backend"], help="collect rollouts here or on Ray actors"
    )
    train.add_argument(
        "--workers", dest="ray_workers", type=int, help="Ray actors collecting rollouts (Ray only)"
    )
    train.add_argument(
        "--ray-address", metavar="ADDR", help="join this Ray cluster (default: start a local one)"
    )
    train.add_argument("--device", help="where the update runs: cpu (default), cuda or cuda:N")
    train.add_argument(
        "--help-config",
        nargs="?",
        const="text",
        choices=("text", "markdown"),
        help="list every setting with its default and exit (markdown: as a table)",
    )
    train.set_defaults(handler=cmd_train)

    evaluate = sub.add_parser("eval", help="evaluate a trained run")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument(
        "--checkpoint", default="best", help="best, final, last, or a path (default best)"
    )
    evaluate.add_argument("--seed", type=int, default=None, help="first reset seed")
    evaluate.add_argument("--render", action="store_true", help="show the episodes in a window")
    evaluate.add_argument("--video", type=Path, metavar="DIR", help="record the episodes as MP4")
    evaluate.set_defaults(handler=cmd_eval)

    export = sub.add_parser(
        "export",
        help="write a run's deterministic policy as TorchScript or ONNX, for deployment",
        description="The exported graph holds the observation normaliser and the action "
        "clipping too: raw observations in, env actions out; no trpo needed to run it.",
    )
    export.add_argument("run_dir", type=Path)
    export.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    export.add_argument(
        "--checkpoint", default="best", help="best, final, last, or a path (default best)"
    )
    export.add_argument(
        "-o", "--output", type=Path, help="output file (default RUN_DIR/policy.pt or .onnx)"
    )
    export.set_defaults(handler=cmd_export)

    plot = sub.add_parser("plot", help="plot learning curves of one or more runs")
    plot.add_argument("run_dirs", type=Path, nargs="+")
    plot.add_argument("-o", "--output", type=Path, help="PNG path (default: in the run dir)")
    plot.set_defaults(handler=cmd_plot)

    compare = sub.add_parser(
        "compare",
        help="train vanilla PG, natural PG and TRPO on one env and compare them",
        description="Runs algos x seeds in parallel processes (rerun to complete an "
        "interrupted grid), then writes returns.png, kl.png and summary.md.",
    )
    compare.add_argument("env_id", help="Gymnasium environment id, e.g. CartPole-v1")
    compare.add_argument(
        "--algos",
        default=",".join(COMPARED),
        help=f"comma-separated, from {','.join(ALGOS)} (default {','.join(COMPARED)})",
    )
    _add_grid_arguments(compare, "output directory (default runs/compare-ENV)")
    compare.set_defaults(handler=cmd_compare)

    bench = sub.add_parser(
        "benchmark",
        help="train envs x seeds with their presets and tabulate the scores",
        description="Runs envs x seeds in parallel processes (rerun to complete an "
        "interrupted grid), then writes results.md, results.json and one ENV.png per env "
        "over every finished run in the output directory.",
    )
    bench.add_argument("envs", help="comma-separated Gymnasium ids, e.g. Hopper-v5,Swimmer-v5")
    _add_grid_arguments(bench, "output directory (default runs/benchmark)")
    bench.add_argument(
        "--eval-every-steps",
        type=int,
        metavar="N",
        help="evaluate every N env steps in every env, whatever its batch size (sets each "
        "env's eval_every to N / steps_per_iter), so that envs and libraries compare alike",
    )
    bench.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the results from the finished runs' metrics.csv in --out "
        "(a grid kept without its checkpoints)",
    )
    bench.set_defaults(handler=cmd_benchmark)

    presets = sub.add_parser("presets", help="show the tuned presets")
    presets.add_argument("env_id", nargs="?")
    presets.set_defaults(handler=cmd_presets)
    return parser


def _add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that resolve a run's Config (see `resolve_config`)."""
    parser.add_argument("--steps", type=int, help="environment steps per run (total_steps)")
    parser.add_argument("--seed", type=int, help="random seed (config seed; compare: the first)")
    key_values = {"action": "append", "default": [], "metavar": "KEY=VALUE"}
    parser.add_argument(
        "--set",
        help="override a setting, e.g. --set max_kl=0.02 policy_hidden=64,64 (repeatable)",
        **key_values,
    )
    parser.add_argument("--config", type=Path, help="TOML or JSON file of settings")
    parser.add_argument(
        "--env-kwargs",
        help="keyword arguments for gymnasium.make, e.g. --env-kwargs max_episode_steps=200",
        **key_values,
    )
    parser.add_argument("--no-preset", action="store_true", help="ignore the env's tuned preset")
    parser.add_argument(
        "--import",
        dest="env_modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (which registers your envs) wherever envs are built (repeatable)",
    )


def _add_grid_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """The options of the commands that run a grid of runs (compare, benchmark)."""
    parser.add_argument(
        "--seeds", type=int, default=3, help="number of seeds, from --seed on (default 3)"
    )
    _add_settings_arguments(parser)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="parallel runs (default: cores)"
    )
    parser.add_argument("--out", type=Path, help=out_help)
    parser.add_argument("--overwrite", action="store_true", help="retrain finished runs too")


# -- train -----------------------------------------------------------------------------
EXECUTION_FLAGS = ("vec", "backend", "ray_workers", "ray_address", "device")
"""`trpo train` flags for where a run executes, which a resumed run may change (it continues
bit for bit only where they give the same arithmetic: not across vec=envpool or a GPU)."""


def resolve_args(args: argparse.Namespace, env_id: str | None = None) -> Config:
    """The run's settings from the command line (see `trpo.config.resolve_settings`)."""
    return resolve_args_settings(args, env_id).config


def resolve_args_settings(args: argparse.Namespace, env_id: str | None = None) -> Settings:
    """`resolve_args`, with where each setting came from."""
    direct: dict[str, Any] = {}
    if args.steps is not None:
        direct["total_steps"] = args.steps
    if args.seed is not None:
        direct["seed"] = args.seed
    direct.update(_execution_settings(args))
    if args.env_modules:
        direct["env_modules"] = tuple(args.env_modules)
    pairs: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value.strip()
    env_id = env_id or args.env_id
    file_values = _read_config_file(args.config) if args.config is not None else None
    given_ids = (("--set", pairs.get("env_id")), ("--config", (file_values or {}).get("env_id")))
    for source, given in given_ids:
        if given is not None and env_id is not None and given != env_id:
            raise CLIError(
                f"{source} env_id={given} conflicts with the environment id {env_id} given "
                "on the command line: give the env once"
            )
    return resolve_settings(
        env_id,
        preset=not args.no_preset,
        file_values=file_values,
        set_pairs=pairs,
        values=direct,
        env_kwargs=dict(parse_key_values(args.env_kwargs)),
    )


def _execution_settings(args: argparse.Namespace) -> dict[str, Any]:
    given = {name: getattr(args, name, None) for name in EXECUTION_FLAGS}
    return {name: value for name, value in given.items() if value is not None}


def _read_config_file(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    try:
        text = data.decode()
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise CLIError(f"cannot parse config file {path}: {err}") from None
    if not isinstance(values, dict):
        raise CLIError(f"config file {path} must hold a table of settings")
    return values


if __name__ == "__main__":
    sys.exit(main())
