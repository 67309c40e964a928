"""Drawing of stage results: heatmaps over pictures, token highlights, colour legends.

Drawing only; the scores come from ``engine.stages``. Colours come from Matplotlib
colormaps, and the legend is drawn on an Agg canvas, so nothing here touches pyplot's
global state or needs a display.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_CMAP = "RdBu_r"


def color_limits(scores: np.ndarray, symmetric: bool = True) -> tuple[float, float]:
    """Return (vmin, vmax) for ``scores``; symmetric limits are +-max(|scores|).

    A symmetric range keeps zero at the colormap's middle, so a diverging colormap
    shows positive and negative scores in opposite colours. All-zero (or empty)
    scores get the range (-1, 1).
    """
    scores = np.asarray(scores, dtype=float)
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return -1.0, 1.0
    if symmetric:
        bound = float(np.max(np.abs(finite)))
        return (-bound, bound) if bound > 0 else (-1.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low - 1.0, high + 1.0)


def colorize(
    scores: np.ndarray,
    cmap: str = DEFAULT_CMAP,
    symmetric: bool = True,
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map scores of any shape to RGB colours; returns float array of shape (*shape, 3) in [0, 1]."""
    from matplotlib import colormaps

    scores = np.nan_to_num(np.asarray(scores, dtype=float))
    vmin, vmax = limits if limits is not None else color_limits(scores, symmetric)
    normalized = np.clip((scores - vmin) / (vmax - vmin), 0.0, 1.0)
    return colormaps[cmap](normalized)[..., :3]


def overlay_heatmap(
    image: np.ndarray,
    scores: np.ndarray,
    opacity: float = 0.5,
    cmap: str = DEFAULT_CMAP,
    symmetric: bool = True,
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """Blend a heatmap of ``scores`` over ``image``.

    Parameters
    ----------
    image : ndarray of shape (height, width, 3) or (height, width)
        Floats in [0, 1] or uint8.
    scores : ndarray of shape (height, width)
    opacity : float in [0, 1]
        Weight of the heatmap; 0 shows the picture only.
    limits : (vmin, vmax), optional
        Colour range; default ``color_limits(scores, symmetric)``.

    Returns
    -------
    ndarray of shape (height, width, 3), uint8
    """
    picture = _as_float_rgb(image)
    scores = np.asarray(scores)
    if scores.shape != picture.shape[:2]:
        raise ValueError(f"scores has shape {scores.shape}, but the image is "
                         f"{picture.shape[:2]}; pass one score per pixel.")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity {opacity!r} is invalid; use a value in [0, 1].")
    colors = colorize(scores, cmap, symmetric, limits)
    blended = (1.0 - opacity) * picture + opacity * colors
    return np.clip(np.round(blended * 255.0), 0, 255).astype(np.uint8)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Enlarge an image by an integer ``factor`` with nearest-neighbour sampling.

    Nearest sampling keeps every pixel a sharp square, so a 64x64 picture stays
    faithful at 256x256.
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor {factor!r} is invalid; use a positive integer.")
    image = np.asarray(image)
    return np.repeat(np.repeat(image, int(factor), axis=0), int(factor), axis=1)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write an image array to a PNG file; floats are read as values in [0, 1].

    Returns
    -------
    Path of the written file.
    """
    from PIL import Image

    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = np.clip(np.round(array.astype(float) * 255.0), 0, 255).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path


def heatmap_png(
    image: np.ndarray,
    scores: np.ndarray,
    path: str | Path,
    *,
    opacity: float = 0.5,
    factor: int = 4,
    cmap: str = DEFAULT_CMAP,
    symmetric: bool = True,
    limits: tuple[float, float] | None = None,
) -> Path:
    """Draw ``overlay_heatmap`` enlarged by ``factor`` and save it as a PNG at ``path``."""
    overlay = overlay_heatmap(image, scores, opacity, cmap, symmetric, limits)
    return save_png(upscale(overlay, factor), path)


def token_highlight_html(
    tokens: Sequence[str],
    scores: Sequence[float],
    cmap: str = DEFAULT_CMAP,
    symmetric: bool = True,
) -> str:
    """Return HTML that shows each token on a background coloured by its score.

    Every token is HTML-escaped, so text from a dataset cannot inject markup when the
    result is shown with ``unsafe_allow_html``. Each span's title contains the score.
    """
    scores = np.asarray(scores, dtype=float)
    if len(tokens) != len(scores):
        raise ValueError(f"Got {len(tokens)} tokens and {len(scores)} scores; pass one "
                         f"score per token.")
    colors = colorize(scores, cmap, symmetric) if len(scores) else np.zeros((0, 3))
    spans = []
    for token, score, color in zip(tokens, scores, colors, strict=True):
        red, green, blue = (int(round(c * 255)) for c in color)
        text = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else "white"
        spans.append(
            f'<span title="{score:+.3g}" style="background-color: rgb({red}, {green}, {blue}); '
            f'color: {text}; padding: 0.1em 0.25em; margin: 0 0.1em; border-radius: 0.2em;">'
            f"{html.escape(str(token), quote=True)}</span>"
        )
    return " ".join(spans)


def colorbar_png(
    vmin: float,
    vmax: float,
    cmap: str,
    path: str | Path,
    *,
    label: str = "score",
    width_inches: float = 3.0,
    dpi: int = 100,
) -> Path:
    """Draw a horizontal colour legend from ``vmin`` to ``vmax`` and save it as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    if not vmax > vmin:
        raise ValueError(f"vmax {vmax!r} must be larger than vmin {vmin!r}.")
    figure = Figure(figsize=(width_inches, 0.6), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.05, 0.55, 0.9, 0.35))
    ColorbarBase(axes, cmap=cmap, norm=Normalize(vmin, vmax), orientation="horizontal")
    axes.set_xlabel(label, fontsize=8, labelpad=1)
    axes.tick_params(labelsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _as_float_rgb(image: np.ndarray) -> np.ndarray:
    picture = np.asarray(image)
    picture = picture.astype(float) / 255.0 if picture.dtype == np.uint8 else picture.astype(float)
    if picture.ndim == 2:
        picture = np.repeat(picture[:, :, None], 3, axis=2)
    if picture.ndim != 3 or picture.shape[2] not in (3, 4):
        raise ValueError(f"image has shape {picture.shape}; pass (height, width, 3).")
    return np.clip(picture[:, :, :3], 0.0, 1.0)
