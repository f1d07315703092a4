"""Train the lip-sync expert (a tiny SyncNet) on the cached train clips; export it to ONNX.

    nice -n 5 .venv/bin/python -m training.train_sync

(defaults: ``--steps 1500 --seed 0``; one torch thread). No pretrained SyncNet may be
downloaded, so this one learns from our own data: the ``split=train`` clips with speech
(``speech=yes`` and an audio track) in ``cache/clips``. A few train identities (every 6th
speech identity, sorted) are held out as a dev set that picks the checkpoint; val is never
seen here (``python -m benchmarks.eval_sync --gt-only`` reports it).

Model (``SyncNet``, 0.17M parameters): two streams to 64-d L2-normalised embeddings, both
factorised in time. Video: 5 consecutive grayscale mouth crops (24x48; ``codec.metrics.sync``
defines the box and the crop), standardised per window, a small 2D CNN per frame (shared)
then a temporal 1D CNN. Audio: the receiver's 200 ms log-mel window centred on the middle
frame (``clip_window(mel, t*40)``), standardised with train constants that live in the
graph, a 1D CNN over time with the mel bands as channels.

Batches: 8 clips x 8 windows each, a clip's 8 drawn within +-15 frames of each other, so
every window has same-clip shifted negatives (>= 3 frames apart, the offsets the metric
searches) besides the other clips' windows. Loss: symmetric InfoNCE over the batch (cosine
similarity x a learned scale; same-clip pairs less than 3 frames apart are not used as
negatives) + ``--lip-weight`` x a lip-shape regression: 7 mirror-symmetric lip measures
from the cached dlib landmarks (heights of the outer and inner lips, mouth width, corner
height; in mouth-box widths, standardised) predicted from every video frame's features and,
for the middle frame, from the audio embedding (training-only heads, not exported). With the
contrastive loss alone the expert memorised the train clips and stayed at chance on dev.
Augmentation: jitter of the crop inside its margin (one offset per window, +-1 px per frame),
horizontal flip, a down/up-sampling blur on 30% of windows (the receivers' outputs are
softer than the camera's), +-1.5 gain on the log-mel. AdamW (weight decay 0.01), one-cycle
learning rate peaking at 2e-3.

Every ``--eval-every`` steps the dev clips are scored with ``codec.metrics.sync`` (offsets
-7..+7); the checkpoint with the best dev offset accuracy (then LSE-C) is kept, saved to
``cache/sync_expert.pt`` and exported (opset 17, ``dynamo=False``) to
``models/sync_expert-<sha256[:12]>.onnx`` (an older ``sync_expert-*.onnx`` is removed), with
the max |torch - ORT| difference printed.
"""

from __future__ import annotations

import argparse
import copy
import io
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from codec.audio.features import N_MELS, WINDOW_FRAMES
from codec.metrics import sync as S
from codec.receiver.neural.weights import content_hash, hashed_name, models_dir
from training.dataset import CachedClip, dev_split, load_clips
from training.paths import cache_dir

EMB = 64
FRAME_FEAT = 32
N_LIP = 7
LIP_WEIGHT = 1.0


def lip_shape(points: np.ndarray, track: np.ndarray) -> np.ndarray:
    """(T, N_LIP) mirror-symmetric lip measures per frame, in mouth-box widths (NaN where
    no landmarks): outer heights (49-59 & 53-55, 50-58 & 52-56, 51-57), inner heights
    (61-67 & 63-65, 62-66), mouth width, corner height above the box centre."""
    p = np.asarray(points, np.float64)
    w = track[:, 2:3]

    def h(i: int, j: int) -> np.ndarray:
        return np.linalg.norm(p[:, i] - p[:, j], axis=1)

    out = np.stack([(h(49, 59) + h(53, 55)) / 2, (h(50, 58) + h(52, 56)) / 2, h(51, 57),
                    (h(61, 67) + h(63, 65)) / 2, h(62, 66), h(48, 54),
                    track[:, 1] - (p[:, 48, 1] + p[:, 54, 1]) / 2], 1)
    return out / w
DEV_EVERY = 6  # every 6th speech identity (sorted) of train is dev
MIN_SHIFT = 3
SPAN = 15  # a clip's windows in a batch lie within +-SPAN frames of each other


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _tblock(cin: int, cout: int, stride: int = 1, pad: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, 3, stride, pad, bias=False),
                         nn.BatchNorm1d(cout), nn.ReLU(inplace=True))


class SyncNet(nn.Module):
    """video (N, 5, 24, 48) 0..255 gray, audio (M, 1, 20, 40) log-mel -> unit embeddings.

    Both streams are factorised in time: a per-frame encoder shared over the 5 video frames
    (a small 2D CNN) or the 20 mel frames (1D over time with the mel bands as channels),
    then a temporal 1D CNN; with ~7k training windows a joint 3D/stacked-channel net
    memorised the train clips and stayed at chance on the dev clips."""

    def __init__(self, mel_mean: float = -8.0, mel_std: float = 3.0) -> None:
        super().__init__()
        self.frame_net = nn.Sequential(_block(1, 16, 1), _block(16, 32, 2), _block(32, 48, 2),
                                       _block(48, 64, 2), nn.Flatten(), nn.Dropout(0.2),
                                       nn.Linear(64 * 3 * 6, FRAME_FEAT))
        self.video_net = nn.Sequential(_tblock(FRAME_FEAT, 64), _tblock(64, 64, pad=0),
                                       nn.Flatten(), nn.Linear(64 * 3, EMB))
        self.audio_net = nn.Sequential(_tblock(40, 64), _tblock(64, 64, 2), _tblock(64, 64, 2),
                                       _tblock(64, 64, pad=0), nn.Flatten(), nn.Dropout(0.2),
                                       nn.Linear(64 * 3, EMB))
        self.register_buffer("mel_mean", torch.tensor(float(mel_mean)))
        self.register_buffer("mel_std", torch.tensor(float(mel_std)))
        # training-only heads (not in the exported graph): lip shape from each video frame,
        # and from the audio embedding the lip shape of the window's middle frame
        self.lip_from_frame = nn.Linear(FRAME_FEAT, N_LIP)
        self.lip_from_audio = nn.Linear(EMB, N_LIP)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(10.0))))

    def embed_video(self, v: torch.Tensor) -> torch.Tensor:
        mu = v.mean(dim=(1, 2, 3), keepdim=True)
        sd = v.std(dim=(1, 2, 3), keepdim=True)
        n = v.shape[0]
        f = self.frame_net(((v - mu) / (sd + 1.0)).reshape(n * S.WINDOW, 1, S.CROP_H, S.CROP_W))
        f = f.reshape(n, S.WINDOW, FRAME_FEAT)
        self._frame_feat = f
        return F.normalize(self.video_net(f.transpose(1, 2)), dim=1)

    def embed_audio(self, a: torch.Tensor) -> torch.Tensor:
        x = ((a - self.mel_mean) / self.mel_std)[:, 0].transpose(1, 2)  # (M, mels, time)
        return F.normalize(self.audio_net(x), dim=1)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.embed_video(video), self.embed_audio(audio)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Prepared:
    """A speech clip as the expert sees it: margin crops of every frame and its log-mel."""

    def __init__(self, clip: CachedClip) -> None:
        self.name, self.identity = clip.name, clip.meta["identity"]
        t = clip.n_frames
        self.n = t
        track = S.mouth_track(clip.landmarks[:t])
        self.crops = S.mouth_crops(clip.frames[:t], track)
        self.lips = lip_shape(clip.landmarks[:t], track)
        self.mel = clip.mel
        self.audio = np.stack([S.audio_window(self.mel, i) for i in range(t)])


def speech_clips(split: str) -> list[CachedClip]:
    return [c for c in load_clips(split, min_frames=S.WINDOW + 2 * S.VSHIFT)
            if c.meta.get("speech") == "yes" and c.meta.get("has_audio")
            and not np.isnan(c.landmarks[: c.n_frames]).all()]


def degrade(win: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    f = int(rng.integers(2, 5))
    small = (max(1, S.CROP_W // f), max(1, S.CROP_H // f))
    return np.stack([cv2.resize(cv2.resize(w, small, interpolation=cv2.INTER_AREA),
                                (S.CROP_W, S.CROP_H), interpolation=cv2.INTER_LINEAR)
                     for w in win])


def sample_batch(clips: list[Prepared], rng: np.random.Generator, n_clips: int,
                 per_clip: int) -> tuple[torch.Tensor, ...]:
    vids, auds, lips, cid, times = [], [], [], [], []
    for c in rng.choice(len(clips), n_clips, replace=len(clips) < n_clips):
        p = clips[c]
        lo, hi = S.HALF, p.n - S.HALF - 1
        t0 = int(rng.integers(lo, hi + 1))
        span = np.arange(max(lo, t0 - SPAN), min(hi, t0 + SPAN) + 1)
        ts = rng.choice(span, min(per_clip, len(span)), replace=False)
        for t in ts:
            dy, dx = int(rng.integers(1, 2 * S.PAD_H)), int(rng.integers(1, 2 * S.PAD_W))
            win = []
            for k in range(S.WINDOW):  # one crop offset, +-1 px per frame (tracking jitter)
                y, x = dy + int(rng.integers(-1, 2)), dx + int(rng.integers(-1, 2))
                win.append(p.crops[t - S.HALF + k, y : y + S.CROP_H, x : x + S.CROP_W])
            win = np.stack(win).astype(np.float32)
            if rng.random() < 0.5:
                win = win[:, :, ::-1]
            if rng.random() < 0.3:
                win = degrade(np.ascontiguousarray(win), rng)
            vids.append(np.ascontiguousarray(win))
            auds.append(p.audio[t] + rng.uniform(-1.5, 1.5))
            lips.append(p.lips[t - S.HALF : t + S.HALF + 1])
            cid.append(c)
            times.append(t)
    cid_a, t_a = np.array(cid), np.array(times)
    same = cid_a[:, None] == cid_a[None]
    near = same & (np.abs(t_a[:, None] - t_a[None]) < MIN_SHIFT)
    ignore = near & ~np.eye(len(cid), dtype=bool)  # too close to count as negatives
    return (torch.from_numpy(np.stack(vids)), torch.from_numpy(np.stack(auds)).float(),
            torch.from_numpy(ignore), torch.from_numpy(np.stack(lips)).float())


def losses(model: SyncNet, v: torch.Tensor, a: torch.Tensor, ignore: torch.Tensor,
           lips: torch.Tensor, lip_mu: torch.Tensor,
           lip_sd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(symmetric InfoNCE, lip-shape regression MSE of the video frames and the audio)."""
    ve, ae = model(v, a)
    logits = model.log_scale.clamp(0.0, 4.0).exp() * ve @ ae.T
    logits = logits.masked_fill(ignore, -1e4)
    target = torch.arange(len(v))
    nce = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    z = (lips - lip_mu) / lip_sd
    ok = ~torch.isnan(z)
    zv = model.lip_from_frame(model._frame_feat)
    za = model.lip_from_audio(ae)
    mid = z[:, S.HALF]
    lv = ((zv - torch.nan_to_num(z)) ** 2)[ok].mean()
    la = ((za - torch.nan_to_num(mid)) ** 2)[ok[:, S.HALF]].mean()
    return nce, lv + la


@torch.no_grad()
def embed_clip(model: SyncNet, p: Prepared, crops: np.ndarray | None = None,
               audio: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    crops = p.crops if crops is None else crops
    audio = p.audio if audio is None else audio
    centres = S.window_centres(p.n)
    v = torch.from_numpy(np.stack([S.video_window(crops, int(t)) for t in centres]))
    ve, ae = model(v, torch.from_numpy(audio).float())
    return ve.numpy(), ae.numpy(), centres


def dev_scores(model: SyncNet, clips: list[Prepared]) -> tuple[float, float, float]:
    """(offset accuracy, LSE-C, LSE-C with the next dev clip's audio) over the dev clips."""
    model.eval()
    acc, conf, conf_sw = [], [], []
    for i, p in enumerate(clips):
        ve, ae, centres = embed_clip(model, p)
        sc = S.scores_from_distances(S.offset_distances(ve, ae, centres))
        other = clips[(i + 1) % len(clips)].audio
        other = np.resize(other, (p.n,) + other.shape[1:])
        _, ae2, _ = embed_clip(model, p, audio=other)
        sw = S.scores_from_distances(S.offset_distances(ve, ae2, centres))
        acc.append(sc.offset_acc)
        conf.append(sc.lse_c)
        conf_sw.append(sw.lse_c)
    model.train()
    return float(np.mean(acc)), float(np.mean(conf)), float(np.mean(conf_sw))


def export(model: SyncNet, video: torch.Tensor, audio: torch.Tensor,
           directory: Path | None = None) -> tuple[Path, float]:
    """Write ``<directory>/sync_expert-<hash>.onnx`` (replacing an older one); returns the
    path and the max |torch - ORT| difference on the example inputs."""
    import onnxruntime as ort

    model = copy.deepcopy(model).eval()
    buf = io.BytesIO()
    torch.onnx.export(model, (video, audio), buf, input_names=["video", "audio"],
                      output_names=["video_emb", "audio_emb"], opset_version=17,
                      dynamo=False, dynamic_axes={"video": {0: "nv"}, "audio": {0: "na"},
                                                  "video_emb": {0: "nv"},
                                                  "audio_emb": {0: "na"}})
    data = buf.getvalue()
    d = directory or models_dir()
    for old in d.glob(f"{S.ROLE}-*.onnx"):
        old.unlink()
    path = d / hashed_name(S.ROLE, data)
    path.write_bytes(data)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    ov, oa = sess.run(None, {"video": video.numpy(), "audio": audio.numpy()})
    with torch.no_grad():
        tv, ta = model(video, audio)
    diff = float(max(np.abs(ov - tv.numpy()).max(), np.abs(oa - ta.numpy()).max()))
    return path, diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--clips-per-batch", type=int, default=8)
    ap.add_argument("--per-clip", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lip-weight", type=float, default=LIP_WEIGHT)
    ap.add_argument("--no-export", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    clips = speech_clips("train")
    fit_clips, dev_clips = dev_split(clips, step=DEV_EVERY, start=DEV_EVERY - 1)
    dev_ids = {c.meta["identity"] for c in dev_clips}
    train = [Prepared(c) for c in fit_clips]
    dev = [Prepared(c) for c in dev_clips]
    mel = np.concatenate([p.audio.reshape(-1) for p in train])
    print(f"{len(train)} train clips ({sum(p.n for p in train)} frames), {len(dev)} dev clips "
          f"({sorted(dev_ids)}); prepared in {time.time() - t0:.0f} s", flush=True)
    model = SyncNet(float(mel.mean()), float(mel.std()))
    n_video = n_params(model.frame_net) + n_params(model.video_net)
    print(f"SyncNet: {n_params(model)} parameters (video {n_video}, audio "
          f"{n_params(model.audio_net)}); mel mean {mel.mean():.3f} std {mel.std():.3f}",
          flush=True)
    assert WINDOW_FRAMES == train[0].audio.shape[2] and N_MELS == train[0].audio.shape[3]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps,
                                                pct_start=0.05)
    best, best_state, hist = (-1.0, -1.0), None, []
    lip_all = np.concatenate([p.lips for p in train])
    lip_mu = torch.from_numpy(np.nanmean(lip_all, 0)).float()
    lip_sd = torch.from_numpy(np.nanstd(lip_all, 0) + 1e-6).float()
    for step in range(1, args.steps + 1):
        v, a, ignore, lips = sample_batch(train, rng, args.clips_per_batch, args.per_clip)
        nce, lip = losses(model, v, a, ignore, lips, lip_mu, lip_sd)
        loss = nce + args.lip_weight * lip
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        hist.append((nce.item(), lip.item()))
        if step % args.eval_every == 0 or step == args.steps:
            acc, conf, conf_sw = dev_scores(model, dev)
            tr_acc = dev_scores(model, train[::10])[0]
            mark = ""
            if (acc, conf) > best:
                best, best_state, mark = (acc, conf), copy.deepcopy(model.state_dict()), " *"
                best_step = step
            h = np.mean(hist[-args.eval_every:], 0)
            print(f"step {step:5d} nce {h[0]:.3f} lip {h[1]:.3f} dev offset "
                  f"acc {acc:.3f} LSE-C {conf:.3f} (swapped audio {conf_sw:.3f}) "
                  f"train offset acc {tr_acc:.3f} "
                  f"[{time.time() - t0:.0f} s]{mark}", flush=True)
    model.load_state_dict(best_state)
    torch.save({"state": best_state, "step": best_step, "args": vars(args)},
               cache_dir() / "sync_expert.pt")
    print(f"kept step {best_step} (dev offset acc {best[0]:.3f}, LSE-C {best[1]:.3f}); "
          f"{time.time() - t0:.0f} s", flush=True)
    if not args.no_export:
        p = dev[0]
        v = torch.from_numpy(np.stack([S.video_window(p.crops, t) for t in (10, 20, 30)]))
        path, diff = export(model, v, torch.from_numpy(p.audio[:7]).float())
        data = path.read_bytes()
        print(f"exported {path.name} ({len(data)} bytes, sha256[:12] {content_hash(data)}); "
              f"max |torch - ORT| {diff:.2e}", flush=True)


if __name__ == "__main__":
    main()
