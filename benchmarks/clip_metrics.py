"""Every quality measure of one decoded clip against its ground-truth canvas.

Frame 0 is left out for every codec (it is talkcodec's identity frame and every standard
codec's keyframe). The expensive measures look at a subsample of frames, given by
:class:`Sampling`; the ground truth's face boxes, landmarks, descriptors and Inception
features are computed once per clip in :class:`GroundTruth` and reused for every codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from codec.metrics.erqa import erqa
from codec.metrics.fid import inception_features
from codec.metrics.fidelity import mean_psnr, psnr, ssim
from codec.metrics.identity import descriptor_distance, face_descriptor, same_person_fraction
from codec.metrics.landmarks import (
    MOUTH,
    FaceBox,
    detect_face,
    landmark_distance,
    landmarks,
    motion_correlation,
    mouth_opening,
)


@dataclass(frozen=True)
class Sampling:
    """Every how many frames each measure looks (1 = every frame)."""

    psnr: int = 1
    ssim: int = 4
    landmarks: int = 2  # also the mouth-motion series: 12.5 Hz at every 2nd frame
    erqa: int = 10
    identity: int = 25
    fid: int = 31

    def frames(self, every: int, n: int) -> np.ndarray:
        return np.arange(1, n, every)


@dataclass
class GroundTruth:
    """Per-clip ground-truth quantities, computed once."""

    frames: np.ndarray
    sampling: Sampling
    boxes: dict[int, FaceBox] = field(default_factory=dict)
    points: dict[int, np.ndarray] = field(default_factory=dict)
    descriptors: dict[int, np.ndarray] = field(default_factory=dict)
    fid_features: np.ndarray | None = None
    audio: np.ndarray | None = None  # the clip's own 16 kHz speech, for lip sync

    @classmethod
    def build(cls, frames: np.ndarray, sampling: Sampling, with_fid: bool = True,
              audio: np.ndarray | None = None) -> GroundTruth:
        gt = cls(frames=frames, sampling=sampling, audio=audio)
        n = len(frames)
        wanted = set(sampling.frames(sampling.landmarks, n)) | set(
            sampling.frames(sampling.identity, n)
        )
        for k in sorted(wanted):
            box = detect_face(frames[k])
            if box is not None:
                gt.boxes[int(k)] = box
        for k in sampling.frames(sampling.landmarks, n):
            if int(k) in gt.boxes:
                gt.points[int(k)] = landmarks(frames[k], gt.boxes[int(k)])
        for k in sampling.frames(sampling.identity, n):
            if int(k) in gt.boxes:
                gt.descriptors[int(k)] = face_descriptor(frames[k], gt.boxes[int(k)])
        if with_fid:
            gt.fid_features = inception_features(frames[sampling.frames(sampling.fid, n)])
        return gt

    @property
    def face_fraction(self) -> float:
        n = len(self.sampling.frames(self.sampling.landmarks, len(self.frames)))
        return len(self.points) / n if n else 0.0


@dataclass
class ClipScores:
    """Per-clip averages (NaN where the clip gives no sample, e.g. no face found)."""

    psnr: float
    ssim: float
    erqa: float
    lmd: float  # mean landmark distance, 68 points, pixels at 256x256
    lmd_mouth: float  # the same on the 20 mouth points
    psnr_mouth: float  # PSNR of a box around the true mouth (independent of any landmarks
    # in the output, so a code driven by the same landmark model cannot flatter it)
    mouth_corr: float  # Pearson r of the mouth opening over time, output vs ground truth
    id_distance: float  # mean dlib descriptor distance to the ground truth frame
    id_match: float  # fraction of sampled frames with distance < 0.6
    lse_c: float = float("nan")  # lip-sync confidence from our sync expert (higher: in sync)
    lse_d: float = float("nan")  # its distance at the best offset (lower: in sync)
    fid_features: np.ndarray | None = None  # pooled over clips into one FID per codec point


def mouth_box(points: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the true mouth's landmark box, grown by a quarter of the mouth's
    width on every side (lips, teeth and the skin around them)."""
    m = np.asarray(points, np.float64)[MOUTH]
    lo, hi = m.min(0), m.max(0)
    pad = 0.25 * max(hi[0] - lo[0], 8.0)
    x0, y0 = (max(0, int(np.floor(v - pad))) for v in lo)
    x1, y1 = (min(size, int(np.ceil(v + pad)) + 1) for v in hi)
    return y0, max(y1, y0 + 1), x0, max(x1, x0 + 1)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def score_clip(output: np.ndarray, gt: GroundTruth, with_fid: bool = True) -> ClipScores:
    """All measures of ``output`` (T, 256, 256, 3) uint8 against the ground truth."""
    truth, s = gt.frames, gt.sampling
    if output.shape != truth.shape:
        raise ValueError(f"output {output.shape} does not match ground truth {truth.shape}")
    n = len(truth)
    p = [psnr(output[k], truth[k]) for k in s.frames(s.psnr, n)]
    q = [ssim(output[k], truth[k]) for k in s.frames(s.ssim, n)]
    e = [erqa(output[k], truth[k]) for k in s.frames(s.erqa, n)]
    lmd, lmd_mouth, open_out, open_gt, p_mouth = [], [], [], [], []
    for k, gt_pts in gt.points.items():
        y0, y1, x0, x1 = mouth_box(gt_pts, truth.shape[1])
        p_mouth.append(psnr(output[k][y0:y1, x0:x1], truth[k][y0:y1, x0:x1]))
        pts = landmarks(output[k], gt.boxes[k])
        lmd.append(landmark_distance(pts, gt_pts))
        lmd_mouth.append(landmark_distance(pts, gt_pts, MOUTH))
        open_out.append(mouth_opening(pts))
        open_gt.append(mouth_opening(gt_pts))
    dist = [
        descriptor_distance(face_descriptor(output[k], gt.boxes[k]), d)
        for k, d in gt.descriptors.items()
    ]
    feats = inception_features(output[s.frames(s.fid, n)]) if with_fid else None
    lse_c = lse_d = float("nan")
    if gt.audio is not None and len(gt.audio) and gt.points:
        from codec.metrics.sync import SyncError, sync_scores

        track = [gt.points.get(k) for k in range(n)]
        try:
            sync = sync_scores(output, track, gt.audio[: int(round(n * 16000 / 25))])
            lse_c, lse_d = sync.lse_c, sync.lse_d
        except SyncError:
            pass
    return ClipScores(
        psnr=mean_psnr(p),
        ssim=_mean(q),
        erqa=_mean(e),
        lmd=_mean(lmd),
        lmd_mouth=_mean(lmd_mouth),
        psnr_mouth=mean_psnr(p_mouth) if p_mouth else float("nan"),
        mouth_corr=motion_correlation(open_out, open_gt) if open_gt else float("nan"),
        id_distance=_mean(dist),
        id_match=same_person_fraction(dist) if dist else float("nan"),
        fid_features=feats,
        lse_c=lse_c,
        lse_d=lse_d,
    )
