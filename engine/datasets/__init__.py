"""Registry of the datasets the engine can read by name."""

from engine.datasets.easyvqa import EasyVQA

DATASETS = {"easy-vqa": EasyVQA}

__all__ = ["DATASETS", "EasyVQA"]
