"""``mviz prepare``: select a study's items, compute every stage and write the bundles.

The steps, in order:

1. validate the study file (an invalid one exits with code 2 before anything is written);
2. load the model and its cached outputs (``studies.context``);
3. select the items (``studies.selection``) and write the answer key;
4. for every item without a complete bundle, explain it with the engine and write its
   bundle atomically (``studies.bundles``); finished bundles are reused.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from tqdm import tqdm

from studies import paths
from studies.bundles import bundle_ready, write_answer_key, write_item_list
from studies.context import ModelContext, explain_config
from studies.definition import load_study
from studies.selection import answer_choices, check_indices, item_key, select_datapoints

logger = logging.getLogger(__name__)


def command_prepare(study_file: str, *, force: bool = False) -> int:
    """Prepare every bundle of a study; print what was built and reused."""
    started = time.perf_counter()
    definition = load_study(study_file)
    context = ModelContext(definition.model, definition.dataset, definition.weights)

    if definition.type == "concept":
        from studies.prepare_concepts import prepare_concept_study

        built, reused = prepare_concept_study(definition, context, force=force)
    else:
        built, reused = prepare_datapoint_study(definition, context, force=force)

    seconds = time.perf_counter() - started
    print(f"{definition.name}: {built} bundles built, {reused} reused, in {seconds:.1f} s "
          f"under {paths.bundles_dir(definition.name)}")
    return 0


def prepare_datapoint_study(definition, context: ModelContext, *, force: bool) -> tuple[int, int]:
    """Prepare a study whose items are datapoints (simulation and error studies)."""
    from engine.explain import explain_item
    from studies.item_bundle import write_item_bundle

    split = definition.selection.split
    dataset = context.dataset(split)
    check_indices(definition.selection, len(dataset))
    outputs = context.split_outputs(split)
    question_types = [q.question_type for q in dataset.questions]
    selected = select_datapoints(definition.selection, np.array(question_types), outputs.predictions,
                                 outputs.labels, wrong_only=definition.type == "error")

    labels = context.model.label_names
    type_answers = _answers_by_type(question_types, outputs.labels, labels)
    answer_key, items = {}, []
    for index in selected.all:
        key = item_key(split, index)
        prediction, truth = labels[outputs.predictions[index]], labels[outputs.labels[index]]
        answer_key[key] = {"prediction": prediction, "ground_truth": truth,
                           "model_correct": bool(prediction == truth)}
        items.append((key, index))

    explanations = definition.explanations
    sparse_fit = context.sparse_fit(explanations.sparse_fit_to)
    pool_datapoints, pool_activations = context.pool(explanations.rg_pool, explanations.seed)
    config = explain_config(explanations)

    practice_keys = [item_key(split, index) for index in selected.practice]
    built = reused = 0
    for key, index in tqdm(items, desc=f"preparing {definition.name}", unit="item"):
        if bundle_ready(definition.name, key) and not force:
            reused += 1
            continue
        datapoint = dataset.datapoint(index)
        explanation = explain_item(context.model, datapoint, sparse_fit=sparse_fit,
                                   pool_datapoints=pool_datapoints,
                                   pool_activations=pool_activations, config=config)
        question = dataset[index]
        header = {
            "study": definition.name, "item_key": key, "practice": key in practice_keys,
            "dataset": definition.dataset, "split": split, "index": index,
            "question": question.question, "question_type": question.question_type,
        }
        if definition.type == "simulation":
            header["choices"] = answer_choices(
                answer_key[key]["prediction"], answer_key[key]["ground_truth"],
                type_answers[question.question_type], definition.choices, seed=definition.selection.seed + index)
        else:
            # Error-categorization participants are shown both answers: they are the stimulus.
            header["shown_answers"] = {"model": answer_key[key]["prediction"],
                                       "correct": answer_key[key]["ground_truth"]}
        write_item_bundle(definition.name, key, header, context.model, datapoint, explanation,
                          definition.stages_needed, pool_datapoints)
        built += 1

    write_answer_key(definition.name, answer_key)
    write_item_list(definition.name, [key for key, _ in items], practice_keys)
    return built, reused


def _answers_by_type(question_types: list[str], label_ids, label_names) -> dict[str, list[str]]:
    answers: dict[str, set[str]] = {}
    for question_type, label in zip(question_types, label_ids, strict=True):
        answers.setdefault(question_type, set()).add(label_names[label])
    return {question_type: sorted(names) for question_type, names in answers.items()}


__all__ = ["command_prepare", "prepare_datapoint_study"]
