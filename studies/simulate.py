"""Simulated participants, for piloting a study's pipeline and sizing it.

``simulate_participants`` runs made-up participants through the same functions as the app
(``join_study``, ``give_consent``, ``next_item``, ``record_shown``, ``submit_response`` and
``finish``), so a pilot exercises the real assignment, ordering and storage. Simulated
participants carry ``simulated=True`` and the external id ``simulated-<n>`` (stored hashed,
as every external id), so the analysis can tell them apart and a second run resumes them
instead of adding new ones.

The answer generators of the three study types are ``model_prediction_answers``
(simulation), ``concept_answers`` (free-text concepts with typing variants, so that coding
has work to do) and ``error_answers`` (error categories). ``command_simulate`` picks the
one of the study's type.

``detection_power`` estimates by Monte Carlo how many participants per condition a study
needs to detect a difference in correctness between two conditions.
"""

from __future__ import annotations

import hashlib
import logging
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sqlalchemy.orm import Session

from studies.coding import CONCEPT_MAX_LENGTH, ERROR_CATEGORY_CODES
from studies.definition import CONDITION_STAGES, StudyDefinition
from studies.errors import StudyInputError
from studies.participation import (
    HELPFUL_VIEWS,
    finish,
    give_consent,
    join_study,
    next_item,
    record_shown,
    submit_response,
    sync_study,
)
from studies.store import Participant

logger = logging.getLogger(__name__)

# Share of items on which a simulated participant picks the model's prediction, per
# simulation condition. NOTE: these are made-up pilot values that rise from U to MultiViz
# as a plausible pattern; they are not results of any study.
DEFAULT_SIMULATION_ACCURACY: dict[str, float] = {
    "U": 0.55,
    "U+C": 0.60,
    "U+C+R_l": 0.65,
    "U+C+R_l+R_g": 0.70,
    "MultiViz": 0.80,
    "R_l+P": 0.70,
    "R_g+P": 0.70,
}

# Share of features for which a simulated participant of a concept condition writes the
# feature's own concept. Otherwise they write another concept of the vocabulary. NOTE:
# made-up pilot values that rise with the views shown, not results of any study.
DEFAULT_CONCEPT_AGREEMENT: dict[str, float] = {
    "R_l": 0.40,
    "R_l+R_g without maps": 0.55,
    "R_l+R_g": 0.70,
}

# Share of items for which a simulated participant of an error condition picks the item's
# own error category. The other two categories share the rest equally. NOTE: made-up
# pilot values, not results of any study.
DEFAULT_ERROR_AGREEMENT: dict[str, float] = {
    "No viz": 0.45,
    "MultiViz": 0.70,
}

# Concepts that simulated participants write for features of an easy-VQA model, each with
# the phrasings they use. Several phrasings of one concept, plus typos and case variants,
# give the coding merges to find.
DEFAULT_CONCEPT_VOCABULARY: dict[str, tuple[str, ...]] = {
    "red": ("red color", "the colour red", "red", "red shapes"),
    "blue": ("blue", "blue color", "the color blue"),
    "green": ("green", "green colour", "green shapes"),
    "yellow": ("yellow", "yellow color", "the colour yellow"),
    "circle": ("circle", "round shape", "circles"),
    "triangle": ("triangle shape", "triangle", "triangles"),
    "rectangle": ("rectangle", "rectangular shape", "rectangles"),
    "color question": ("questions about color", "asks for the colour", "color question"),
    "shape question": ("questions about shape", "asks what shape it is", "shape question"),
}


@dataclass(frozen=True)
class SimulatedItem:
    """What an answer generator knows about the item a simulated participant answers."""

    condition: str
    item_key: str
    practice: bool
    choices: list[str] | None
    answer_key: Mapping[str, str] | None
    feature_condition: bool


@dataclass(frozen=True)
class SimulatedAnswer:
    """The response a simulated participant submits."""

    answer: str
    helpful_view: str | None = None
    confidence: int | None = None


AnswerGenerator = Callable[[SimulatedItem, random.Random], SimulatedAnswer]


def model_prediction_answers(accuracy: Mapping[str, float]) -> AnswerGenerator:
    """Return the answer generator of simulation studies.

    With probability ``accuracy[condition]`` the participant answers the model's
    prediction, otherwise one of the other choices, uniformly. In conditions that show
    R_l or R_g, the helpful view is "overview" or "features" with equal probability.
    """

    def answer(item: SimulatedItem, rng: random.Random) -> SimulatedAnswer:
        prediction = item.answer_key["prediction"]
        others = [choice for choice in item.choices if choice != prediction]
        if rng.random() < accuracy[item.condition] or not others:
            chosen = prediction
        else:
            chosen = rng.choice(others)
        helpful_view = rng.choice(HELPFUL_VIEWS) if item.feature_condition else None
        return SimulatedAnswer(chosen, helpful_view=helpful_view)

    return answer


def concept_answers(
    agreement: Mapping[str, float] | None = None,
    vocabulary: Mapping[str, Sequence[str]] | None = None,
    *,
    seed: int = 0,
    typo_rate: float = 0.15,
    surface_rate: float = 0.3,
) -> AnswerGenerator:
    """Return an answer generator of concept studies: a short text and a confidence.

    Each feature (item key) has its own concept, drawn from ``vocabulary`` by a hash of
    ``seed`` and the item key, so every participant shares it. With probability
    ``agreement[condition]`` a participant writes a phrasing of that concept, otherwise a
    phrasing of another concept, uniformly. The phrasing then gets a typo with probability
    ``typo_rate`` (two letters swapped, a letter dropped or doubled) and, with probability
    ``surface_rate``, another case or a trailing full stop. The confidence is 3 to 5 on the
    feature's own concept and 1 to 3 otherwise, uniformly.

    Parameters
    ----------
    agreement : mapping of condition to float, optional
        Missing conditions take ``DEFAULT_CONCEPT_AGREEMENT``, which contains made-up values.
    vocabulary : mapping of str to sequence of str, optional
        Concept -> its phrasings; at least two concepts. ``DEFAULT_CONCEPT_VOCABULARY`` when
        None.
    seed : int
        Seed of the concept of each feature.
    typo_rate, surface_rate : float
        Probabilities from 0 to 1.

    Raises
    ------
    StudyInputError
        For an unknown condition, a probability outside [0, 1], or a vocabulary with fewer
        than two concepts, a concept without phrasings or a phrasing that is empty or
        longer than ``CONCEPT_MAX_LENGTH``.
    """
    shares = _merged_shares("concept", DEFAULT_CONCEPT_AGREEMENT, agreement, "agreement")
    phrasings = _checked_vocabulary(DEFAULT_CONCEPT_VOCABULARY if vocabulary is None
                                    else vocabulary)
    for name, rate in (("typo_rate", typo_rate), ("surface_rate", surface_rate)):
        _check_share(name, rate)
    concepts = list(phrasings)

    def answer(item: SimulatedItem, rng: random.Random) -> SimulatedAnswer:
        own = concepts[_stable_index(seed, item.item_key, len(concepts))]
        on_concept = rng.random() < shares[item.condition]
        concept = own if on_concept else rng.choice([c for c in concepts if c != own])
        text = rng.choice(phrasings[concept])
        if rng.random() < typo_rate:
            text = _with_typo(text, rng)
        if rng.random() < surface_rate:
            text = _with_surface_variant(text, rng)
        confidence = rng.randint(3, 5) if on_concept else rng.randint(1, 3)
        return SimulatedAnswer(text[:CONCEPT_MAX_LENGTH], confidence=confidence)

    return answer


def error_answers(
    agreement: Mapping[str, float] | None = None, *, seed: int = 0
) -> AnswerGenerator:
    """Return an answer generator of error studies: an error category and a confidence.

    Each item has its own error category, drawn from the item's choices (the codes of
    ``studies.coding.ERROR_CATEGORIES`` when it has none) by a hash of ``seed`` and the
    item key. A participant picks it with probability ``agreement[condition]`` and each
    other category with an equal share of the rest. The confidence is 3 to 5 on the
    item's category and 1 to 4 otherwise, uniformly.

    Parameters
    ----------
    agreement : mapping of condition to float, optional
        Missing conditions take ``DEFAULT_ERROR_AGREEMENT``, which contains made-up values.
    seed : int
        Seed of the category of each item.

    Raises
    ------
    StudyInputError
        For an unknown condition or a probability outside [0, 1].
    """
    shares = _merged_shares("error", DEFAULT_ERROR_AGREEMENT, agreement, "agreement")

    def answer(item: SimulatedItem, rng: random.Random) -> SimulatedAnswer:
        categories = list(item.choices) if item.choices else list(ERROR_CATEGORY_CODES)
        own = categories[_stable_index(seed, item.item_key, len(categories))]
        others = [category for category in categories if category != own]
        on_category = rng.random() < shares[item.condition] or not others
        chosen = own if on_category else rng.choice(others)
        confidence = rng.randint(3, 5) if on_category else rng.randint(1, 4)
        return SimulatedAnswer(chosen, confidence=confidence)

    return answer


def _stable_index(seed: int, item_key: str, n: int) -> int:
    # A hash instead of Python's hash(), which changes between processes for strings.
    digest = hashlib.sha256(f"{seed}:{item_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def _with_typo(text: str, rng: random.Random) -> str:
    letters = [position for position, character in enumerate(text) if character.isalpha()]
    if len(letters) < 3:
        return text
    position = rng.choice(letters[:-1])
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap" and text[position] != text[position + 1]:
        return text[:position] + text[position + 1] + text[position] + text[position + 2:]
    if kind == "drop":
        return text[:position] + text[position + 1:]
    return text[:position] + text[position] + text[position:]


def _with_surface_variant(text: str, rng: random.Random) -> str:
    kind = rng.choice(("upper", "title", "capitalize", "full stop"))
    if kind == "upper":
        return text.upper()
    if kind == "title":
        return text.title()
    if kind == "capitalize":
        return text.capitalize()
    return text + "."


def _check_share(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise StudyInputError(f"{name}: invalid value {value!r}; use a share from 0 to 1")


def _merged_shares(
    study_type: str,
    defaults: Mapping[str, float],
    given: Mapping[str, float] | None,
    name: str,
) -> dict[str, float]:
    merged = dict(defaults)
    merged.update(given or {})
    allowed = CONDITION_STAGES[study_type]
    for condition, value in merged.items():
        if condition not in allowed:
            raise StudyInputError(
                f"{name}: unknown condition {condition!r}; allowed: {', '.join(allowed)}")
        if not 0.0 <= value <= 1.0:
            raise StudyInputError(
                f"{name}[{condition!r}]: invalid value {value!r}; use a share from 0 to 1")
    return merged


def _checked_vocabulary(vocabulary: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    if len(vocabulary) < 2:
        raise StudyInputError(
            f"vocabulary: {len(vocabulary)} concepts given; give at least two, so that "
            "participants can disagree")
    checked: dict[str, list[str]] = {}
    for concept, phrasings in vocabulary.items():
        if isinstance(phrasings, str) or not phrasings:
            raise StudyInputError(
                f"vocabulary[{concept!r}]: invalid phrasings {phrasings!r}; give a list of "
                "one or more texts")
        for phrasing in phrasings:
            if not isinstance(phrasing, str) or not phrasing.strip():
                raise StudyInputError(
                    f"vocabulary[{concept!r}]: invalid phrasing {phrasing!r}; use a non-empty "
                    "text")
            if len(phrasing) > CONCEPT_MAX_LENGTH:
                raise StudyInputError(
                    f"vocabulary[{concept!r}]: a phrasing has {len(phrasing)} characters; "
                    f"shorten it to at most {CONCEPT_MAX_LENGTH}")
        checked[concept] = list(phrasings)
    return checked


def _simulation_accuracy(accuracy: Mapping[str, float] | None) -> dict[str, float]:
    return _merged_shares("simulation", DEFAULT_SIMULATION_ACCURACY, accuracy, "accuracy")


def _check_simulation_inputs(
    item_keys: Sequence[str],
    answer_key: Mapping[str, Mapping[str, str]],
    choices: Mapping[str, Sequence[str]],
) -> None:
    for key in item_keys:
        if key not in answer_key or "prediction" not in answer_key[key]:
            raise StudyInputError(
                f"answer_key: item {key!r} has no prediction; prepare the study again")
        if key not in choices:
            raise StudyInputError(f"choices: item {key!r} has no answer choices")
        if answer_key[key]["prediction"] not in choices[key]:
            raise StudyInputError(
                f"choices: the prediction {answer_key[key]['prediction']!r} of item {key!r} is "
                f"not among its choices {list(choices[key])}; prepare the study again")


def simulate_participants(
    session: Session,
    definition: StudyDefinition,
    item_keys: Sequence[str],
    practice_keys: Sequence[str],
    answer_key: Mapping[str, Mapping[str, str]],
    choices: Mapping[str, Sequence[str]],
    *,
    participants: int,
    random_state: int,
    accuracy: Mapping[str, float] | None = None,
    answer_generator: AnswerGenerator | None = None,
    max_length: int | None = None,
) -> list[Participant]:
    """Run simulated participants through the study, as the app runs real ones.

    The study is synchronized first (``sync_study``). Participant ``n`` (1 to
    ``participants``) joins with the external id ``simulated-<n>`` and a random generator
    seeded with ``(random_state, n)``. So the same call gives the same responses, and a
    later call with more participants resumes the first ones and adds only the new ones.

    Parameters
    ----------
    item_keys, practice_keys : sequence of str
        As for ``sync_study``: every item key (practice included) and the practice keys.
    answer_key : mapping of item key to {"prediction": str, "ground_truth": str}
        The model's prediction and the ground truth per item.
    choices : mapping of item key to list of str
        The answer choices of each item; submitted answers must be among them. Items
        missing here take free text (concept studies).
    participants : int
        Number of simulated participants in total.
    random_state : int
        Seed of every random draw (assignment ties, item order and answers).
    accuracy : mapping of condition to float, optional
        Simulation studies: the share of items on which participants of a condition
        answer the model's prediction. Missing conditions take
        ``DEFAULT_SIMULATION_ACCURACY``, which contains made-up pilot values.
    answer_generator : callable, optional
        ``(SimulatedItem, random.Random) -> SimulatedAnswer``. Required for concept and
        error studies (``concept_answers``, ``error_answers``); simulation studies
        default to ``model_prediction_answers``.
    max_length : int, optional
        Maximum number of characters of a free-text answer, checked as the app checks it
        (``CONCEPT_MAX_LENGTH`` for concept studies).

    Returns
    -------
    list of Participant
        In the order of ``n``; all finished.

    Raises
    ------
    StudyInputError
        For invalid counts, accuracies, a missing answer generator, or item keys missing
        from ``answer_key`` or ``choices``.
    """
    if isinstance(participants, bool) or not isinstance(participants, int) or participants < 1:
        raise StudyInputError(f"invalid number of participants {participants!r}; use 1 or more")
    if answer_generator is None:
        if definition.type != "simulation":
            raise StudyInputError(
                f"simulated participants of a {definition.type} study need an answer "
                "generator; pass answer_generator=(SimulatedItem, random.Random) -> "
                "SimulatedAnswer")
        _check_simulation_inputs(item_keys, answer_key, choices)
        answer_generator = model_prediction_answers(_simulation_accuracy(accuracy))

    sync_study(session, definition, item_keys, practice_keys)
    feature_conditions = set(definition.feature_conditions)
    practice = set(practice_keys)

    simulated = []
    for number in range(1, participants + 1):
        # A string seed is hashed with SHA-512, so participant n's draws do not depend on
        # how many participants come before or after it.
        rng = random.Random(f"{random_state}:{number}")
        participant = join_study(session, definition.name, external_id=f"simulated-{number}",
                                 random_state=rng, simulated=True)
        if participant.finished_at is None:
            _participate(session, participant, rng, answer_generator, answer_key, choices,
                         feature_conditions, practice, max_length)
        simulated.append(participant)
    logger.info("simulated %d participants of study %r", participants, definition.name)
    return simulated


def _participate(
    session: Session,
    participant: Participant,
    rng: random.Random,
    answer_generator: AnswerGenerator,
    answer_key: Mapping[str, Mapping[str, str]],
    choices: Mapping[str, Sequence[str]],
    feature_conditions: set[str],
    practice: set[str],
    max_length: int | None,
) -> None:
    give_consent(session, participant)
    condition = participant.condition.name
    while (item_key := next_item(session, participant)) is not None:
        record_shown(session, participant, item_key)
        item_choices = list(choices[item_key]) if item_key in choices else None
        item = SimulatedItem(condition=condition, item_key=item_key,
                             practice=item_key in practice, choices=item_choices,
                             answer_key=answer_key.get(item_key),
                             feature_condition=condition in feature_conditions)
        response = answer_generator(item, rng)
        submit_response(session, participant, item_key, answer=response.answer,
                        allowed_answers=item_choices, helpful_view=response.helpful_view,
                        confidence=response.confidence, max_length=max_length)
    finish(session, participant)


def detection_power(
    n_per_condition: int,
    p_a: float,
    p_b: float,
    n_items: int = 20,
    *,
    alpha: float = 0.05,
    n_simulations: int = 2000,
    random_state: int = 0,
) -> float:
    """Estimate the power to detect a difference in correctness between two conditions.

    Each simulated participant answers ``n_items`` counted items, each correctly with
    probability ``p_a`` (condition A) or ``p_b`` (condition B), independently; their
    correctness is the share correct. A two-sided Welch t-test (unequal variances,
    ``scipy.stats.ttest_ind(equal_var=False)``) compares the ``n_per_condition``
    correctness values of the two conditions at level ``alpha``. The power is the share of
    ``n_simulations`` simulated studies in which the test rejects.

    Parameters
    ----------
    n_per_condition : int
        Participants per condition, at least 2.
    p_a, p_b : float
        Probability of a correct answer per item in each condition, from 0 to 1.
    n_items : int
        Counted items per participant.
    alpha : float
        Significance level, between 0 and 1.
    n_simulations : int
        Number of simulated studies; the Monte-Carlo standard error of the result is
        ``sqrt(power * (1 - power) / n_simulations)``.
    random_state : int
        Seed of the simulation.

    Returns
    -------
    float
        Estimated power; about ``alpha`` when ``p_a == p_b``.

    Notes
    -----
    Participants are modelled as identical within a condition (no between-participant
    spread beyond the binomial one), so the estimate is optimistic for real participants.
    When both groups of a simulated study have zero variance (all participants equally
    correct), the t statistic is undefined; such a study counts as a rejection when the
    two means differ and as no rejection otherwise.
    """
    _check_power_inputs(n_per_condition, p_a, p_b, n_items, alpha, n_simulations)
    rng = np.random.default_rng(random_state)

    # Correctness per simulated study and participant: shape (n_simulations, n_per_condition).
    shape = (n_simulations, n_per_condition)
    correct_a = rng.binomial(n_items, p_a, size=shape) / n_items
    correct_b = rng.binomial(n_items, p_b, size=shape) / n_items

    # Groups without variance make the t statistic undefined (handled below), and SciPy
    # warns about them; the warnings carry no information here.
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p_values = stats.ttest_ind(correct_a, correct_b, axis=1, equal_var=False).pvalue
    rejected = p_values < alpha

    undefined = np.isnan(p_values)
    means_differ = correct_a.mean(axis=1) != correct_b.mean(axis=1)
    rejected[undefined] = means_differ[undefined]
    return float(rejected.mean())


def _check_power_inputs(
    n_per_condition: int, p_a: float, p_b: float, n_items: int, alpha: float, n_simulations: int
) -> None:
    if n_per_condition < 2:
        raise StudyInputError(
            f"invalid n_per_condition {n_per_condition}; the Welch t-test needs at least 2 "
            "participants per condition")
    for name, value in (("p_a", p_a), ("p_b", p_b)):
        if not 0.0 <= value <= 1.0:
            raise StudyInputError(f"invalid {name} {value}; use a probability from 0 to 1")
    if n_items < 1:
        raise StudyInputError(f"invalid n_items {n_items}; use 1 or more")
    if not 0.0 < alpha < 1.0:
        raise StudyInputError(f"invalid alpha {alpha}; use a level between 0 and 1, such as 0.05")
    if n_simulations < 1:
        raise StudyInputError(f"invalid n_simulations {n_simulations}; use 1 or more")


def command_simulate(study_file: str, *, participants: int, seed: int = 0,
                     database_url: str | None = None) -> int:
    """Run ``mviz simulate``: add simulated participants to a prepared study.

    Reads the study file and its prepared items, and for each study type what its answer
    generator needs: the answer key and answer choices (simulation), nothing (concept), or
    the answer key when present (error). Answers come from ``model_prediction_answers``,
    ``concept_answers`` or ``error_answers`` with their default values, seeded with
    ``seed``. Opens the response store (``database_url`` or the default) and prints the
    progress per condition. Returns the exit code 0.
    """
    from sqlalchemy.orm import Session

    from studies.bundles import list_items
    from studies.definition import load_study
    from studies.participation import progress_by_condition
    from studies.store import create_store, mask_url
    from studies.store import database_url as default_database_url

    definition = load_study(study_file)
    item_keys, practice_keys = list_items(definition.name)
    inputs = _type_inputs(definition, item_keys, seed)

    url = database_url or default_database_url()
    engine = create_store(url)
    try:
        with Session(engine) as session:
            before = _simulated_count(session, definition.name)
            simulate_participants(session, definition, item_keys, practice_keys,
                                  inputs.answer_key, inputs.choices, participants=participants,
                                  random_state=seed, answer_generator=inputs.answer_generator,
                                  max_length=inputs.max_length)
            rows = progress_by_condition(session, definition.name)
    finally:
        engine.dispose()

    width = max(14, *(len(row["condition"]) for row in rows))
    added = sum(row["simulated"] for row in rows) - before
    print(f"Study {definition.name}: {participants} simulated participants in total, {added} "
          f"new (simulated participant n always gets the same id, so a rerun adds only the "
          f"missing ones), in {mask_url(url)}")
    for row in rows:
        print(f"  {row['condition']:<{width}} joined {row['joined']:>3}  finished "
              f"{row['finished']:>3}  simulated {row['simulated']:>3}  responses "
              f"{row['responses']:>4}")
    if definition.type == "simulation":
        _print_power(definition, seed)
    return 0


def _simulated_count(session, study_name: str) -> int:
    """Return how many simulated participants the study has in the store (0 before its sync)."""
    from studies.participation import progress_by_condition

    try:
        return sum(row["simulated"] for row in progress_by_condition(session, study_name))
    except StudyInputError:
        return 0


POWER_BASELINE = 0.6
POWER_DIFFERENCES = (0.1, 0.2, 0.3)


def _print_power(definition: StudyDefinition, seed: int) -> None:
    """Print the chance of detecting a difference in correctness between two conditions."""
    n_items = definition.selection.counted
    sizes = sorted({definition.participants_per_condition, 10, 20, 40})
    print(f"\nPower to detect a difference in mean correctness between two conditions "
          f"(baseline {POWER_BASELINE:.1f}, {n_items} counted items, Welch's t-test at 0.05, "
          f"Monte Carlo):")
    print("  participants per condition  " + "  ".join(f"+{d:.1f}" for d in POWER_DIFFERENCES))
    for n in sizes:
        powers = [detection_power(n, POWER_BASELINE, POWER_BASELINE + d, n_items,
                                  n_simulations=1000, random_state=seed)
                  for d in POWER_DIFFERENCES]
        print(f"  {n:>26}  " + "  ".join(f"{p:4.2f}" for p in powers))


@dataclass(frozen=True)
class _TypeInputs:
    answer_key: Mapping[str, Mapping[str, str]]
    choices: Mapping[str, Sequence[str]]
    answer_generator: AnswerGenerator | None
    max_length: int | None


def _type_inputs(definition: StudyDefinition, item_keys: Sequence[str], seed: int) -> _TypeInputs:
    """Return what ``simulate_participants`` needs for the study's type."""
    from studies import paths
    from studies.bundles import load_answer_key, load_bundle

    name = definition.name
    if definition.type == "simulation":
        # The default generator (model_prediction_answers) is built and checked there.
        choices = {key: list(load_bundle(name, key)["choices"]) for key in item_keys}
        return _TypeInputs(load_answer_key(name), choices, None, None)
    if definition.type == "concept":
        return _TypeInputs({}, {}, concept_answers(seed=seed), CONCEPT_MAX_LENGTH)

    answer_key = load_answer_key(name) if paths.answer_key_path(name).is_file() else {}
    choices = {key: list(ERROR_CATEGORY_CODES) for key in item_keys}
    return _TypeInputs(answer_key, choices, error_answers(seed=seed), None)


__all__ = [
    "AnswerGenerator",
    "DEFAULT_CONCEPT_AGREEMENT",
    "DEFAULT_CONCEPT_VOCABULARY",
    "DEFAULT_ERROR_AGREEMENT",
    "DEFAULT_SIMULATION_ACCURACY",
    "SimulatedAnswer",
    "SimulatedItem",
    "command_simulate",
    "concept_answers",
    "detection_power",
    "error_answers",
    "model_prediction_answers",
    "simulate_participants",
]
