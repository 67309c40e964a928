"""Time every stage of one item on the built-in easy-VQA model.

Usage::

    python bench/bench_stages.py [--repeats 3] [--pool 2000] [--index 0] [--weights PATH]

Prints a machine line, then the median wall time of each stage over ``--repeats`` runs.
The P fit runs once, because it takes longest. Then come the full ``explain_item`` for
the item, and the batched second-order gradient against the per-token loop on the
same item, as a ratio measured in the same run. The R_g pool is ``--pool`` validation
datapoints drawn with seed 0; the P fit uses their features.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from engine.datasets.easyvqa import EasyVQA
from engine.explain import ExplainConfig, explain_item
from engine.models.easyvqa_net import load_easyvqa_model
from engine.stages import (
    class_target,
    feature_target,
    fit_prediction_stage,
    global_representation,
    gradient_importance,
    gradient_importance_batch,
    lime_importance,
    local_representation,
    pool_features,
    second_order_gradient,
    second_order_gradient_loop,
)


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Return the median wall time of ``repeats`` calls of ``function``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per stage (median shown)")
    parser.add_argument("--pool", type=int, default=2000, help="validation datapoints in the pool")
    parser.add_argument("--index", type=int, default=0, help="easy-VQA test question to explain")
    parser.add_argument("--weights", default=None, help="model weights file (default: committed)")
    arguments = parser.parse_args()

    print(f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"Python {platform.python_version()}")

    model = load_easyvqa_model(arguments.weights)
    datapoint = EasyVQA("test").datapoint(arguments.index)
    validation = EasyVQA("validation")
    chosen = np.sort(np.random.default_rng(0).choice(len(validation), arguments.pool,
                                                     replace=False))
    pool = [validation.datapoint(int(i)) for i in chosen]

    started = time.perf_counter()
    activations = pool_features(model, pool)
    print(f"pool features ({len(pool)} datapoints): {time.perf_counter() - started:.2f} s")
    with torch.no_grad():
        predictions = np.concatenate([
            model.forward(model.encode(pool[start:start + 256])).logits.argmax(dim=1).numpy()
            for start in range(0, len(pool), 256)
        ])
    labels = np.array([validation.label(int(i)) for i in chosen])

    with torch.no_grad():
        predicted = int(model.forward(model.encode([datapoint])).logits[0].argmax())
    target = class_target(predicted)
    feature = int(np.argmax(activations.std(axis=0)))
    n_tokens = len(model.encode([datapoint]).atoms["question"][0])
    print(f"item: test question {arguments.index}, {datapoint['question']!r}, {n_tokens} tokens; "
          f"R_l and R_g for feature {feature}")

    repeats = arguments.repeats
    rows = [
        ("U gradient", lambda: gradient_importance(model, datapoint, target)),
        ("U LIME image (500 samples)", lambda: lime_importance(model, datapoint, target, "image")),
        ("U LIME text (500 samples)",
         lambda: lime_importance(model, datapoint, target, "question")),
        ("C batched, all tokens -> image", lambda: second_order_gradient(
            model, datapoint, target, source="question", destination="image")),
        ("C batched, 64 regions -> tokens", lambda: second_order_gradient(
            model, datapoint, target, source="image", destination="question")),
        ("R_l (gradient, C for 3 tokens)",
         lambda: local_representation(model, datapoint, feature, top_tokens=3)),
        ("R_g (3 + 3 datapoints, given pool activations)",
         lambda: _global_stage(model, pool, activations, feature)),
    ]
    for name, function in rows:
        print(f"{name}: {median_seconds(function, repeats):.3f} s")

    batched = median_seconds(lambda: second_order_gradient(
        model, datapoint, target, source="question", destination="image"), repeats)
    loop = median_seconds(lambda: second_order_gradient_loop(
        model, datapoint, target, source="question", destination="image"), repeats)
    print(f"C tokens -> image, batched {batched:.3f} s vs per-token loop {loop:.3f} s: "
          f"loop / batched = {loop / batched:.2f}")

    started = time.perf_counter()
    fit = fit_prediction_stage(activations, predictions, labels)
    print(f"P fit ({len(pool)} datapoints, {len(fit.path.alphas)} penalties): "
          f"{time.perf_counter() - started:.1f} s; {fit.n_nonzero} non-zero weights, "
          f"held-out fidelity {fit.fidelity:.3f}")

    def explain() -> object:
        return explain_item(model, datapoint, sparse_fit=fit, pool_datapoints=pool,
                            pool_activations=activations, config=ExplainConfig())

    print(f"explain_item (every stage, default config): {median_seconds(explain, repeats):.2f} s")


def _global_stage(model, pool, activations, feature) -> object:
    top, bottom = global_representation(activations, feature, 3)
    indices = [int(i) for i in np.concatenate([top, bottom])]
    return gradient_importance_batch(model, [pool[i] for i in indices], feature_target(feature))


if __name__ == "__main__":
    main()
