"""The ``mviz`` command line.

Each subcommand lives in its own module and is imported only when it runs, so
``mviz --help`` stays fast. Invalid input raises ``StudyInputError``; this module
prints its message and exits with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from studies.errors import StudyInputError

EXIT_INVALID_INPUT = 2


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from engine.models.easyvqa_net import DEFAULT_WEIGHTS
    from engine.models.train import train_easyvqa_model

    with tqdm(desc="training", unit="batch") as bar:
        def progress(step: int, total: int, message: str) -> None:
            bar.total = total
            bar.set_postfix_str(message, refresh=False)
            bar.update(step - bar.n)

        metrics = train_easyvqa_model(Path(args.output or DEFAULT_WEIGHTS), seed=args.seed,
                                      epochs=args.epochs, progress=progress)
    print(f"test accuracy {metrics['test_accuracy']['overall']:.4f}; weights and model card "
          f"written beside {args.output or DEFAULT_WEIGHTS}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from studies.prepare import command_prepare

    return command_prepare(args.study_file, force=args.force)


def _serve(args: argparse.Namespace) -> int:
    from studies.serve import command_serve

    return command_serve(args.study_file, port=args.port, address=args.address)


def _analyze(args: argparse.Namespace) -> int:
    from studies.commands_analysis import command_analyze

    return command_analyze(args.study_file, args.database_url)


def _export(args: argparse.Namespace) -> int:
    from studies.commands_analysis import command_export

    return command_export(args.study_file, args.format, args.output, args.database_url)


def _simulate(args: argparse.Namespace) -> int:
    from studies.simulate import command_simulate

    return command_simulate(args.study_file, participants=args.participants, seed=args.seed,
                            database_url=args.database_url)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mviz", description="Prepare, serve and analyse human studies of MultiViz explanations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train the built-in easy-VQA model")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--epochs", type=int, default=4, help="passes over the train split (default 4)")
    train.add_argument("--output", help="weights file (default: the committed weights file)")
    train.set_defaults(handler=_train)

    prepare = commands.add_parser("prepare", help="compute every stage and write the item bundles")
    prepare.add_argument("study_file", help="study definition (YAML)")
    prepare.add_argument("--force", action="store_true", help="rebuild bundles that are complete")
    prepare.set_defaults(handler=_prepare)

    serve = commands.add_parser("serve", help="prepare the study if needed and start the app")
    serve.add_argument("study_file")
    serve.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    serve.add_argument("--address", default="localhost", help="address to bind (default localhost)")
    serve.set_defaults(handler=_serve)

    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--database-url",
                          help="SQLAlchemy URL of the response store (default: MVIZ_DATABASE_URL "
                               "or the SQLite file under data/)")

    analyze = commands.add_parser("analyze", parents=[database],
                                  help="print correctness and agreement per condition")
    analyze.add_argument("study_file")
    analyze.set_defaults(handler=_analyze)

    export = commands.add_parser("export", parents=[database],
                                 help="write the response table and the summary table")
    export.add_argument("study_file")
    export.add_argument("--format", nargs="+", default=["csv", "json", "markdown", "latex"],
                        help="one or more of csv, json, markdown, latex (default: all)")
    export.add_argument("--output", help="folder (default: data/studies/NAME/exports)")
    export.set_defaults(handler=_export)

    simulate = commands.add_parser("simulate", parents=[database],
                                   help="add simulated participants to pilot the pipeline")
    simulate.add_argument("study_file")
    simulate.add_argument("--participants", type=int, required=True,
                          help="number of simulated participants in total")
    simulate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    simulate.set_defaults(handler=_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except StudyInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT


if __name__ == "__main__":
    sys.exit(main())
