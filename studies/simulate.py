"""Simulated participants, for piloting a study's pipeline and sizing it.

``simulate_participants`` runs made-up participants through the same functions as the app
(``join_study``, ``give_consent``, ``next_item``, ``record_shown``, ``submit_response`` and
``finish``), so a pilot exercises the real assignment, ordering and storage. Simulated
participants carry ``simulated=True`` and the external id ``simulated-<n>`` (stored hashed,
as every external id), so the analysis can tell them apart and a second run resumes them
instead of adding new ones.

``detection_power`` estimates by Monte Carlo how many participants per condition a study
needs to detect a difference in correctness between two conditions.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sqlalchemy.orm import Session

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


def _simulation_accuracy(accuracy: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_SIMULATION_ACCURACY)
    merged.update(accuracy or {})
    for condition, value in merged.items():
        if condition not in CONDITION_STAGES["simulation"]:
            raise StudyInputError(
                f"accuracy: unknown condition {condition!r}; allowed: "
                f"{', '.join(CONDITION_STAGES['simulation'])}")
        if not 0.0 <= value <= 1.0:
            raise StudyInputError(
                f"accuracy[{condition!r}]: invalid value {value!r}; use a share from 0 to 1")
    return merged


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
        ``DEFAULT_SIMULATION_ACCURACY``, which holds made-up pilot values.
    answer_generator : callable, optional
        ``(SimulatedItem, random.Random) -> SimulatedAnswer``. Required for concept and
        error studies; simulation studies default to ``model_prediction_answers``.

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
                         feature_conditions, practice)
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
                        confidence=response.confidence)
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
    """Run ``mviz simulate``: add simulated participants to a prepared simulation study.

    Reads the study file, its prepared items, answer key and answer choices, opens the
    response store (``database_url`` or the default) and prints the progress per condition.
    Returns the exit code 0.
    """
    from sqlalchemy.orm import Session

    from studies.bundles import list_items, load_answer_key, load_bundle
    from studies.definition import load_study
    from studies.participation import progress_by_condition
    from studies.store import create_store, mask_url
    from studies.store import database_url as default_database_url

    definition = load_study(study_file)
    if definition.type != "simulation":
        raise StudyInputError(
            f"{study_file}: mviz simulate supports simulation studies only; this is a "
            f"{definition.type} study")
    item_keys, practice_keys = list_items(definition.name)
    answer_key = load_answer_key(definition.name)
    choices = {key: list(load_bundle(definition.name, key)["choices"]) for key in item_keys}

    url = database_url or default_database_url()
    engine = create_store(url)
    try:
        with Session(engine) as session:
            simulate_participants(session, definition, item_keys, practice_keys, answer_key,
                                  choices, participants=participants, random_state=seed)
            rows = progress_by_condition(session, definition.name)
    finally:
        engine.dispose()

    print(f"Study {definition.name}: {participants} simulated participants in {mask_url(url)}")
    for row in rows:
        print(f"  {row['condition']:<14} joined {row['joined']:>3}  finished {row['finished']:>3}"
              f"  simulated {row['simulated']:>3}  responses {row['responses']:>4}")
    return 0


__all__ = [
    "AnswerGenerator",
    "DEFAULT_SIMULATION_ACCURACY",
    "SimulatedAnswer",
    "SimulatedItem",
    "command_simulate",
    "detection_power",
    "model_prediction_answers",
    "simulate_participants",
]
