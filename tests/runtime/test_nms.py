"""non_maximum_suppression and classify (kernels/nms.py, kernels/classify.py)."""
import numpy as np
import pytest
import torch
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from runtime.mil import MilModel

from .helpers import run_program

RNG = np.random.default_rng(0)


def _greedy_reference(boxes, scores, iou_threshold):
    """torchvision-style greedy NMS on (x1, y1, x2, y2) boxes, in plain Python."""
    order, kept = list(np.argsort(-scores, kind="stable")), []
    for i in order:
        ok = True
        for j in kept:
            ix = max(0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            iy = max(0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            inter = ix * iy
            union = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1]) + \
                (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]) - inter
            ok &= inter / union <= iou_threshold
        if ok:
            kept.append(i)
    return kept


def test_nms_coremltools_example():
    boxes = np.array([[[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]]], np.float32)
    scores = np.array([[[-3.5], [9.4], [2.3], [0.7]]], np.float32)
    got = run_program([("b", boxes.shape, types.fp32), ("s", scores.shape, types.fp32)],
                      lambda b, s: mb.non_maximum_suppression(boxes=b, scores=s, iou_threshold=0.2, score_threshold=0.4,
                                                              max_boxes=2, per_class_suppression=True),
                      {"b": boxes, "s": scores}, ct.target.iOS15)
    np.testing.assert_array_equal(got[0], [[[1, 1, 1, 1], [2, 2, 2, 2]]])
    np.testing.assert_array_equal(got[1], np.array([[[9.4], [2.3]]], np.float32))
    np.testing.assert_array_equal(got[2], [[1, 2]])
    np.testing.assert_array_equal(got[3], [2])


@pytest.mark.parametrize("opset", [ct.target.iOS15, ct.target.iOS17])
def test_nms_vs_greedy_reference_and_padding(opset):
    n_box, max_boxes = 30, 40
    centers = RNG.uniform(0, 10, (1, n_box, 2))
    sizes = RNG.uniform(1, 4, (1, n_box, 2))
    boxes = np.concatenate([centers, sizes], -1).astype(np.float32)
    scores = RNG.uniform(0, 1, (1, n_box, 1)).astype(np.float32)
    corners = np.concatenate([centers - sizes / 2, centers + sizes / 2], -1)[0]
    want = _greedy_reference(corners, scores[0, :, 0], 0.3)
    if opset == ct.target.iOS15:
        body = lambda b, s: mb.non_maximum_suppression(boxes=b, scores=s, iou_threshold=0.3, score_threshold=-1.0,  # noqa: E731
                                                       max_boxes=max_boxes)
        feed = {"b": boxes, "s": scores}
    else:
        body = lambda b, s: mb.non_maximum_suppression(boxes=b, scores=s, iou_threshold=0.3, max_boxes=max_boxes)  # noqa: E731
        feed = {"b": boxes.transpose(0, 2, 1).copy(), "s": scores.transpose(0, 2, 1).copy()}
    got = run_program([(k, v.shape, types.fp32) for k, v in feed.items()], body, feed, opset)
    idx = got[2][0]
    np.testing.assert_array_equal(idx[:len(want)], want)
    assert (idx[len(want):] == -1).all()  # padded up to max_boxes
    sel_boxes = got[0][0] if opset == ct.target.iOS15 else got[0][0].T
    np.testing.assert_array_equal(sel_boxes[:len(want)], boxes[0, want])
    assert (sel_boxes[len(want):] == 0).all()


def test_nms_keeps_the_best_box_when_all_fall_under_the_score_threshold():
    boxes = np.array([[[0, 0, 1, 1], [5, 5, 1, 1]]], np.float32)
    scores = np.array([[[0.1], [0.2]]], np.float32)
    got = run_program([("b", boxes.shape, types.fp32), ("s", scores.shape, types.fp32)],
                      lambda b, s: mb.non_maximum_suppression(boxes=b, scores=s, iou_threshold=0.5, score_threshold=0.9,
                                                              max_boxes=2), {"b": boxes, "s": scores}, ct.target.iOS15)
    np.testing.assert_array_equal(got[2], [[1, -1]])
    np.testing.assert_array_equal(got[3], [1])


@pytest.mark.parametrize("classes", [["cat", "dog", "emu"], [7, 3, 11]])
def test_classify_label_and_probabilities(classes, tmp_path):
    """A classifier package (ct.convert with a ClassifierConfig adds the classify op)."""
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3))], opset_version=ct.target.iOS17)
    def prog(x):
        return mb.softmax(x=x, axis=-1)

    model = ct.convert(prog, classifier_config=ct.ClassifierConfig(classes), skip_model_load=True,
                       minimum_deployment_target=ct.target.iOS17, compute_precision=ct.precision.FLOAT32)
    model.save(str(tmp_path / "cls.mlpackage"))
    m = MilModel.from_path(tmp_path / "cls.mlpackage")
    x = np.array([[0.1, 2.0, -1.0]], np.float32)
    out = m.predict({m.inputs[0].name: x})
    p = torch.softmax(torch.from_numpy(x), -1).numpy()[0]
    label, probs = out["classLabel"], next(v for k, v in out.items() if k != "classLabel")
    assert label == classes[1]
    assert set(probs) == set(classes)
    np.testing.assert_allclose([probs[c] for c in classes], p, rtol=1e-6)
