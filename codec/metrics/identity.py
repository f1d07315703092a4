"""Identity preservation: distance between dlib 128-d face descriptors.

The descriptor is dlib's ResNet face-recognition model (``face-recognition-models``,
99.38% on LFW); two faces of the same person are usually closer than 0.6 (Euclidean), the
threshold dlib and ``face_recognition`` use. The descriptor of a decoded frame is computed
with landmarks placed inside the ground-truth face box (see ``landmarks.py``).
"""

from __future__ import annotations

import numpy as np

from codec._dlib import DLIB_LOCK, FaceBox, as_dlib_image, face_descriptor_model, shape_predictor_68

SAME_PERSON_THRESHOLD = 0.6


def face_descriptor(frame: np.ndarray, box: FaceBox) -> np.ndarray:
    """The 128-d descriptor (float64) of the face inside ``box``."""
    img = as_dlib_image(frame)
    predictor, model = shape_predictor_68(), face_descriptor_model()
    with DLIB_LOCK:
        shape = predictor(img, box.to_dlib())
        descriptor = model.compute_face_descriptor(img, shape)
    return np.asarray(descriptor, np.float64)


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two face descriptors."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def same_person_fraction(distances: list[float] | np.ndarray) -> float:
    """Fraction of distances below :data:`SAME_PERSON_THRESHOLD`."""
    d = np.asarray(distances, np.float64)
    return float(np.mean(d < SAME_PERSON_THRESHOLD)) if d.size else float("nan")
