"""Study definitions: the YAML file that describes one study, validated with pydantic.

A study file names the study, its type (simulation, concept or error), the dataset and
model, how items are selected, the engine settings, the conditions and the number of
participants per condition. ``load_study`` reads and validates one file. Every problem
becomes a ``StudyInputError``. Its message names the file, the field as a dotted path
(``selection.items``, ``conditions[2]``), the invalid value and the allowed values.

The stages each condition shows are public constants (``CONDITION_STAGES``), so the app,
the engine driver and the analysis read them from one place.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from studies import paths
from studies.errors import StudyInputError

logger = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("U", "C", "R_l", "R_g", "P")
STUDY_TYPES: tuple[str, ...] = ("simulation", "concept", "error")

_ALL_STAGES = frozenset(STAGES)

# Conditions of each study type, in their canonical order, and the stages each one shows.
CONDITION_STAGES: dict[str, dict[str, frozenset[str]]] = {
    "simulation": {
        "U": frozenset({"U"}),
        "U+C": frozenset({"U", "C"}),
        "U+C+R_l": frozenset({"U", "C", "R_l"}),
        "U+C+R_l+R_g": frozenset({"U", "C", "R_l", "R_g"}),
        "MultiViz": _ALL_STAGES,
        "R_l+P": frozenset({"R_l", "P"}),
        "R_g+P": frozenset({"R_g", "P"}),
    },
    "concept": {
        "R_l": frozenset({"R_l"}),
        "R_l+R_g without maps": frozenset({"R_l", "R_g"}),
        "R_l+R_g": frozenset({"R_l", "R_g"}),
    },
    "error": {
        "No viz": frozenset(),
        "MultiViz": _ALL_STAGES,
    },
}

# Conditions whose R_g shows the most and least activating datapoints without their U maps.
CONDITIONS_WITHOUT_MAPS: frozenset[str] = frozenset({"R_l+R_g without maps"})

# Question types of each known dataset, for ``selection.exclude_question_types``.
KNOWN_DATASETS: dict[str, tuple[str, ...]] = {
    "easy-vqa": ("shape", "color", "yes/no"),
}

# Known models and the dataset each one was trained on.
KNOWN_MODELS: dict[str, str] = {
    "easyvqa-minilm-cnn": "easy-vqa",
}

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPARSE_FIT_TARGETS: tuple[str, ...] = ("model", "ground_truth")
DEFAULT_CHOICES = 4

_NAME_PATTERN = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True, protected_namespaces=())


def _invalid(message: str) -> PydanticCustomError:
    # The message goes through a template placeholder so braces in user values stay literal.
    return PydanticCustomError("study_value", "{message}", {"message": message})


def _check_known(kind: str, value: str, allowed: tuple[str, ...] | list[str]) -> str:
    if value not in allowed:
        raise _invalid(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")
    return value


class Selection(BaseModel):
    """The item selection of a study: split, counts, seed and filters."""

    model_config = _CONFIG

    split: str = "test"
    items: int = Field(ge=1)
    practice: int = Field(default=0, ge=0)
    seed: int = 0
    exclude_question_types: list[str] = []
    model_wrong_share: float | None = Field(default=None, ge=0.0, le=1.0)
    indices: list[int] | None = None

    @field_validator("split")
    @classmethod
    def _split_known(cls, value: str) -> str:
        return _check_known("split", value, SPLITS)

    @property
    def counted(self) -> int:
        """Number of counted (non-practice) items."""
        return self.items - self.practice


class Explanations(BaseModel):
    """Engine settings for the stages of every item."""

    model_config = _CONFIG

    top_tokens: int = Field(default=3, ge=1)
    top_features: int = Field(default=5, ge=1)
    rg_examples: int = Field(default=3, ge=1)
    rg_pool: int = Field(default=2000, ge=1)
    lime_samples: int = Field(default=500, ge=1)
    seed: int = 0
    sparse_fit_to: str = "model"

    @field_validator("sparse_fit_to")
    @classmethod
    def _fit_target_known(cls, value: str) -> str:
        return _check_known("sparse fit target", value, SPARSE_FIT_TARGETS)


class StudyDefinition(BaseModel):
    """One study, as read from its YAML file.

    ``conditions`` defaults to every condition of the study type, and ``choices`` to 4 for
    simulation studies (it is None for the other types, which do not show answer choices).
    """

    model_config = _CONFIG

    name: str
    type: Literal["simulation", "concept", "error"]
    title: str = Field(min_length=1)
    dataset: str
    model: str
    weights: str | None = Field(default=None, min_length=1)
    selection: Selection
    explanations: Explanations = Explanations()
    conditions: list[str] = []
    participants_per_condition: int = Field(ge=1)
    choices: int | None = Field(default=None, ge=2)
    completion_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_type_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("type") not in CONDITION_STAGES:
            # The type error is reported; a missing condition list would only add noise.
            if data.get("conditions", []) is None:
                del data["conditions"]
            return data
        if data.get("conditions") is None:
            data["conditions"] = list(CONDITION_STAGES[data["type"]])
        if data["type"] == "simulation" and data.get("choices") is None:
            data["choices"] = DEFAULT_CHOICES
        return data

    @field_validator("type", mode="before")
    @classmethod
    def _type_known(cls, value: Any) -> Any:
        if isinstance(value, str):
            _check_known("study type", value, STUDY_TYPES)
        return value

    @field_validator("name")
    @classmethod
    def _name_valid(cls, value: str) -> str:
        if not _NAME_PATTERN.fullmatch(value):
            raise _invalid(
                f"invalid study name {value!r}; use lowercase letters, digits and single "
                "hyphens between them (the name appears in URLs and folder names)")
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset_known(cls, value: str) -> str:
        return _check_known("dataset", value, tuple(KNOWN_DATASETS))

    @field_validator("model")
    @classmethod
    def _model_known(cls, value: str) -> str:
        return _check_known("model", value, tuple(KNOWN_MODELS))

    @field_validator("completion_url")
    @classmethod
    def _completion_url_valid(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise _invalid(
                f"invalid completion URL {value!r}; it must start with https:// or http://")
        return value

    @model_validator(mode="after")
    def _check_fields_together(self) -> StudyDefinition:
        problems = _cross_field_problems(self)
        if problems:
            raise PydanticCustomError(
                "study_checks", "{message}",
                {"message": "; ".join(f"{field}: {text}" for field, text in problems),
                 "problems": problems})
        return self

    def condition_stages(self, name: str) -> frozenset[str]:
        """Return the stages that condition ``name`` shows.

        Raises
        ------
        StudyInputError
            When ``name`` is not a condition of this study's type.
        """
        allowed = CONDITION_STAGES[self.type]
        if name not in allowed:
            raise StudyInputError(
                f"unknown condition {name!r} for a {self.type} study; "
                f"allowed: {', '.join(allowed)}")
        return allowed[name]

    @property
    def feature_conditions(self) -> tuple[str, ...]:
        """Conditions that show R_l or R_g, in study order.

        Participants in these conditions also answer whether the Overview or the
        Features helped more.
        """
        return tuple(name for name in self.conditions
                     if self.condition_stages(name) & {"R_l", "R_g"})

    @property
    def stages_needed(self) -> frozenset[str]:
        """Union of the stages of the study's conditions: the engine computes only these."""
        needed: frozenset[str] = frozenset()
        for name in self.conditions:
            needed |= self.condition_stages(name)
        return needed

    @property
    def weights_path(self) -> Path | None:
        """The weights file, resolved against the repository root; None means the default."""
        if self.weights is None:
            return None
        return paths.REPOSITORY_ROOT / self.weights

    def completion_link(self, completion_code: str) -> str | None:
        """Return ``completion_url`` with the completion code appended, or None without a URL."""
        if self.completion_url is None:
            return None
        return self.completion_url + completion_code


def _cross_field_problems(definition: StudyDefinition) -> list[tuple[str, str]]:
    """Return (field, message) pairs for rules that involve more than one field."""
    problems: list[tuple[str, str]] = []
    selection = definition.selection
    allowed_conditions = CONDITION_STAGES[definition.type]

    if not definition.conditions:
        problems.append(("conditions", "the list is empty; list at least one condition, or "
                                       "remove the key to use every condition of the type"))
    seen: set[str] = set()
    for position, name in enumerate(definition.conditions):
        if name not in allowed_conditions:
            problems.append((f"conditions[{position}]",
                             f"unknown condition {name!r} for a {definition.type} study; "
                             f"allowed: {', '.join(allowed_conditions)}"))
        elif name in seen:
            problems.append((f"conditions[{position}]",
                             f"condition {name!r} is listed twice; list each condition once"))
        seen.add(name)

    model_dataset = KNOWN_MODELS[definition.model]
    if model_dataset != definition.dataset:
        problems.append(("model", f"model {definition.model!r} was trained on {model_dataset!r}, "
                                  f"not on dataset {definition.dataset!r}; use a model of "
                                  f"{definition.dataset!r}"))

    if selection.practice >= selection.items:
        problems.append(("selection.practice",
                         f"practice {selection.practice} must be smaller than items "
                         f"{selection.items}, which counts practice items too"))

    question_types = KNOWN_DATASETS[definition.dataset]
    for position, excluded in enumerate(selection.exclude_question_types):
        if excluded not in question_types:
            problems.append((f"selection.exclude_question_types[{position}]",
                             f"unknown question type {excluded!r} for dataset "
                             f"{definition.dataset!r}; allowed: {', '.join(question_types)}"))

    if selection.model_wrong_share is not None and definition.type != "simulation":
        problems.append(("selection.model_wrong_share",
                         f"value {selection.model_wrong_share} applies to simulation studies "
                         f"only; remove it from this {definition.type} study (error studies "
                         "take items the model got wrong only)"))

    if selection.indices is not None:
        if len(selection.indices) != selection.items:
            problems.append(("selection.indices",
                             f"{len(selection.indices)} indices given but items is "
                             f"{selection.items}; give exactly one index per item"))
        negative = [index for index in selection.indices if index < 0]
        if negative:
            problems.append(("selection.indices",
                             f"negative index {negative[0]}; indices start at 0"))
        if len(set(selection.indices)) != len(selection.indices):
            problems.append(("selection.indices", "an index appears twice; list each item once"))

    if definition.type != "simulation" and definition.choices is not None:
        problems.append(("choices", f"value {definition.choices} applies to simulation studies "
                                    f"only; remove it from this {definition.type} study"))
    return problems


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a key repeated in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _field_path(loc: tuple[Any, ...]) -> str:
    """Return a pydantic error location as a dotted path such as ``conditions[2]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = StudyDefinition
    for part in loc[:-1]:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe_errors(source: str, error: ValidationError) -> list[str]:
    lines: list[str] = []
    for detail in error.errors(include_url=False):
        loc = tuple(detail["loc"])
        kind = detail["type"]
        if kind == "study_checks":
            lines.extend(f"{source}: {field}: {text}" for field, text in detail["ctx"]["problems"])
        elif kind == "study_value":
            lines.append(f"{source}: {_field_path(loc)}: {detail['msg']}")
        elif kind == "extra_forbidden":
            lines.append(f"{source}: {_field_path(loc)}: unknown key {loc[-1]!r}; allowed keys: "
                         f"{', '.join(_allowed_keys(loc))}")
        elif kind == "missing":
            lines.append(f"{source}: {_field_path(loc)}: required key is missing")
        else:
            message = detail["msg"][:1].lower() + detail["msg"][1:]
            lines.append(f"{source}: {_field_path(loc)}: invalid value {detail['input']!r}: "
                         f"{message}")
    return lines


def parse_study(data: Any, source: str = "study definition") -> StudyDefinition:
    """Validate an already parsed study definition (a mapping, as YAML gives it).

    Raises
    ------
    StudyInputError
        With one line per problem: ``source: field: message``.
    """
    if not isinstance(data, dict):
        raise StudyInputError(
            f"{source}: the study definition must be a YAML mapping of keys such as name, type "
            f"and selection; got {type(data).__name__}")
    try:
        return StudyDefinition.model_validate(data)
    except ValidationError as error:
        raise StudyInputError("\n".join(_describe_errors(source, error))) from None


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyInputError(
            f"study file not found: {path} (relative paths start at {Path.cwd()}); pass the path "
            "of a study definition such as studies/easyvqa_simulation.yaml") from None
    except (OSError, UnicodeDecodeError) as error:
        raise StudyInputError(f"cannot read study file {path}: {error}") from None

    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise StudyInputError(f"{path}: invalid YAML{where}: {error.problem or error}") from None
    except yaml.YAMLError as error:
        raise StudyInputError(f"{path}: invalid YAML: {error}") from None


def load_study(path: str | Path) -> StudyDefinition:
    """Read and validate one study file.

    Raises
    ------
    StudyInputError
        For a missing or unreadable file, invalid YAML (with the line number), an unknown
        key, or any invalid value (the message names the file, field, value and the rule).
    """
    path = Path(path)
    return parse_study(_read_yaml(path), source=str(path))


def find_study(name: str, studies_dir: str | Path = paths.STUDIES_DIR) -> StudyDefinition:
    """Return the study named ``name`` among the ``*.yaml`` files of ``studies_dir``.

    Files that cannot be parsed are skipped with a warning unless no file matches, in
    which case the error lists them.

    Raises
    ------
    StudyInputError
        When no file or more than one file defines a study of that name, or when the
        matching file is invalid.
    """
    studies_dir = Path(studies_dir)
    matches: list[Path] = []
    available: list[str] = []
    unreadable: list[str] = []
    for path in sorted(studies_dir.glob("*.yaml")):
        try:
            data = _read_yaml(path)
        except StudyInputError as error:
            logger.warning("skipping study file %s: %s", path, error)
            unreadable.append(path.name)
            continue
        file_name = data.get("name") if isinstance(data, dict) else None
        available.append(f"{file_name} ({path.name})")
        if file_name == name:
            matches.append(path)

    if len(matches) > 1:
        raise StudyInputError(
            f"study {name!r} is defined by more than one file in {studies_dir}: "
            f"{', '.join(p.name for p in matches)}; give each study a unique name")
    if not matches:
        known = ", ".join(available) if available else "none"
        skipped = f"; files that could not be parsed: {', '.join(unreadable)}" if unreadable else ""
        raise StudyInputError(
            f"study {name!r} not found in {studies_dir}; studies there: {known}{skipped}")
    return load_study(matches[0])


__all__ = [
    "CONDITIONS_WITHOUT_MAPS",
    "CONDITION_STAGES",
    "DEFAULT_CHOICES",
    "Explanations",
    "KNOWN_DATASETS",
    "KNOWN_MODELS",
    "SPARSE_FIT_TARGETS",
    "SPLITS",
    "STAGES",
    "STUDY_TYPES",
    "Selection",
    "StudyDefinition",
    "find_study",
    "load_study",
    "parse_study",
]
