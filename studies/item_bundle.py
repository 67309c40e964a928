"""Turn the engine's explanation of one datapoint into a bundle (``docs/bundle_format.md``).

The explanation holds the model's prediction and logits; only the stages go into the
bundle, so no participant page can read the answer key from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from engine.explain import ItemExplanation
from engine.interface import Datapoint, MultimodalModel
from engine.render import overlay_heatmap, upscale
from studies.bundles import BUNDLE_FORMAT, write_bundle

PICTURE_SCALE = 4
TOP_REGIONS = 3


class BundleBuilder:
    """Collects arrays and pictures under the names that ``bundle.json`` refers to."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.pictures: dict[str, np.ndarray] = {}

    def image(self, name: str, image: np.ndarray) -> dict[str, str]:
        self.arrays[name] = np.asarray(image, dtype=np.float32)
        self.pictures[f"{name}.png"] = upscale(_to_uint8(image), PICTURE_SCALE)
        return {"png": f"{name}.png", "array": name}

    def heatmap(self, name: str, image: np.ndarray, scores: np.ndarray) -> dict[str, str]:
        self.arrays[name] = np.asarray(scores, dtype=np.float32)
        self.pictures[f"{name}.png"] = upscale(overlay_heatmap(image, scores), PICTURE_SCALE)
        return {"png": f"{name}.png", "array": name}


def image_and_text_modalities(model: MultimodalModel) -> tuple[str, str]:
    """Return the names of the model's image modality and text modality."""
    image = [m.name for m in model.modalities if m.kind == "image"]
    text = [m.name for m in model.modalities if m.kind == "text"]
    if len(image) != 1 or len(text) != 1:
        raise ValueError(f"Model {model.name!r} needs exactly one image and one text modality "
                         f"for the study views; it has {[m.kind for m in model.modalities]}.")
    return image[0], text[0]


def write_item_bundle(
    study_name: str,
    item_key: str,
    header: dict[str, Any],
    model: MultimodalModel,
    datapoint: Datapoint,
    explanation: ItemExplanation,
    stages: Iterable[str],
    pool_datapoints: Sequence[Datapoint],
) -> None:
    """Render and write the bundle of one datapoint item with the requested stages."""
    image_name, text_name = image_and_text_modalities(model)
    image = np.asarray(datapoint[image_name], dtype=np.float32)
    builder = BundleBuilder()
    stages = set(stages)

    content = {"format": BUNDLE_FORMAT, **header,
               "tokens": explanation.atoms[text_name],
               "image": builder.image("image", image),
               "stages": {}}
    if "U" in stages:
        content["stages"]["U"] = _unimodal(builder, explanation, image, image_name, text_name)
    if "C" in stages:
        content["stages"]["C"] = _interactions(builder, explanation.interactions, image, "c",
                                               image_name, text_name)
    if "R_l" in stages:
        content["stages"]["R_l"] = [_local(builder, feature, image, image_name, text_name)
                                    for feature in explanation.features]
    if "R_g" in stages:
        content["stages"]["R_g"] = [
            global_view(builder, model, feature, pool_datapoints, image_name, text_name)
            for feature in explanation.features]
    if "P" in stages:
        content["stages"]["P"] = _prediction(explanation)

    write_bundle(study_name, item_key, content, builder.arrays, builder.pictures)


def _unimodal(builder, explanation, image, image_name, text_name) -> dict[str, Any]:
    view = {"image_gradient": builder.heatmap("u_image_gradient", image,
                                              explanation.gradient[image_name]),
            "token_gradient": _floats(explanation.gradient[text_name])}
    if image_name in explanation.lime:
        view["image_lime"] = builder.heatmap("u_image_lime", image,
                                             explanation.lime[image_name].scores)
    if text_name in explanation.lime:
        view["token_lime"] = _floats(explanation.lime[text_name].scores)
    return view


def _interactions(builder, interactions, image, prefix, image_name, text_name) -> dict[str, Any]:
    view: dict[str, Any] = {"token_to_image": []}
    for interaction in interactions:
        if interaction.source == text_name and interaction.destination == image_name:
            for row, (atom, token) in enumerate(zip(interaction.source_atoms,
                                                    interaction.source_names, strict=True)):
                entry = builder.heatmap(f"{prefix}_token_{atom}", image, interaction.scores[row])
                view["token_to_image"].append({"token_index": atom, "token": token, **entry})
        elif interaction.source == image_name and interaction.destination == text_name:
            name = f"{prefix}_region_to_tokens"
            builder.arrays[name] = interaction.scores.astype(np.float32)
            builder.arrays[f"{prefix}_regions"] = interaction.regions.astype(np.int32)
            view["region_to_tokens"] = {"array": name, "regions": f"{prefix}_regions",
                                        "top_regions": _top_regions(interaction)}
    return view


def _top_regions(interaction) -> list[int]:
    """Return the labels of the regions whose interactions with the tokens are largest."""
    strength = np.abs(interaction.scores).sum(axis=1)
    order = np.argsort(-strength, kind="stable")[:TOP_REGIONS]
    return [int(interaction.source_atoms[i]) for i in order]


def _local(builder, feature, image, image_name, text_name) -> dict[str, Any]:
    j, local = feature.feature, feature.local
    interactions = _interactions(builder, local.interactions, image, f"f{j}_c", image_name,
                                 text_name)
    return {"feature": j, "activation": feature.activation,
            "image_gradient": builder.heatmap(f"f{j}_image_gradient", image,
                                              local.gradient[image_name]),
            "token_gradient": _floats(local.gradient[text_name]),
            "token_to_image": interactions["token_to_image"]}


def global_view(builder, model, feature, pool_datapoints, image_name, text_name) -> dict[str, Any]:
    """Render the R_g entry of one feature: its top and bottom pool datapoints with U maps.

    ``feature`` needs the attributes ``feature`` (j), ``top`` and ``bottom`` (lists of
    ``engine.explain.PoolExample``), as ``engine.explain.FeatureExplanation`` has them.
    """
    j = feature.feature
    view: dict[str, Any] = {"feature": j}
    for ranking, examples in (("top", feature.top), ("bottom", feature.bottom)):
        view[ranking] = []
        for rank, example in enumerate(examples):
            datapoint = pool_datapoints[example.index]
            example_image = np.asarray(datapoint[image_name], dtype=np.float32)
            tokens = model.encode([datapoint]).atoms[text_name][0]
            picture = builder.image(f"f{j}_{ranking}{rank}", example_image)
            view[ranking].append({
                "question": str(datapoint[text_name]), "tokens": list(tokens),
                "activation": example.activation, "png": picture["png"],
                "image_gradient": builder.heatmap(f"f{j}_{ranking}{rank}_gradient", example_image,
                                                  example.gradient[image_name]),
                "token_gradient": _floats(example.gradient[text_name]),
            })
    return view


def _prediction(explanation: ItemExplanation) -> dict[str, Any]:
    summary = explanation.prediction
    values = {f.feature: f.standardized for f in explanation.features}
    return {
        "features": [{"feature": j, "weight": w, "value": values.get(j), "contribution": c}
                     for j, w, c in zip(summary.features, summary.weights, summary.contributions,
                                        strict=True)],
        "intercept": summary.intercept,
        "sparse_model": {"accuracy": summary.accuracy, "fidelity": summary.fidelity,
                         "n_nonzero": summary.n_nonzero},
    }


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values).ravel()]


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
