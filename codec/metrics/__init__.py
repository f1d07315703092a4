"""Quality measures shared by tests and benchmarks.

Cheap pixel measures are imported here; the model-backed ones (landmarks, identity, ERQA,
FID) live in their own modules and load their models lazily on first use.
"""

from codec.metrics.fidelity import PSNR_CAP_DB, luma, mean_psnr, psnr, ssim
from codec.metrics.rate import bits_per_pixel, kbit_per_s

__all__ = ["PSNR_CAP_DB", "bits_per_pixel", "kbit_per_s", "luma", "mean_psnr", "psnr", "ssim"]
