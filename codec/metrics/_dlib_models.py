"""Moved to ``codec._dlib`` (one detector and one lock for every layer); this name stays
only for ``codec/sender/landmarks.py``, which imports it, until that module imports
``codec._dlib`` itself."""

from codec._dlib import (
           DLIB_LOCK,
           as_dlib_image,
           face_descriptor_model,
           face_detector,
           shape_predictor_68,
)

__all__ = ["DLIB_LOCK", "as_dlib_image", "face_descriptor_model", "face_detector",
           "shape_predictor_68"]
