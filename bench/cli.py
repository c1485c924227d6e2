"""`bench`: run experiments and manage datasets, with Hydra override syntax.

    bench run method=prompt_dt tasks=mt5 scale=smoke seed=1
    bench run -m method=mtdt,prompt_dt seed=0,1,2 tasks=mt5 scale=quick
    bench run --cfg job method=mtdt            # print the resolved config
    bench data generate tasks=mt5 data=near_optimal episodes_per_task=100
    bench data import-npz /path/to/MT50 --out data/mt50-published
    bench data import-prompt-dt /path/to/prompt-dt --family cheetah_vel --out data/cheetah-vel
    bench data verify data/replay-ep2000
    bench data info data/replay-ep100             # per task: return spread, success fractions
    bench methods
    bench analyze runs/mt5/near_optimal/harmodt_f/seed0
    bench perf train method=harmodt_f threads=2   # speed of one stage (docs/performance.md)

User mistakes print one line `error: ...` and exit with status 2.
"""

from __future__ import annotations

import argparse
import difflib
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import yaml

from bench.errors import Interrupted, RunFailed, UserError, unknown_choice
from bench.stop_signals import one_line_stops, stop_line

if TYPE_CHECKING:
    from bench.settings import Settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def _version() -> str:
    from importlib.metadata import version

    from bench.config import REPO_ROOT
    from bench.results import git_commit

    commit = git_commit(REPO_ROOT)
    dirty = "+dirty" if commit["dirty"] else ""
    return f"mtbench {version('mtbench')} (commit {commit['commit'][:12]}{dirty})"


class _VersionAction(argparse.Action):
    """`--version`, computed only when asked (it runs git)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(_version())
        parser.exit(0)


# Each subcommand's arguments are added by `_add_<command>`, beside its handler `_<command>`
# (`data` keeps both in bench/data/command.py; `perf` hands its arguments to bench/perf/command.py).
_Commands = argparse._SubParsersAction  # what add_subparsers returns (argparse has no public name)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Offline multi-task RL benchmark harness.")
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="version and commit")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # In this order in `bench --help`.
    for add in (_add_run, _add_data, _add_experts, _add_status, _add_methods, _add_report,
                _add_perf, _add_analyze):  # fmt: skip
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command; a Ctrl-C or SIGTERM that no work handles is one line, never a traceback
    (bench.stop_signals.one_line_stops)."""
    with one_line_stops():
        try:
            return _command(argv)
        except KeyboardInterrupt:
            print(stop_line(signal.SIGINT), file=sys.stderr)
            return 128 + signal.SIGINT


def _command(argv: Sequence[str] | None) -> int:
    try:
        # Building the parser reads MTBENCH_PLUGINS' folders (`bench run --help` lists their
        # configs): a bad one is a one-line error even for `--version`.
        parser = _parser()
        args, extra = parser.parse_known_args(argv)
        # Overrides after an option (`bench perf train --steps 5 method=mtdt`) are overrides too.
        if extra and hasattr(args, "overrides") and all(_is_override(arg) for arg in extra):
            args.overrides = [*args.overrides, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Interrupted as error:
        print(str(error), file=sys.stderr)
        return 128 + int(error.signal_number)
    except RunFailed as error:
        print(f"error: run failed: {error}", file=sys.stderr)
        return 1


def _is_override(arg: str) -> bool:
    return "=" in arg and not arg.startswith("-")


def _run_help() -> str:
    """The choices of every config group, read from configs/ (no method module is imported)."""
    from bench.config import group_choices

    lines = ["choices:"]
    for group in ("method", "tasks", "data", "scale", "size", "launcher"):
        lines.append(f"  {group}=  {', '.join(group_choices(group))}")
    lines += [
        "main keys (defaults: scale=paper, the paper's Table 6):",
        "  seed=0  device=cpu|cuda  precision=fp32|bf16  threads=N  train.steps=N",
        "  train.eval_every=N",
        "  eval.episodes=N  data.fraction=F  data.path=STORE  data.root=DIR",
        "  data.generator=replay|noisy_expert  logger=none|tensorboard|wandb|[tensorboard,wandb]",
        "  run.root=DIR  run.restart=true  method.<option>=V (see `bench methods <name>`)",
        "examples:",
        "  bench run method=harmodt_f tasks=mt5 scale=smoke",
        "  bench run -m method=harmodt_f method.sparsity=0.1,0.3 seed=0,1,2 tasks=mt5 scale=quick",
        "  bench run --cfg job method=mtdt       # the resolved config and run directory",
    ]
    return "\n".join(lines)


def _add_run(commands: _Commands) -> None:
    run = commands.add_parser(
        "run",
        help="train and evaluate one run (or a sweep with -m)",
        epilog=_run_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("-m", "--multirun", action="store_true", help="expand key=a,b sweeps")
    run.add_argument("--cfg", choices=["job"], help="print the resolved config and exit")
    run.add_argument(
        "--wait", action="store_true", help="launcher=slurm: block until the runs end, then compare"
    )
    run.add_argument(
        "--no-plan", action="store_true", help="skip the plan (a sweep prints one for its runs)"
    )
    run.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. method=mtdt seed=1")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from bench.config import REPO_ROOT
    from bench.plan import describe_plan
    from bench.run_claim import check_claimable
    from bench.settings import load_settings

    if args.multirun:
        from bench.launch import plan as sweep_jobs

        # One plan for the whole sweep, before its first run: every job checked and summed.
        jobs = [settings for _, settings in sweep_jobs(args.overrides)]
        local = all(s.launcher.local for s in jobs)
        if args.cfg == "job":  # every job's config, one YAML document each
            return _print_jobs(jobs, local)
        print(describe_plan(jobs, local=local), flush=True)
        return _launch(args.overrides, args.wait)
    settings = load_settings(args.overrides)
    local = settings.launcher.local
    # Before the plan, as a sweep's jobs are (bench.launch.check_jobs): a plan calling the run
    # done or timing its training, then a refusal, would contradict itself.
    check_claimable(settings)
    if args.cfg == "job":
        return _print_jobs([settings], local)
    if not args.no_plan:
        print(describe_plan([settings], local), flush=True)
    if not local:  # one run is a sweep of one job
        return _launch(args.overrides, args.wait)
    if args.wait:
        raise UserError("--wait is for launcher=slurm; a local run always waits")
    from bench.console import per_task_table
    from bench.runner import execute

    result = execute(settings, REPO_ROOT)
    print(per_task_table(result))
    print(f"\nresult: {settings.run_dir / 'result.json'}")
    if settings.scale == "smoke":
        print("scale=smoke: a check that everything runs end to end; these scores mean nothing")
    return 0


def _launch(overrides: Sequence[str], wait: bool) -> int:
    """The sweep through its launcher; once its runs have ended, the comparison of their
    results (read from their folders, as `bench report` reads them)."""
    from bench.launch import launch

    launched = launch(overrides, wait)
    if launched.ended:
        from bench.report import comparison_table

        table = comparison_table(launched.run_dirs)
        if table:
            print("\n" + table)
    return launched.code


def _print_jobs(jobs: Sequence[Settings], local: bool) -> int:
    """`--cfg job`: each job's resolved config, then the plan as YAML comments, so that the
    output still parses (one document per job)."""
    from bench.plan import describe_plan

    print(yaml.safe_dump_all([_job_view(s) for s in jobs], sort_keys=False), end="")
    print("\n".join(f"# {line}" for line in describe_plan(jobs, local).splitlines()))
    return 0


def _job_view(settings: Settings) -> dict[str, Any]:
    """The resolved config as `--cfg job` shows it: the run directory first, and the task list."""
    shown = dict(settings.config)
    shown["tasks"] = {**shown["tasks"], "tasks": list(settings.suite.tasks)}
    return {"run_dir": str(settings.run_dir), **shown}


def _add_data(commands: _Commands) -> None:
    from bench.data.command import add_data_command

    add_data_command(commands, _Parser)


def _add_experts(commands: _Commands) -> None:
    experts = commands.add_parser(
        "experts", help="evaluate Meta-World's scripted experts (tasks=, eval.episodes=, seed=)"
    )
    experts.add_argument("overrides", nargs="*")
    experts.set_defaults(handler=_experts)


def _experts(args: argparse.Namespace) -> int:
    """The scripted experts through the same evaluator: what "near-optimal" can mean on v3."""
    from bench.console import per_task_table
    from bench.envs.metaworld import ScriptedExpert
    from bench.evaluate import evaluate
    from bench.runner import eval_protocol
    from bench.settings import load_settings
    from bench.suites import SUITES

    settings = load_settings(args.overrides)
    suite = settings.suite
    if suite.benchmark.trains_experts:
        scripted = [name for name, other in SUITES.items() if not other.benchmark.trains_experts]
        raise UserError(
            f"tasks={suite.name} has no scripted experts (its SAC experts are trained by `bench "
            f"data generate`); bench experts runs Meta-World's: tasks={'|'.join(scripted)}"
        )
    scores = evaluate(
        suite,
        lambda task_id: ScriptedExpert(suite.tasks[task_id]),
        eval_protocol(settings),
        settings.progress,
    )
    described = {
        "method": "scripted expert",
        "suite": suite.name,
        "data": {"name": "-"},
        "seed": settings.seed,
        "scale": settings.scale,
        **scores,
        # evaluate() types its scores loosely; "protocol" is always a dict
        "protocol": {**cast(dict[str, Any], scores["protocol"]), "checkpoint": "-"},
    }
    print(per_task_table(described))
    return 0


def _add_status(commands: _Commands) -> None:
    status = commands.add_parser("status", help="list the runs below a folder and their state")
    status.add_argument("root", type=Path, nargs="?", default=Path("runs"))
    status.add_argument(
        "--curves",
        type=Path,
        nargs="?",
        const=Path("curves.png"),
        metavar="PATH",
        help="also draw every run's evaluations, finished or not, into PATH (curves.png)",
    )
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from bench.console import check_curves_path, status_curves, status_table

    if args.curves is not None:
        check_curves_path(args.curves)
    print(status_table(args.root))
    if args.curves is not None:
        print(status_curves(args.root, args.curves))
    return 0


def _add_methods(commands: _Commands) -> None:
    methods = commands.add_parser(
        "methods",
        help="the registered methods, a line each; with a name, its options as a run resolves them",
    )
    methods.add_argument("name", nargs="?", help="a method: its options and their values")
    methods.add_argument("overrides", nargs="*", help="e.g. scale=quick size=l1h2")
    methods.set_defaults(handler=_methods)


def _methods(args: argparse.Namespace) -> int:
    """A line per registered method: its name and the first comment line of its YAML. With a
    name: its options as a run with `overrides` resolves them (presets applied), as YAML."""
    from bench.config import compose_run, group_file
    from bench.registry import get_method, make_config, registered
    from bench.suites import get_suite

    if args.name:
        spec = get_method(args.name)  # an unknown name: one line naming the choices
        config = compose_run([f"method={args.name}", *args.overrides]).config
        section = {k: v for k, v in config["method"].items() if k != "name"}
        # The values a run would refuse are refused here (the method's own checks and the
        # suite's), before anything is printed.
        typed = make_config(spec, section)
        suite, steps = get_suite(config["tasks"]["name"]), int(config["train"]["steps"])
        typed.check_suite(suite)
        module = sys.modules[spec.config_cls.__module__].__file__
        print(f"# {args.name}: {spec.config_cls.__name__} in {Path(str(module)).name}; "
              f"scale={config['scale']['name']}. Set one with method.<option>=V.")  # fmt: skip
        print(yaml.safe_dump({"method": config["method"]}, sort_keys=False), end="")
        # What the section leaves to the run, worked out as the run will.
        if None in section.values():
            print("# null: worked out in the run from other values (its docs say how)")
        stages = typed.training_stages(steps)
        if len(stages) > 1:
            print(f"# stages of train.steps={steps}: " + ", ".join(
                f"{stage.name} {stage.steps} (from step {stage.first_step})" for stage in stages
            ))  # fmt: skip
        for note in typed.run_notes(suite):
            print(f"# note with tasks={suite.name}: {note}")
        return 0
    if args.overrides:
        raise UserError(f"{args.overrides[0]}: overrides need a method name (bench methods <name>)")
    lines = []
    for name in registered():
        text = group_file("method", name).read_text()
        comments = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
        lines.append(f"{name:<10} {comments[0] if comments else ''}")
    print("\n".join(lines))
    return 0


def _add_report(commands: _Commands) -> None:
    report = commands.add_parser(
        "report", help="the paper's tables, aggregates and plots from the results below a folder"
    )
    report.add_argument("root", type=Path, help="runs folder (every result.json below it)")
    report.add_argument("--out", type=Path, help="write here (e.g. reports/mt5.md), plots beside")
    report.add_argument("--format", default="md", help="md (default), latex, csv or json")
    report.add_argument("--bootstrap-reps", type=int, default=2000, help="resamples per interval")
    report.add_argument(
        "--strict", action="store_true", help="an unreadable result.json is an error, not a note"
    )
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    text = write_report(args.root, args.out, args.format, args.bootstrap_reps, strict=args.strict)
    print(f"{args.out}: written" if args.out else text, end="\n" if args.out else "")
    return 0


def _add_perf(commands: _Commands) -> None:
    perf = commands.add_parser(
        "perf",
        help="time one stage (train, mask-update, eval, data) on synthetic data",
        description="Time one stage on synthetic data of the configured shapes; prints a "
        "table and writes a JSON (docs/performance.md).",
    )
    perf.add_argument("stage", help="train | mask-update | eval | data")
    perf.add_argument("overrides", nargs="*", help="as for bench run (default scale=paper, mt50)")
    perf.add_argument("--steps", type=int, default=50, help="timed training steps per pass")
    perf.add_argument("--warmup", type=int, default=5, help="training steps before timing")
    perf.add_argument("--episodes", type=int, help="synthetic episodes per task")
    perf.add_argument("--eval-tasks", type=int, default=2, help="eval: how many suite tasks")
    perf.add_argument("--eval-steps", type=int, default=100, help="eval: steps per episode")
    perf.add_argument("--reference", help="the official code's figures: its JSON or its driver")
    perf.add_argument("--reference-python", help="python of the driver's venv")
    perf.add_argument("--json-out", help="where the JSON goes (default runs/perf/<stage>.json)")
    perf.add_argument("--store", help="data: a store folder to write once and reuse (kept)")
    perf.add_argument(
        "--ops", type=int, default=0, metavar="N",
        help="train, eval: profile N more training steps or policy calls op by op (torch.profiler)",
    )  # fmt: skip
    perf.add_argument(
        "--require-quiet", action="store_true", help="refuse when other processes are busy"
    )
    perf.set_defaults(handler=_perf)


def _perf(args: argparse.Namespace) -> int:
    from bench.perf.command import run_perf

    print(run_perf(
        args.stage, args.overrides, args.steps, args.warmup, args.episodes,
        args.eval_tasks, args.eval_steps, args.reference, args.reference_python,
        args.json_out, args.require_quiet, args.store, args.ops,
    ))  # fmt: skip
    return 0


def _add_analyze(commands: _Commands) -> None:
    analyze = commands.add_parser(
        "analyze",
        help="a run's harmony scores and task-mask t-SNE (PNG); `conflicts`: the paper's Fig. 2a; "
        "`conditioning`: what a trained DT's actions depend on",
        epilog="examples:\n  bench analyze runs/mt5/near_optimal/harmodt_f/seed0\n"
        "  bench analyze conflicts tasks=mt5,mt30 scale=quick train.steps=2000 "
        "--out reports/conflicts.md\n"
        "  bench analyze conditioning runs/mt5/near_optimal/prompt_dt/seed0 [data.root=...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analyze.add_argument(
        "target", help="a run directory (holding metrics.jsonl), `conflicts` or `conditioning`"
    )
    analyze.add_argument(
        "overrides",
        nargs="*",
        help="conflicts: Hydra overrides (tasks=mt5,mt30); conditioning: the run directory, "
        "then overrides its saved ones need here (data.root=...)",
    )
    analyze.add_argument(
        "--sparsities", default="0.1,0.2,0.3,0.4,0.5", help="conflicts: random-mask sparsities"
    )
    analyze.add_argument("--out", type=Path, help="conflicts: write the report here (and a PNG)")
    analyze.set_defaults(handler=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    if args.target == "conflicts":
        from bench.conflicts import analyze_conflicts

        try:
            sparsities = [float(value) for value in args.sparsities.split(",")]
        except ValueError:
            message = f"--sparsities must be numbers like 0.1,0.3, got {args.sparsities!r}"
            raise UserError(message) from None
        text = analyze_conflicts(args.overrides, sparsities, args.out)
        print(f"{args.out}: written" if args.out else text)
        return 0
    if args.target == "conditioning":
        from bench.conditioning import analyze_conditioning

        if not args.overrides:
            raise UserError("bench analyze conditioning needs a run directory")
        run_dir, *overrides = args.overrides
        print(analyze_conditioning(Path(run_dir), overrides))
        return 0
    if args.overrides:
        raise UserError(
            f"overrides are for `bench analyze conflicts` and `conditioning`, got "
            f"{args.overrides[0]!r}"
        )
    from bench.analyze import analyze

    target = Path(args.target)
    choices = ("conflicts", "conditioning")
    if not target.exists() and difflib.get_close_matches(args.target, choices, n=1):
        # A typo of `conflicts` would read as a missing run directory.
        raise unknown_choice("analyze target", args.target, choices)
    for path in analyze(target):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
