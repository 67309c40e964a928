"""engine.render: heatmap colours, nearest upscaling, escaped token HTML, PNG files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from engine.render import (
    color_limits,
    colorbar_png,
    heatmap_png,
    overlay_heatmap,
    save_png,
    token_highlight_html,
    upscale,
)


def test_overlay_opacity_zero_keeps_picture():
    image = np.random.default_rng(0).uniform(size=(8, 8, 3))
    scores = np.random.default_rng(1).normal(size=(8, 8))

    overlay = overlay_heatmap(image, scores, opacity=0.0)

    assert overlay.dtype == np.uint8
    assert overlay.shape == (8, 8, 3)
    np.testing.assert_array_equal(overlay, np.round(image * 255).astype(np.uint8))


def test_overlay_symmetric_colours():
    image = np.zeros((1, 3, 3))
    scores = np.array([[-2.0, 0.0, 1.0]])

    overlay = overlay_heatmap(image, scores, opacity=1.0).astype(int)

    # RdBu_r: negative is blue, zero is near white, positive is red.
    assert overlay[0, 0, 2] > overlay[0, 0, 0]
    assert np.all(overlay[0, 1] > 230)
    assert overlay[0, 2, 0] > overlay[0, 2, 2]
    assert color_limits(scores) == (-2.0, 2.0)
    assert color_limits(np.zeros(3)) == (-1.0, 1.0)


def test_overlay_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="one score per pixel"):
        overlay_heatmap(np.zeros((4, 4, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="opacity"):
        overlay_heatmap(np.zeros((4, 4, 3)), np.zeros((4, 4)), opacity=1.5)


def test_upscale_nearest_blocks():
    image = np.arange(4, dtype=np.uint8).reshape(2, 2)

    large = upscale(image, 3)

    assert large.shape == (6, 6)
    np.testing.assert_array_equal(large[:3, :3], 0)
    np.testing.assert_array_equal(large[3:, 3:], 3)
    with pytest.raises(ValueError, match="factor"):
        upscale(image, 0)


def test_token_highlight_escapes_tokens():
    tokens = ["<script>alert(1)</script>", 'a"b', "&"]

    markup = token_highlight_html(tokens, [0.5, -0.2, 0.0])

    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup
    assert "a&quot;b" in markup
    assert "&amp;" in markup
    assert markup.count("<span") == 3
    with pytest.raises(ValueError, match="one score per token"):
        token_highlight_html(tokens, [0.1])


def test_save_png_round_trip(tmp_path):
    image = np.random.default_rng(2).uniform(size=(5, 7, 3))

    path = save_png(image, tmp_path / "nested" / "picture.png")

    with Image.open(path) as stored:
        np.testing.assert_array_equal(np.asarray(stored), np.round(image * 255).astype(np.uint8))


def test_heatmap_png_and_colorbar(tmp_path):
    heatmap = heatmap_png(np.ones((64, 64, 3)), np.eye(64), tmp_path / "map.png")
    legend = colorbar_png(-1.0, 1.0, "RdBu_r", tmp_path / "legend.png")

    with Image.open(heatmap) as stored:
        assert stored.size == (256, 256)
    with Image.open(legend) as stored:
        assert stored.size[0] > stored.size[1] > 0


def test_render_leaves_pyplot_unimported(tmp_path):
    code = ("import sys; import engine.render as r; "
            f"r.colorbar_png(0.0, 1.0, 'viridis', {str(tmp_path / 'bar.png')!r}); "
            "print('matplotlib.pyplot' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert output.stdout.strip() == "False"
