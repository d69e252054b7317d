import numpy as np
import pytest

from edgevision.errors import ConfigError
from edgevision.runtime.postprocess import UNKNOWN, Classifier, looks_like_probabilities, softmax

LABELS = ("stop", "yield", "background")


def test_softmax_is_stable_and_sums_to_one():
    p = softmax(np.array([1000.0, 1001.0, 999.0]))
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
    assert p.argmax() == 1
    np.testing.assert_allclose(softmax(np.zeros(4)), 0.25)


def test_topk_order_and_scores():
    clf = Classifier(LABELS, topk=2)
    pred = clf(np.array([[0.0, 3.0, 1.0]], np.float32))
    assert pred.label == "yield" and pred.known
    assert [name for name, _ in pred.topk] == ["yield", "background"]
    assert pred.score == pytest.approx(softmax(np.array([0.0, 3.0, 1.0]))[1])


def test_topk_is_capped_at_the_class_count():
    assert len(Classifier(LABELS, topk=10)(np.zeros(3)).topk) == 3


def test_threshold_gives_unknown_but_keeps_topk():
    pred = Classifier(LABELS, threshold=0.9)(np.array([1.0, 1.2, 0.9]))
    assert pred.label == UNKNOWN and not pred.known
    assert pred.topk[0][0] == "yield"


def test_smoothing_stops_a_one_frame_flicker():
    stop, yield_ = np.array([4.0, 0.0, 0.0]), np.array([0.0, 4.0, 0.0])
    raw = Classifier(LABELS, smooth=1)
    smooth = Classifier(LABELS, smooth=5)
    sequence = [stop] * 4 + [yield_] + [stop] * 2
    assert [raw(x).label for x in sequence][4] == "yield"
    assert {smooth(x).label for x in sequence} == {"stop"}


def test_smoothing_window_mean_and_reset():
    clf = Classifier(LABELS, smooth=2, outputs="probabilities")
    clf(np.array([1.0, 0.0, 0.0]))
    pred = clf(np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(pred.probabilities, [0.5, 0.5, 0.0])
    clf.reset()
    assert clf(np.array([0.0, 1.0, 0.0])).score == pytest.approx(1.0)


def test_probabilities_are_not_softmaxed_twice():
    probs = np.array([0.7, 0.2, 0.1])
    assert looks_like_probabilities(probs) and not looks_like_probabilities(np.array([2.0, -1, 0]))
    assert Classifier(LABELS)(probs).score == pytest.approx(0.7)
    assert Classifier(LABELS, outputs="logits")(probs).score < 0.7


@pytest.mark.parametrize(
    "kwargs", [{"topk": 0}, {"threshold": 1.5}, {"smooth": 0}, {"outputs": "scores"}]
)
def test_bad_options_are_config_errors(kwargs):
    with pytest.raises(ConfigError, match="out of range"):
        Classifier(LABELS, **kwargs)


def test_output_size_must_match_labels():
    with pytest.raises(ConfigError, match="4 values but the bundle has 3 labels"):
        Classifier(LABELS)(np.zeros(4))
