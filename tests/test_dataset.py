"""The easy-VQA loader against the sizes published with the dataset."""

import numpy as np
import pytest

from engine.datasets.easyvqa import EasyVQA, answer_vocabulary, question_type


def test_easyvqa_question_counts():
    train, validation, test = EasyVQA("train"), EasyVQA("validation"), EasyVQA("test")

    assert len(train) + len(validation) == 38_575
    assert len(test) == 9_673


def test_easyvqa_validation_split_shares_no_image_with_train():
    train_images = {q.image_id for q in EasyVQA("train").questions}
    validation_images = {q.image_id for q in EasyVQA("validation").questions}

    assert train_images.isdisjoint(validation_images)
    assert len(train_images) + len(validation_images) == 4_000
    assert len(validation_images) == 400


def test_easyvqa_answer_vocabulary_has_13_answers():
    answers = answer_vocabulary()

    assert len(answers) == 13
    assert len(set(answers)) == 13


def test_easyvqa_question_types_follow_answers():
    assert question_type("yes") == "yes/no"
    assert question_type("circle") == "shape"
    assert question_type("teal") == "color"
    types = {q.question_type for q in EasyVQA("test").questions}
    assert types == {"shape", "color", "yes/no"}


def test_easyvqa_datapoint_is_float_image_and_question():
    test = EasyVQA("test")

    datapoint = test.datapoint(0)

    assert datapoint["image"].shape == (64, 64, 3)
    assert datapoint["image"].dtype == np.float32
    assert 0.0 <= datapoint["image"].min() <= datapoint["image"].max() <= 1.0
    assert datapoint["question"] == test[0].question
    assert test.answers[test.label(0)] == test[0].answer


def test_easyvqa_index_out_of_range_names_valid_range():
    test = EasyVQA("test")

    with pytest.raises(IndexError, match="0 to 9672"):
        test.datapoint(9_673)


def test_easyvqa_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="'dev'"):
        EasyVQA("dev")
