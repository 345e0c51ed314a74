"""classify: a classifier's outputs (the predicted label, and class -> probability)."""
import numpy as np

from ..registry import kernel


@kernel("classify")
def classify(a, op):
    probs = np.asarray(a["probabilities"], np.float64).reshape(-1)
    classes = list(a["classes"])
    if len(classes) != probs.size:
        raise ValueError(f"classify {op.name!r}: {len(classes)} classes for {probs.size} probabilities")
    label = classes[int(np.argmax(probs))]  # the first of equal maxima, as argmax
    return label, {c: float(p) for c, p in zip(classes, probs)}
