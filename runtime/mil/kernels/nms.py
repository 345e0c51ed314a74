"""non_maximum_suppression (iOS15 and iOS17 layouts).

Semantics are those of the reference coremltools' own tests hold Core ML to
(tests/iOS14/test_tensor_operation.py, _ref_non_maximum_suppression): a box scores the
maximum of its class scores and belongs to the argmax class; boxes scoring no more than
``score_threshold`` (iOS15) are dropped; greedy selection in descending score suppresses a box
whose IoU with a selected one exceeds ``iou_threshold`` (per class with per_class_suppression,
then merged in score order); when nothing survives the best-scoring box is kept anyway; at most
``max_boxes`` are kept and the rest is padded (boxes and scores with 0, indices with -1).
Boxes are (x_center, y_center, width, height).
"""
import numpy as np

from ..registry import kernel
from ._util import F32, flag


def _iou(box, others):
    def corners(b):
        return b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2, b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2

    x1, y1, x2, y2 = corners(box)
    ox1, oy1, ox2, oy2 = corners(others)
    inter = np.maximum(0, np.minimum(x2, ox2) - np.maximum(x1, ox1)) * np.maximum(0, np.minimum(y2, oy2) - np.maximum(y1, oy1))
    union = box[2] * box[3] + others[:, 2] * others[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _greedy(boxes, order, iou_threshold):
    kept = []
    for i in order:
        if not kept or np.all(_iou(boxes[i], boxes[kept]) <= iou_threshold):
            kept.append(i)
    return kept


def _select(boxes, scores, iou_threshold, score_threshold, per_class):
    best, cls = scores.max(axis=-1), scores.argmax(axis=-1)
    order = [i for i in np.argsort(-best, kind="stable") if best[i] > score_threshold]
    if per_class:
        kept = set()
        for c in np.unique(cls[order]):
            kept.update(_greedy(boxes, [i for i in order if cls[i] == c], iou_threshold))
        ids = [i for i in order if i in kept]
    else:
        ids = _greedy(boxes, order, iou_threshold)
    return ids or [int(np.argmax(best))]


def _nms(boxes, scores, a, score_threshold):
    """boxes [n, B, 4], scores [n, B, K] -> (boxes, scores, indices, counts) padded to max_boxes."""
    n, _, k = scores.shape
    m = int(a["max_boxes"])
    out_b, out_s = np.zeros((n, m, 4), F32), np.zeros((n, m, k), F32)
    out_i, counts = np.full((n, m), -1, np.int32), np.zeros(n, np.int32)
    for b in range(n):
        ids = _select(boxes[b], scores[b], float(a["iou_threshold"]), score_threshold,
                      flag(a, "per_class_suppression"))[:m]
        out_b[b, :len(ids)], out_s[b, :len(ids)], out_i[b, :len(ids)] = boxes[b][ids], scores[b][ids], ids
        counts[b] = len(ids)
    return out_b, out_s, out_i, counts


@kernel("non_maximum_suppression")
def non_maximum_suppression(a, op):
    boxes, scores = np.asarray(a["boxes"], np.float64), np.asarray(a["scores"], np.float64)
    if "score_threshold" in a:  # iOS15: [n, B, 4] / [n, B, K], four outputs
        return _nms(boxes, scores, a, float(a["score_threshold"]))
    # iOS17: [n, 4, B] / [n, K, B], no score threshold, no counts
    out_b, out_s, out_i, _ = _nms(boxes.transpose(0, 2, 1), scores.transpose(0, 2, 1), a, -np.inf)
    return out_b.transpose(0, 2, 1), out_s.transpose(0, 2, 1), out_i
