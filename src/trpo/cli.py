"""`trpo` command line: train, eval, export, plot, compare, benchmark, presets.

Maps arguments to the library only."""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import textwrap
import time
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
    field_docs,
    parse_key_values,
    resolve_settings,
    type_name,
)
from trpo.presets import PRESETS, preset_for

if typing.TYPE_CHECKING:
    from trpo.api import TRPO

RUNS_ROOT = Path("runs")
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
            out.append(following)  # a positional or another option: done with this flag
            if following in KEY_VALUE_FLAGS:
                out.extend(split_key_values(list(words)))
            break
    return out


MOST_USED = ("max_kl", "steps_per_iter", "n_envs", "gamma", "gae_lambda", "seed", "total_steps")
"""The settings `trpo train --help` lists with their defaults."""


def _train_epilog() -> str:
    docs, defaults = field_docs(), Config().to_dict()
    width = min(shutil.get_terminal_size((100, 24)).columns, 100)
    lines = ["most used settings (--set KEY=VALUE; every setting: --help-config):"]
    for name in MOST_USED:
        first = f"  {name}={_shown(defaults[name])}"
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
        "interrupted grid), then writes results.md, results.json and one ENV.png per env.",
    )
    bench.add_argument("envs", help="comma-separated Gymnasium ids, e.g. Hopper-v5,Swimmer-v5")
    _add_grid_arguments(bench, "output directory (default runs/benchmark)")
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


def cmd_train(args: argparse.Namespace) -> int:
    if args.help_config:
        print(config_table() if args.help_config == "markdown" else config_text())
        return 0
    if args.resume is not None:
        return _resume(args)
    if not args.env_id:
        raise CLIError("train needs an environment id, e.g. `trpo train CartPole-v1`")
    settings = resolve_args_settings(args)
    config = settings.config
    run_dir = args.run_dir or RUNS_ROOT / f"{config.env_id}-{config.algo}-s{config.seed}"
    from trpo import rundir

    if rundir.has_content(run_dir) and not args.overwrite:
        raise CLIError(
            f"run directory {run_dir} already exists: pass --overwrite to replace it, "
            f"--resume {run_dir} to continue it, or --run-dir to choose another"
        )
    from trpo.api import TRPO

    # builds, resets and steps the env and estimates the memory: writes nothing
    agent = TRPO(config=settings, run_dir=run_dir, force=args.force)
    try:
        rundir.acquire(run_dir)  # held from here until the run ends: one writer
    except BaseException:
        agent.close()
        raise
    try:
        rundir.clear(run_dir)
        return _train(agent, run_dir, args, config.total_steps)
    finally:
        rundir.release(run_dir)


def _resume(args: argparse.Namespace) -> int:
    from trpo.api import TRPO

    run_dir = args.resume
    ignored = [
        name
        for name, given in (
            ("--set", args.set),
            ("--config", args.config is not None),
            ("--seed", args.seed is not None),
            ("--env-kwargs", args.env_kwargs),
        )
        if given
    ]
    for name, given in (("--run-dir", args.run_dir is not None), ("--overwrite", args.overwrite)):
        if given:
            raise CLIError(
                f"--resume continues {run_dir} in place: {name} does not go with it (to start "
                "a new run, leave out --resume)"
            )
    if ignored:
        raise CLIError(
            f"--resume continues {run_dir} with its saved settings; only --steps, --vec, "
            f"--backend, --workers, --ray-address and --device may change them, not "
            f"{', '.join(ignored)}"
        )
    checkpoint = run_dir / "last.safetensors"
    if not checkpoint.exists():
        raise CLIError(f"no checkpoint to resume from: {checkpoint} does not exist")
    overrides = _execution_settings(args)
    if args.steps is not None:  # the new target, as config.json will record it
        overrides["total_steps"] = args.steps
    agent = TRPO.load(checkpoint, run_dir=run_dir, **overrides)
    _check_resumable(agent.config, run_dir, args.env_id, set(overrides))
    trainer = agent.trainer
    print(f"resuming {run_dir} at iteration {trainer.iteration}, step {trainer.steps:,}")
    total = agent.config.total_steps if args.steps is None else args.steps
    return _train(agent, run_dir, args, total)


def _check_resumable(config: Config, run_dir: Path, env_id: str | None, changing: set[str]) -> None:
    """Refuse a resume that would silently ignore what the user gave or edited: another
    env id on the command line, or a config.json whose settings differ from the
    checkpoint's (the settings this resume is ``changing`` aside)."""
    if env_id is not None and env_id != config.env_id:
        raise CLIError(
            f"{run_dir} is a run on {config.env_id}, not {env_id}: leave out the env id to "
            "resume it, or start a new run without --resume"
        )
    path = run_dir / "config.json"
    if not path.exists():
        return
    try:
        written = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CLIError(f"cannot read {path}: {err}") from None
    saved = config.to_dict()
    if not isinstance(written, dict):
        raise CLIError(f"{path} does not hold a table of settings")
    differ = [
        f"{key}={written.get(key)!r} (checkpoint: {value!r})"
        for key, value in json.loads(json.dumps(saved)).items()
        if key not in changing and written.get(key) != value
    ]
    differ += [f"{key} (unknown setting)" for key in written.keys() - saved.keys()]
    if differ:
        raise CLIError(
            f"{path} differs from the checkpoint it would resume: {', '.join(differ)}; a "
            "resume continues with the checkpoint's settings. Restore config.json, or start "
            "a new run with the new settings (--config)"
        )


def _train(agent: TRPO, run_dir: Path, args: argparse.Namespace, total_steps: int) -> int:
    from trpo.plot import plot_runs
    from trpo.run import Terminated

    started = time.perf_counter()
    try:
        agent.learn(total_steps, progress=not args.no_progress)
    except OSError as err:
        if not (run_dir / "last.safetensors").exists():
            raise
        raise CLIError(
            f"{_user_error(err)} (writing {run_dir}); its last checkpoint is intact: fix "
            f"the cause (e.g. free disk space) and continue with `trpo train --resume {run_dir}`"
        ) from None
    except Terminated as terminated:
        # learn() abandoned the running iteration and saved the one before it as last
        at = terminated.saved or {"iteration": 0, "steps": 0}
        print(
            f"\nterminated (SIGTERM): saved the last whole iteration ({at['iteration']}, step "
            f"{at['steps']:,}); resume with:\n  trpo train --resume {run_dir}",
            file=sys.stderr,
        )
        return 143
    except KeyboardInterrupt:
        # learn() saved last.safetensors after the last whole iteration (or, after a second
        # Ctrl-C, the periodic checkpoint before it stays).
        print(
            f"\ninterrupted at step {agent.steps:,}; resume from the last checkpoint with:\n"
            f"  trpo train --resume {run_dir}",
            file=sys.stderr,
        )
        return 130
    finally:
        agent.close()
    seconds = time.perf_counter() - started
    plot_runs([run_dir], run_dir / "learning_curve.png")
    print(
        f"done: {agent.steps:,} steps in {seconds:.1f} s; {_score_line(agent)}; "
        f"run directory {run_dir}"
    )
    return 0


def _score_line(agent: TRPO) -> str:
    if not math.isnan(agent.score):
        return f"score (mean of last evaluations) {agent.score:.1f}"
    every = agent.config.eval_every
    if every == 0:
        return "no score: evaluation is off (eval_every=0)"
    return f"no score yet: the run ended before its first evaluation (every {every} iterations)"


def _shown(value: Any) -> Any:
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def config_text(width: int | None = None) -> str:
    """Every setting as a block for a terminal: ``name = default  (type)`` and its
    meaning wrapped to ``width`` (default: the terminal's, at most 100 columns)."""
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 100)
    docs = field_docs()
    hints = typing.get_type_hints(Config)
    blocks = []
    for name, default in Config().to_dict().items():
        shown = _shown(default) if default not in ((), {}, "") else "(empty)"
        head = f"{name} = {shown}  ({type_name(hints[name])})"
        body = textwrap.fill(
            docs.get(name, ""), max(width, 40), initial_indent="    ", subsequent_indent="    "
        )
        head = "\n".join(textwrap.wrap(head, max(width, 40), subsequent_indent="    "))
        blocks.append(f"{head}\n{body}" if body else head)
    footer = "Set any of them with --set NAME=VALUE or in a --config file (TOML or JSON)."
    return "\n\n".join(blocks) + "\n\n" + textwrap.fill(footer, max(width, 40))


def config_table() -> str:
    docs = field_docs()
    defaults = Config().to_dict()
    hints = typing.get_type_hints(Config)
    lines = ["| setting | default | type | meaning |", "|---|---|---|---|"]
    for name, default in defaults.items():
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        lines.append(f"| `{name}` | `{shown}` | {type_name(hints[name])} | {docs.get(name, '')} |")
    return "\n".join(lines)


# -- compare ---------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace) -> int:
    from trpo.compare import compare_cells, markdown_table, write_report
    from trpo.envs import check_env_id

    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    unknown = sorted(set(algos) - set(ALGOS))
    if unknown or not algos or len(set(algos)) < len(algos):
        raise CLIError(f"--algos takes distinct names from {','.join(ALGOS)}, got {args.algos!r}")
    config = resolve_args(args)
    check_env_id(config.env_id, config.env_modules)
    seeds = _seed_range(config.seed, args.seeds, args.workers)
    out = args.out or RUNS_ROOT / f"compare-{config.env_id}"
    cells = compare_cells(config, algos, seeds, out)  # validates every seed before any run
    print(f"{len(cells)} runs ({', '.join(algos)} x seeds {seeds[0]}-{seeds[-1]}) in {out}")
    if not _run_cells(cells, args):
        return 130
    summaries = write_report(out, cells, _command(args))
    print(markdown_table(summaries, config.max_kl))
    print(f"wrote {out / 'summary.md'}, {out / 'returns.png'}, {out / 'kl.png'}")
    return 0


# -- benchmark -------------------------------------------------------------------------
def cmd_benchmark(args: argparse.Namespace) -> int:
    from trpo.benchmark import benchmark_cells, results_table, write_results
    from trpo.envs import check_env_id

    env_ids = [e.strip() for e in args.envs.split(",") if e.strip()]
    if not env_ids or len(set(env_ids)) < len(env_ids):
        raise CLIError(f"benchmark takes distinct comma-separated env ids, got {args.envs!r}")
    configs = []
    for env_id in env_ids:  # each env: defaults < its preset < --config < --set < flags
        configs.append(resolve_args(args, env_id))
        check_env_id(env_id, configs[-1].env_modules)
    seeds = _seed_range(configs[0].seed, args.seeds, args.workers)
    out = args.out or RUNS_ROOT / "benchmark"
    cells = benchmark_cells(configs, seeds, out)
    print(f"{len(cells)} runs ({', '.join(env_ids)} x seeds {seeds[0]}-{seeds[-1]}) in {out}")
    if not _run_cells(cells, args):
        return 130
    print(results_table(write_results(out, cells, _command(args))))
    print(f"wrote {out / 'results.md'} and one PNG per env")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line as typed, for the reports."""
    return "trpo " + " ".join(shlex.quote(a) for a in args.argv)


def _seed_range(first: int, count: int, workers: int) -> list[int]:
    if count <= 0 or workers <= 0:
        raise CLIError("--seeds and --workers must be positive")
    return list(range(first, first + count))


def _run_cells(cells: list, args: argparse.Namespace) -> bool:
    """Run a grid; False when Ctrl-C stopped it (finished runs stay for the next call)."""
    from trpo.grid import run_grid

    if args.overwrite:
        from trpo import rundir

        for cell in cells:
            if cell.run_dir.exists():
                with rundir.RunDirLock(cell.run_dir):  # not under another process's run
                    rundir.clear(cell.run_dir)
    try:
        run_grid(cells, args.workers)
    except KeyboardInterrupt as interrupt:
        from trpo.run import Terminated

        if isinstance(interrupt, Terminated):
            raise  # main() reports it and exits 143
        print(
            "\ninterrupted: finished runs are kept; rerun the same command to complete the grid",
            file=sys.stderr,
        )
        return False
    return True


# -- eval, plot, presets ---------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from trpo.agent import Agent
    from trpo.envs import env_factory
    from trpo.evaluate import EVAL_SEED_OFFSET, Evaluator, play

    if args.episodes <= 0:
        raise CLIError(f"--episodes must be positive, got {args.episodes}")
    named = {"best", "final", "last"}
    path = (
        args.run_dir / f"{args.checkpoint}.safetensors"
        if args.checkpoint in named
        else Path(args.checkpoint)
    )
    if args.checkpoint == "best" and not path.exists():
        path = args.run_dir / "final.safetensors"
    if not path.exists():
        raise CLIError(f"checkpoint {path} does not exist")
    agent = Agent.load(path)  # the policy and its normaliser only: no training envs
    config = agent.config
    seed = config.seed + EVAL_SEED_OFFSET if args.seed is None else args.seed
    if args.render or args.video:
        result = play(agent, args.episodes, seed, render=args.render, video_dir=args.video)
    else:
        factory = env_factory(config.env_id, config.env_kwargs, config.env_modules)
        evaluator = Evaluator(factory, args.episodes)
        try:
            result = evaluator.run(agent, seed)
        finally:
            evaluator.close()
    print(f"checkpoint: {path}")
    print(f"episodes: {len(result.returns)}  return: {result.mean:.2f} ± {result.std:.2f}")
    print("returns: " + ", ".join(f"{r:.1f}" for r in result.returns))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from trpo.agent import Agent
    from trpo.export import SUFFIXES, export_policy

    named = {"best", "final", "last"}
    if args.checkpoint in named:
        path = args.run_dir / f"{args.checkpoint}.safetensors"
        if args.checkpoint == "best" and not path.exists():
            path = args.run_dir / "final.safetensors"
    else:
        path = Path(args.checkpoint)
    if not path.exists():
        raise CLIError(f"checkpoint {path} does not exist")
    agent = Agent.load(path)
    output = args.output or args.run_dir / f"policy{SUFFIXES[args.format]}"
    export_policy(agent, output, args.format)
    print(f"wrote {output} ({args.format}, from {path}): raw observations in, env actions out")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from trpo.plot import plot_runs

    for run_dir in args.run_dirs:
        if not (run_dir / "metrics.csv").exists():
            raise CLIError(f"{run_dir} has no metrics.csv: is it a trpo run directory?")
    if args.output is not None:
        output = args.output
    elif len(args.run_dirs) == 1:
        output = args.run_dirs[0] / "learning_curve.png"
    else:
        output = Path("learning_curves.png")
    plot_runs(args.run_dirs, output)
    print(f"wrote {output}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    if args.env_id is not None:
        if args.env_id not in PRESETS:
            raise CLIError(
                f"no preset for {args.env_id}; presets exist for: {', '.join(sorted(PRESETS))}"
            )
        preset = preset_for(args.env_id)
        print(json.dumps(preset, indent=2))
        if not preset:
            hint = f"{args.env_id} runs with the defaults (`trpo train --help-config`)"
            print(hint, file=sys.stderr)
        return 0
    for env_id, preset in PRESETS.items():
        settings = " ".join(f"{k}={v}" for k, v in preset.items()) or "(defaults)"
        print(f"{env_id:<28} {settings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
