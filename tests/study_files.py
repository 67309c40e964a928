"""Copies of the built-in study files with some settings changed, for tests."""

from pathlib import Path

import yaml


def write_study_copy(built_in: Path, folder: Path, **changes) -> Path:
    """Write ``built_in`` into ``folder`` with ``changes`` applied (dotted keys allowed)."""
    study = yaml.safe_load(built_in.read_text())
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = study
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    path = folder / f"{study['name']}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path
