"""Small models behind ``MultimodalModel`` with known derivatives, for the stage tests.

None of them uses easy-VQA, so they show that the stage code works for any
wrapper. They compute in float64 so derivatives can be compared tightly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from engine.interface import EncodedBatch, Modality, ModelOutput


class VectorPairModel:
    """Two vector modalities ``x1`` and ``x2`` and a logit given by a function of both.

    ``logit_fn(x1, x2)`` maps (batch, n1), (batch, n2) to (batch,). Class 0 has that
    logit, class 1 its negative; the features are [logit, x1 sum, x2 sum].
    """

    name = "vector-pair"
    modalities = (Modality("x1", "vector"), Modality("x2", "vector"))
    label_names = ("positive", "negative")
    n_features = 3

    def __init__(self, logit_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.logit_fn = logit_fn

    def encode(self, datapoints: Sequence[dict]) -> EncodedBatch:
        return EncodedBatch(inputs={
            name: torch.tensor(np.stack([np.asarray(d[name], dtype=np.float64) for d in datapoints]))
            for name in ("x1", "x2")
        })

    def forward(self, batch: EncodedBatch) -> ModelOutput:
        x1, x2 = batch.inputs["x1"], batch.inputs["x2"]
        logit = self.logit_fn(x1, x2)
        features = torch.stack([logit, x1.sum(dim=1), x2.sum(dim=1)], dim=1)
        return ModelOutput(torch.stack([logit, -logit], dim=1), features)


class ToyImageTextModel:
    """A smooth image + question model shaped like the built-in one, in float64.

    Image: (height, width, 3) in [0, 1]. Question: words split on spaces, embedded by a
    fixed table, with a special token at position 0 and padding at the end, which are
    not atoms. Fusion is the product of the two encodings, as in the built-in model.
    """

    name = "toy-image-text"
    modalities = (Modality("image", "image"), Modality("question", "text"))
    n_features = 6
    size = 6
    embedding_dim = 5
    vocabulary = ("[UNK]", "what", "color", "is", "the", "shape", "red", "circle", "?")

    def __init__(self, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)

        def normal(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=generator, dtype=torch.float64)

        self.label_names = ("circle", "red", "yes", "no")
        self.table = normal(len(self.vocabulary) + 1, self.embedding_dim)  # last row: [CLS]
        self.image_weight = normal(8, 3 * self.size * self.size) / self.size
        self.text_weight = normal(8, self.embedding_dim)
        self.position_weight = normal(16, self.embedding_dim) * 0.3
        self.feature_weight = normal(self.n_features, 8)
        self.classifier = normal(len(self.label_names), self.n_features)

    def encode(self, datapoints: Sequence[dict]) -> EncodedBatch:
        pixels = torch.tensor(np.stack([np.asarray(d["image"], dtype=np.float64)
                                        for d in datapoints])).permute(0, 3, 1, 2)
        words = [str(d["question"]).split() for d in datapoints]
        length = 1 + max(len(w) for w in words)
        ids = torch.zeros((len(words), length), dtype=torch.long)
        mask = torch.zeros((len(words), length), dtype=torch.float64)
        for row, tokens in enumerate(words):
            ids[row, 0] = len(self.vocabulary)
            for position, word in enumerate(tokens, start=1):
                ids[row, position] = self.vocabulary.index(word) if word in self.vocabulary else 0
            mask[row, :len(tokens) + 1] = 1.0
        return EncodedBatch(
            inputs={"image": pixels.contiguous(), "question": self.table[ids]},
            extras={"attention_mask": mask},
            atoms={"question": [list(tokens) for tokens in words]},
            atom_positions={"question": [list(range(1, len(t) + 1)) for t in words]},
        )

    def forward(self, batch: EncodedBatch) -> ModelOutput:
        pixels, embeddings = batch.inputs["image"], batch.inputs["question"]
        mask = batch.extras["attention_mask"]
        # Position-dependent, non-linear token encoding, so every token matters differently.
        positions = self.position_weight[: embeddings.shape[1]]
        tokens = torch.tanh(embeddings + positions)
        pooled = (tokens * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)
        image_code = torch.tanh(pixels.flatten(1) @ self.image_weight.T)
        text_code = torch.tanh(pooled @ self.text_weight.T)
        features = torch.nn.functional.softplus((image_code * text_code) @ self.feature_weight.T)
        return ModelOutput(features @ self.classifier.T, features)


class SeriesModel:
    """A second kind of wrapper: a time series and a static vector, both ``"vector"``.

    Series: (n_steps,) values; static: (3,) values. The features mix a smooth summary of
    the series with the static vector multiplicatively, then three classes.
    """

    name = "toy-series"
    modalities = (Modality("series", "vector"), Modality("static", "vector"))
    label_names = ("walking", "standing", "running")
    n_features = 4

    def __init__(self, n_steps: int = 12, seed: int = 1) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.series_weight = torch.randn(4, n_steps, generator=generator, dtype=torch.float64)
        self.static_weight = torch.randn(4, 3, generator=generator, dtype=torch.float64)
        self.classifier = torch.randn(3, 4, generator=generator, dtype=torch.float64)

    def encode(self, datapoints: Sequence[dict]) -> EncodedBatch:
        return EncodedBatch(inputs={
            name: torch.tensor(np.stack([np.asarray(d[name], dtype=np.float64) for d in datapoints]))
            for name in ("series", "static")
        })

    def forward(self, batch: EncodedBatch) -> ModelOutput:
        series = torch.tanh(batch.inputs["series"] @ self.series_weight.T)
        static = torch.nn.functional.softplus(batch.inputs["static"] @ self.static_weight.T)
        features = torch.tanh(series * static + 0.1 * series)
        return ModelOutput(features @ self.classifier.T, features)


def toy_image_datapoint(seed: int = 0, question: str = "what color is the shape ?") -> dict:
    """Return a random picture (6, 6, 3) in [0, 1] with a question for ToyImageTextModel."""
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(size=(6, 6, 3)), "question": question}


def series_datapoints(n: int, seed: int = 0, n_steps: int = 12) -> list[dict]:
    """Return ``n`` random datapoints for SeriesModel."""
    rng = np.random.default_rng(seed)
    return [{"series": rng.normal(size=n_steps), "static": rng.normal(size=3)} for _ in range(n)]
