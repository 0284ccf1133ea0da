"""What each `trpo` subcommand does with its parsed arguments (`trpo.cli` parses them):
train (and resume), eval, export, plot, compare, benchmark, presets."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
import typing
from pathlib import Path

from trpo.cli import (
    ALGOS,
    CLIError,
    _execution_settings,
    _user_error,
    resolve_args,
    resolve_args_settings,
)
from trpo.config import Config
from trpo.config_text import config_table, config_text
from trpo.presets import ATARI, MINATAR, PRESETS, has_preset, preset_for
from trpo.rundir import env_dir_name

if typing.TYPE_CHECKING:
    from trpo.api import TRPO


RUNS_ROOT = Path("runs")


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
    name = f"{env_dir_name(config.env_id)}-{config.algo}-s{config.seed}"
    run_dir = args.run_dir or RUNS_ROOT / name
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
    out = args.out or RUNS_ROOT / f"compare-{env_dir_name(config.env_id)}"
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
    from trpo.benchmark import (
        benchmark_cells,
        by_env_and_seed,
        earlier_runs,
        results_table,
        write_results,
    )
    from trpo.envs import check_env_id

    env_ids = [e.strip() for e in args.envs.split(",") if e.strip()]
    if not env_ids or len(set(env_ids)) < len(env_ids):
        raise CLIError(f"benchmark takes distinct comma-separated env ids, got {args.envs!r}")
    configs = []
    for env_id in env_ids:  # each env: defaults < its preset < --config < --set < flags
        configs.append(_evaluated_every(resolve_args(args, env_id), args.eval_every_steps))
        check_env_id(env_id, configs[-1].env_modules)
    seeds = _seed_range(configs[0].seed, args.seeds, args.workers)
    out = args.out or RUNS_ROOT / "benchmark"
    cells = benchmark_cells(configs, seeds, out)
    print(f"{len(cells)} runs ({', '.join(env_ids)} x seeds {seeds[0]}-{seeds[-1]}) in {out}")
    if args.report_only:
        cells = _finished_by_metrics(cells, out)
    elif not _run_cells(cells, args):
        return 130
    earlier = earlier_runs(out, cells)
    if earlier.reported:
        names = ", ".join(cell.run_dir.name for cell in earlier.reported)
        print(f"also reported, finished earlier in {out}: {names}")
    for names, why in (
        (earlier.other_settings, "their env ran with other settings in this report"),
        (earlier.unreadable, "their config.json does not load"),
    ):
        if names:
            print(f"left out of the report ({why}): {', '.join(names)}")
    cells = by_env_and_seed(cells + earlier.reported)
    print(results_table(write_results(out, cells, _command(args), earlier.reported)))
    print(f"wrote {out / 'results.md'} and one PNG per env")
    return 0


def _evaluated_every(config: Config, steps: int | None) -> Config:
    """`--eval-every-steps`: ``config`` evaluating every ``steps`` env steps."""
    if steps is None:
        return config
    if steps <= 0 or steps % config.steps_per_iter:
        raise CLIError(
            f"--eval-every-steps {steps} is not a positive multiple of {config.env_id}'s "
            f"steps_per_iter ({config.steps_per_iter}): evaluations come after whole iterations"
        )
    return config.replace(eval_every=steps // config.steps_per_iter)


def _finished_by_metrics(cells: list, out: Path) -> list:
    """`--report-only`: the cells whose metrics.csv reaches their steps, each checked to
    have run with the cell's settings; the others are named and left out."""
    finished, missing = [], []
    for cell in cells:
        if not cell.logged_to_the_end:
            missing.append(cell.run_dir.name)
            continue
        differ = cell.settings_differ()
        if differ:
            raise CLIError(
                f"{cell.run_dir} ran with other settings ({', '.join(differ)}) than this "
                "command's: give the same --set, --config and flags as the grid was run with"
            )
        finished.append(cell)
    if missing:
        print(f"left out, not finished or not run: {', '.join(missing)}")
    if not finished:
        raise CLIError(f"no finished runs in {out} to report: run the grid without --report-only")
    return finished


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
    from trpo.checkpoint import run_checkpoint
    from trpo.envs import env_factory
    from trpo.evaluate import EVAL_SEED_OFFSET, Evaluator, play

    if args.episodes <= 0:
        raise CLIError(f"--episodes must be positive, got {args.episodes}")
    path = run_checkpoint(args.run_dir, args.checkpoint)
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
    from trpo.checkpoint import run_checkpoint
    from trpo.export import SUFFIXES, export_policy

    path = run_checkpoint(args.run_dir, args.checkpoint)
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
        if not has_preset(args.env_id):
            raise CLIError(
                f"no preset for {args.env_id}; presets exist for: {', '.join(sorted(PRESETS))}"
                ", and every Atari (ALE/*) and MinAtar (MinAtar/*) game"
            )
        preset = preset_for(args.env_id)
        print(json.dumps(preset, indent=2))
        if not preset:
            hint = f"{args.env_id} runs with the defaults (`trpo train --help-config`)"
            print(hint, file=sys.stderr)
        return 0
    families = {"ALE/* (Atari)": ATARI, "MinAtar/*": MINATAR}
    for env_id, preset in {**PRESETS, **families}.items():
        settings = " ".join(f"{k}={v}" for k, v in preset.items()) or "(defaults)"
        print(f"{env_id:<28} {settings}")
    return 0
