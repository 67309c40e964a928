"""Stage U with LIME: superpixels for an image modality, tokens for a text modality.

LIME (Ribeiro et al., 2016, the ``lime`` package 0.2.0.1) switches atoms off at random
and runs the model on each perturbed datapoint. It then fits a weighted ridge
regression of the target on the on/off pattern, and the regression weights are the
atom scores. The regression works for any scalar, so a feature z_j is explained the
same way as a logit. The classifier function returns one column per target, and LIME
fits each column.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from engine.interface import Datapoint, MultimodalModel
from engine.stages._inputs import encode_one, modality_of
from engine.stages.targets import Target

logger = logging.getLogger(__name__)

# The unknown token of BERT-family WordPiece tokenizers (BERT, MiniLM). Those tokenizers
# keep it as one special token, so a masked token becomes one unknown word and the
# other tokens keep their positions.
DEFAULT_MASK_STRING = "[UNK]"


@dataclass
class LimeImportance:
    """LIME scores of one modality for one target.

    Attributes
    ----------
    modality : str
    target : Target
    weights : ndarray of shape (n_segments,) or (n_atoms,)
        The ridge weight of each superpixel (image) or token (text).
    scores : ndarray of shape (height, width) or (n_atoms,)
        For an image, each pixel carries its superpixel's weight; for text, the weights.
    segments : ndarray of shape (height, width), int, or None
        The superpixel label of each pixel; None for text.
    intercept : float
        The ridge intercept: the fitted target value with every atom switched off.
    """

    modality: str
    target: Target
    weights: np.ndarray
    scores: np.ndarray
    segments: np.ndarray | None
    intercept: float


def slic_segments(image: np.ndarray, n_segments: int = 50, compactness: float = 10.0) -> np.ndarray:
    """Split an image (height, width, 3) into superpixels with SLIC.

    SLIC (scikit-image) is deterministic, so the segmentation needs no seed. On a
    64x64 picture ``n_segments=50`` gives about 40 to 50 superpixels, small enough to
    follow the outline of a shape and few enough for 500 LIME samples.

    Returns
    -------
    ndarray of shape (height, width), int64, labels 0 to n - 1
    """
    from skimage.segmentation import slic

    labels = slic(np.asarray(image, dtype=np.float64), n_segments=n_segments,
                  compactness=compactness, start_label=0)
    # Relabel to 0..n-1 without gaps: LIME indexes its features by label.
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int64)


def lime_importance(
    model: MultimodalModel,
    datapoint: Datapoint,
    target: Target,
    modality: str,
    *,
    n_samples: int = 500,
    random_state: int = 0,
    batch_size: int = 128,
    **options,
) -> LimeImportance:
    """Compute LIME scores of one modality's atoms for one target.

    Parameters
    ----------
    model : MultimodalModel
    datapoint : mapping of modality name to raw value
        An image modality's raw value must be an array of shape (height, width, 3).
    target : Target
    modality : str
        Name of an image or text modality.
    n_samples : int
        Perturbed datapoints, the unperturbed one included.
    random_state : int
        Seed of LIME's sampling; the same seed gives the same weights.
    batch_size : int
        Perturbed datapoints per forward pass.
    **options
        ``n_segments``, ``compactness`` and ``hide_color`` for an image,
        ``mask_string`` for text; see ``lime_importances``.

    Returns
    -------
    LimeImportance
    """
    return lime_importances(model, datapoint, [target], modality, n_samples=n_samples,
                            random_state=random_state, batch_size=batch_size, **options)[0]


def lime_importances(
    model: MultimodalModel,
    datapoint: Datapoint,
    targets: Sequence[Target],
    modality: str,
    *,
    n_samples: int = 500,
    random_state: int = 0,
    batch_size: int = 128,
    n_segments: int = 50,
    compactness: float = 10.0,
    hide_color: float | Sequence[float] | Literal["image_mean"] | None = "image_mean",
    mask_string: str = DEFAULT_MASK_STRING,
) -> list[LimeImportance]:
    """Compute LIME scores for several targets from one set of perturbed datapoints.

    Each target's weights equal those of a separate ``lime_importance`` call with the
    same seed, because the perturbations depend on the seed only. Sharing them saves
    forward passes.

    Parameters
    ----------
    targets : sequence of Target
    n_segments, compactness : SLIC parameters of an image modality.
    hide_color : "image_mean", float, sequence of float or None
        Colour that fills a switched-off superpixel. ``"image_mean"`` (default) is the
        mean colour of the whole picture, which on a picture of one shape over a
        background is close to the background, so switching a superpixel off removes
        its content. None is LIME's own choice, the superpixel's mean colour, which
        leaves a flat-coloured superpixel unchanged.
    mask_string : str
        Replaces a switched-off token. The default is the unknown token of
        BERT-family tokenizers; a wrapper with another tokenizer should pass its own
        unknown or mask token.

    Other parameters are those of ``lime_importance``.
    """
    kind = modality_of(model, modality).kind
    if not targets:
        raise ValueError("No targets were given; pass at least one Target.")
    for target in targets:
        target.check(model)
    if n_samples < 2 or batch_size < 1:
        raise ValueError(
            f"n_samples {n_samples!r} and batch_size {batch_size!r} are invalid; LIME needs "
            f"at least 2 samples and a positive batch size."
        )

    def classify(datapoints: list[Datapoint]) -> np.ndarray:
        return _target_values(model, datapoints, targets, batch_size)

    if kind == "image":
        return _lime_image(datapoint, targets, modality, classify, n_samples, random_state,
                           batch_size, n_segments, compactness, hide_color)
    if kind == "text":
        return _lime_text(model, datapoint, targets, modality, classify, n_samples,
                          random_state, mask_string)
    raise ValueError(
        f"LIME is implemented for image and text modalities; modality {modality!r} has kind "
        f"{kind!r}. Use gradient_importance for it."
    )


def _target_values(
    model: MultimodalModel, datapoints: list[Datapoint], targets: Sequence[Target], batch_size: int
) -> np.ndarray:
    """Run the model without gradients; return shape (n_datapoints, n_targets)."""
    columns = []
    with torch.no_grad():
        for start in range(0, len(datapoints), batch_size):
            output = model.forward(model.encode(datapoints[start:start + batch_size]))
            columns.append(torch.stack([target.select(output) for target in targets], dim=1))
    return torch.cat(columns).double().cpu().numpy()


def _lime_image(
    datapoint: Datapoint,
    targets: Sequence[Target],
    modality: str,
    classify: Callable[[list[Datapoint]], np.ndarray],
    n_samples: int,
    random_state: int,
    batch_size: int,
    n_segments: int,
    compactness: float,
    hide_color,
) -> list[LimeImportance]:
    from lime.lime_image import LimeImageExplainer

    image = np.asarray(datapoint[modality])
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"LIME needs the raw value of image modality {modality!r} as an array of shape "
            f"(height, width, 3); got shape {image.shape}."
        )
    segments = slic_segments(image, n_segments, compactness)
    if isinstance(hide_color, str):
        if hide_color != "image_mean":
            raise ValueError(f"hide_color {hide_color!r} is invalid; use 'image_mean', a "
                             f"colour or None.")
        hide_color = image.reshape(-1, 3).mean(axis=0)

    def classify_images(images: np.ndarray) -> np.ndarray:
        perturbed = [{**datapoint, modality: picture.astype(image.dtype)} for picture in images]
        return classify(perturbed)

    explainer = LimeImageExplainer(random_state=random_state)
    explanation = explainer.explain_instance(
        image, classify_images, labels=tuple(range(len(targets))), hide_color=hide_color,
        top_labels=None, num_features=int(segments.max()) + 1, num_samples=n_samples,
        batch_size=batch_size, segmentation_fn=lambda _: segments, random_seed=random_state,
    )

    results = []
    for column, target in enumerate(targets):
        weights = _weights(explanation.local_exp[column], int(segments.max()) + 1)
        results.append(LimeImportance(modality, target, weights, weights[segments], segments,
                                      float(explanation.intercept[column])))
    return results


def _lime_text(
    model: MultimodalModel,
    datapoint: Datapoint,
    targets: Sequence[Target],
    modality: str,
    classify: Callable[[list[Datapoint]], np.ndarray],
    n_samples: int,
    random_state: int,
    mask_string: str,
) -> list[LimeImportance]:
    from lime.lime_text import LimeTextExplainer

    atoms = encode_one(model, datapoint).atoms[modality][0]
    if not atoms:
        raise ValueError(f"Text modality {modality!r} of the datapoint has no tokens to explain.")
    if any(" " in atom for atom in atoms):
        raise ValueError(f"The tokens {atoms} of modality {modality!r} contain spaces, so they "
                         f"cannot be joined and split on spaces for LIME.")
    # LIME's words are the model's tokens joined by spaces, so its scores are per atom.
    # A wrapper with subword tokens ("tea", "##l") provides join_atoms to turn a perturbed
    # token list back into the text its tokenizer splits the same way ("teal").
    join_atoms = getattr(model, "join_atoms", None)

    def model_text(spaced_tokens: str) -> str:
        if join_atoms is None:
            return spaced_tokens
        return join_atoms(modality, spaced_tokens.split(" "))

    text = " ".join(atoms)
    rejoined = encode_one(model, {**datapoint, modality: model_text(text)}).atoms[modality][0]
    if rejoined != atoms:
        message = (f"Re-encoding the tokens of {modality!r} joined by spaces gives {rejoined}, "
                   f"not {atoms}; LIME scores stay per token, but the model sees re-split "
                   f"subword tokens in the perturbed texts. Give the model wrapper a "
                   f"join_atoms method that inverts its tokenizer.")
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def classify_texts(texts: list[str]) -> np.ndarray:
        # A question of n tokens has at most 2^n masks, so most of the samples repeat:
        # the model runs once per distinct text.
        distinct, rows = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        values = classify([{**datapoint, modality: model_text(str(perturbed))}
                           for perturbed in distinct])
        return values[rows.reshape(-1)]

    explainer = LimeTextExplainer(split_expression=" ", bow=False, mask_string=mask_string,
                                  random_state=random_state)
    explanation = explainer.explain_instance(
        text, classify_texts, labels=tuple(range(len(targets))), num_features=len(atoms),
        num_samples=n_samples,
    )

    results = []
    for column, target in enumerate(targets):
        weights = _weights(explanation.local_exp[column], len(atoms))
        results.append(LimeImportance(modality, target, weights, weights.copy(), None,
                                      float(explanation.intercept[column])))
    return results


def _weights(local_explanation: list[tuple[int, float]], n_features: int) -> np.ndarray:
    weights = np.zeros(n_features)
    for feature, weight in local_explanation:
        weights[feature] = weight
    return weights
