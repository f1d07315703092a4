"""The trained neural receiver (ONNX Runtime at run time; torch only for training/export).

Importing this package loads no model: ``NeuralReceiver`` loads and verifies its weights
from ``models/`` when constructed; ``weights_available()`` says whether they are there.
"""

from codec.receiver.neural.receiver import NeuralReceiver
from codec.receiver.neural.weights import (
    ModelError,
    ModelIntegrityError,
    weights_available,
    weights_problem,
)

__all__ = ["ModelError", "ModelIntegrityError", "NeuralReceiver", "weights_available",
           "weights_problem"]
