import numpy as np
import pytest

from crossrank.errors import InvalidInput, ModelError
from crossrank.scores import activate, check_activation, max_per_owner, relevance_logit, sigmoid


def test_sigmoid_is_computed_in_float64_and_does_not_saturate() -> None:
    x = np.array([20.0, 25.0, 30.0], dtype=np.float32)
    out = sigmoid(relevance_logit(x[:, None]))
    assert out.dtype == np.float64
    assert np.all(out < 1.0) and out[0] < out[1] < out[2]
    assert np.allclose(sigmoid(np.array([-800.0, 0.0, 800.0])), [0.0, 0.5, 1.0])


def test_two_label_models_give_the_softmax_of_the_positive_label() -> None:
    logits = np.array([[0.3, 1.2], [2.0, -1.0]])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(activate(relevance_logit(logits), "sigmoid"), probs[:, 1])


def test_single_logit_is_never_softmaxed() -> None:
    logits = np.array([[0.3], [-2.0]])
    assert np.allclose(activate(relevance_logit(logits), "none"), [0.3, -2.0])
    assert np.allclose(activate(relevance_logit(logits), "sigmoid"), 1 / (1 + np.exp([-0.3, 2.0])))


def test_more_than_two_labels_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="one or two logits"):
        relevance_logit(np.zeros((2, 3)))


def test_unknown_activation_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        check_activation("softmax")


def test_max_per_owner() -> None:
    out = max_per_owner(np.array([1.0, 5.0, -2.0, 0.5]), np.array([0, 0, 1, 2]), 3)
    assert out.tolist() == [5.0, -2.0, 0.5]
