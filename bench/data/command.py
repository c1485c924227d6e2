"""`bench data ...`: generate, import, verify and describe datasets (the `data` subcommand).

    bench data generate tasks=mt5 data=near_optimal episodes_per_task=100
    bench data import-npz /path/to/MT50 --out data/mt50-published
    bench data import-prompt-dt /path/to/prompt-dt --family cheetah_vel --out data/cheetah-vel
    bench data verify data/replay-ep2000
    bench data info data/replay-ep100

Its arguments are declared here, beside their handler, so that bench/cli.py stays the map of
the commands. Heavy modules are imported inside the handler: `bench --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import UserError, did_you_mean
from bench.output_paths import check_output_folder

# `generate`'s short keys: the data section's own, without the `data.` prefix.
_SHORTHANDS = {
    "episodes_per_task": "data.episodes_per_task",
    "workers": "data.workers",
    "generator": "data.generator",
}


def add_data_command(commands: argparse._SubParsersAction, parser_class: type) -> None:
    """Adds `data` and its subcommands to `commands` (subparsers made with `parser_class`)."""
    data = commands.add_parser("data", help="generate, import and verify datasets")
    data.set_defaults(handler=data_command)
    data_commands = data.add_subparsers(
        dest="data_command", required=True, parser_class=parser_class
    )
    generate = data_commands.add_parser(
        "generate",
        help="Meta-World data from random to expert (replay-like by default): tasks=, data=, "
        "scale=, episodes_per_task=, workers=, generator=replay|noisy_expert",
    )
    generate.add_argument(
        "--verify", action="store_true", help="also re-hash every file; corrupt tasks are repaired"
    )
    generate.add_argument("overrides", nargs="*")
    importer = data_commands.add_parser("import-npz", help="import the published MT50 npz layout")
    importer.add_argument("source", type=Path, help="folder holding <task>-v2/<i>.npz")
    importer.add_argument("--out", type=Path, help="store to create (default data/imported-<name>)")
    importer.add_argument("--episodes", type=int, help="episodes per task (default: all)")
    prompt_dt = data_commands.add_parser(
        "import-prompt-dt", help="import Prompt-DT's cheetah_dir, cheetah_vel and ant_dir pickles"
    )
    prompt_dt.add_argument("source", type=Path, help="folder holding data/<env>/ and config/<env>/")
    prompt_dt.add_argument(
        "--out", type=Path, help="store to create (default data/imported-<name>)"
    )
    prompt_dt.add_argument(
        "--family",
        action="append",
        help="cheetah_dir, cheetah_vel or ant_dir; repeatable (default: every one in the folder)",
    )
    verify = data_commands.add_parser("verify", help="re-check every file's size and sha256")
    verify.add_argument("path", type=Path, help="dataset folder (holding manifest.json)")
    info = data_commands.add_parser(
        "info", help="per task: episodes, return spread and histogram, success all / first half"
    )
    info.add_argument("path", type=Path, help="dataset folder (holding manifest.json)")


def data_command(args: argparse.Namespace) -> int:
    """Runs the parsed `bench data` subcommand; its exit status."""
    if args.data_command == "generate":
        return _generate(args.overrides, args.verify)
    if args.data_command in ("import-npz", "import-prompt-dt"):
        out = args.out or Path("data") / f"imported-{args.source.resolve().name}"
        check_output_folder(out, "--out")
        if args.data_command == "import-npz":
            from bench.data.import_npz import import_npz

            store = import_npz(args.source, out, episodes=args.episodes)
        else:
            from bench.data.import_prompt_dt import import_prompt_dt

            store = import_prompt_dt(args.source, out, families=args.family)
        print(f"{out}: imported {len(store.tasks)} tasks; train with data.path={out}")
        return 0
    if args.data_command == "info":
        from bench.data.summary import store_summary

        print(store_summary(args.path))
        return 0
    from bench.data.store import DatasetStore

    DatasetStore(args.path).verify()
    print(f"{args.path}: every file matches its size and sha256")
    return 0


def _generate(given: list[str], verify: bool) -> int:
    from bench.data.locations import dataset_path
    from bench.data.prepare import open_dataset
    from bench.settings import load_data_settings

    overrides = []
    for override in given:
        key, _, value = override.partition("=")
        hint = did_you_mean(key, _SHORTHANDS)
        if "." not in key and key not in _SHORTHANDS and hint:  # a mistyped shorthand
            shorthands = ", ".join(_SHORTHANDS)
            raise UserError(f"unknown key {key!r}{hint}; this command's shorthands: {shorthands}")
        overrides.append(f"{_SHORTHANDS.get(key, key)}={value}" if value else override)
    suite, data, progress, launcher = load_data_settings(overrides)
    if not launcher.local:
        from bench.slurm import submit_generation

        return submit_generation(suite, data.section(), launcher.options)
    from bench.data.summary import summary_table

    store = open_dataset(data.section(), suite, progress, verify=verify)
    print(summary_table(store.manifest, suite.data_tasks) + "\n")
    print(f"{dataset_path(data.section(), suite)}: {len(store.tasks)} tasks")
    return 0
