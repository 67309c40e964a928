"""Time ``mviz prepare`` on the built-in 22-item simulation study.

Usage::

    python bench/bench_prepare.py [--study studies/easyvqa_simulation.yaml]

Prepares the study three times into a fresh temporary data folder and prints each wall
time: a cold run (model outputs, the P fit and every bundle), a run with ``--force``
(the model caches are reused, every bundle is rebuilt) and a plain second run (every
bundle is reused). The ratio of the first two is the share of the cold run spent on
caches that a study computes once per model.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import tempfile
import time

import torch


def timed_prepare(study: str, force: bool) -> float:
    from studies.prepare import command_prepare

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        command_prepare(study, force=force)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/easyvqa_simulation.yaml")
    arguments = parser.parse_args()

    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ["MVIZ_DATA_DIR"] = data_dir
        cold = timed_prepare(arguments.study, force=False)
        rebuilt = timed_prepare(arguments.study, force=True)
        reused = timed_prepare(arguments.study, force=False)
    print(f"cold prepare (outputs, P fit, 22 bundles): {cold:.1f} s")
    print(f"prepare --force (cached outputs and P fit, 22 bundles): {rebuilt:.1f} s")
    print(f"second prepare (every bundle reused): {reused:.1f} s")
    print(f"cold / force ratio: {cold / rebuilt:.2f}")


if __name__ == "__main__":
    main()
