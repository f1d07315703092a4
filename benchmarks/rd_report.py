"""Aggregation and reporting of the rate-quality benchmark: table, CSV, plots, BD-rate.

Rows are per (clip, codec, setting); a codec point's figures are the mean over clips of the
per-clip means, except FID, which is one distance between the Inception features pooled
over all clips (output frames vs ground-truth frames).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy.interpolate import PchipInterpolator

from codec.metrics.fid import frechet_distance

METRICS = ("psnr", "ssim", "erqa", "lmd", "lmd_mouth", "psnr_mouth", "mouth_corr",
           "id_distance", "id_match", "lse_c")
RATES = ("kbps_video", "kbps_total", "bpp_video", "bpp_total", "kbps_lowres", "kbps_code",
         "kbps_stream")
STANDARD = ("H.264", "H.265", "VP9", "AV1")

# Hegde et al. (ACM MM 2022) Table 3, measured on VoxCeleb2 (other data, other crop), for
# context. Their bpp for their own system is the raw 8x8x3x8-bit frame per 256x256 output
# frame (1536 / 65536 = 0.023; 5 fps: 0.0046), without identity frame, audio or coding.
PAPER_ROWS = (
    ("paper: 8x8 at 25 fps (raw bits)", 0.023, 24.95, 0.71, 14.10),
    ("paper: 8x8 at 5 fps + interpolation", 0.0046, 23.72, 0.68, 14.51),
    ("paper: H.264 CRF 23", 0.109, 32.96, 0.79, 9.75),
    ("paper: H.264 CRF 36", 0.027, 19.24, 0.67, 30.12),
    ("paper: H.266", 0.0076, 23.27, 0.70, 58.32),
)


def aggregate(rows: list[dict[str, Any]], gt_features: np.ndarray | None) -> list[dict[str, Any]]:
    """One row per (codec, setting): means over clips, FID over pooled frames."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["codec"], r["setting"])].append(r)
    out = []
    for (codec, setting), rs in groups.items():
        agg: dict[str, Any] = {"codec": codec, "setting": setting, "clips": len(rs)}
        for key in RATES + METRICS:
            vals = [float(r[key]) for r in rs if r.get(key) is not None]
            vals = [v for v in vals if not math.isnan(v)]
            agg[key] = float(np.mean(vals)) if vals else float("nan")
        feats = [r["fid_features"] for r in rs if r.get("fid_features") is not None]
        agg["fid"] = float("nan")
        if feats and gt_features is not None and len(gt_features) >= 2:
            pooled = np.concatenate(feats)
            if len(pooled) >= 2:
                agg["fid"] = frechet_distance(pooled, gt_features)
        agg["fid_frames"] = int(sum(len(f) for f in feats))
        out.append(agg)
    order = {c: i for i, c in enumerate(STANDARD)}
    out.sort(key=lambda a: (a["codec"] in order, order.get(a["codec"], -1), -a["kbps_video"]))
    return out


def bd_rate(ref: list[tuple[float, float]], test: list[tuple[float, float]]) -> float | None:
    """Bjontegaard delta rate (%) of ``test`` against ``ref``; points are (kbit/s, quality).

    Piecewise-cubic (PCHIP) fits of log-rate over quality, integrated over the quality range
    both curves cover; None when they do not overlap or have fewer than 2 usable points.
    """

    def curve(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray] | None:
        pts = sorted((q, math.log10(r)) for r, q in points if r > 0 and math.isfinite(q))
        qs, lr = [], []
        for q, r in pts:
            if not qs or q > qs[-1] + 1e-9:
                qs.append(q)
                lr.append(r)
        return (np.array(qs), np.array(lr)) if len(qs) >= 2 else None

    a, b = curve(ref), curve(test)
    if a is None or b is None:
        return None
    lo, hi = max(a[0][0], b[0][0]), min(a[0][-1], b[0][-1])
    if hi - lo < 1e-6:
        return None
    fa, fb = PchipInterpolator(*a), PchipInterpolator(*b)
    ia = fa.integrate(lo, hi) / (hi - lo)
    ib = fb.integrate(lo, hi) / (hi - lo)
    return float((10 ** (ib - ia) - 1) * 100)


def bd_rates(agg: list[dict[str, Any]], metric: str = "psnr") -> dict[str, float | None]:
    """BD-rate (video kbit/s) of each standard codec against H.264 on ``metric``."""
    curves = {
        c: [(a["kbps_video"], a[metric]) for a in agg if a["codec"] == c] for c in STANDARD
    }
    return {c: bd_rate(curves["H.264"], curves[c]) for c in STANDARD[1:] if curves[c]}


def equivalent_rate(curve: list[tuple[float, float]], quality: float,
                    higher_is_better: bool = True) -> float | None:
    """The rate (kbit/s) at which a codec's curve reaches ``quality`` (log-rate interpolated
    between ladder points); None when ``quality`` lies outside the curve's range."""
    sign = 1.0 if higher_is_better else -1.0
    pts = sorted((sign * q, math.log10(r)) for r, q in curve if r > 0 and math.isfinite(q))
    if len(pts) < 2 or not math.isfinite(quality):
        return None
    qs, lr = zip(*pts)
    target = sign * quality
    if target < qs[0] or target > qs[-1]:
        return None
    return float(10 ** np.interp(target, qs, lr))


def h264_equivalents(agg: list[dict[str, Any]]) -> list[str]:
    """One line per talkcodec point: the H.264 rate that gives the same PSNR, SSIM, FID."""
    h264 = [a for a in agg if a["codec"] == "H.264"]
    if len(h264) < 2:
        return []
    lines = []
    for a in agg:
        if a["codec"] in STANDARD:
            continue
        parts = []
        for key, label, better in (("psnr", "PSNR", True), ("ssim", "SSIM", True),
                                   ("fid", "FID", False)):
            rate = equivalent_rate([(h["kbps_video"], h[key]) for h in h264], a[key], better)
            floor = min((h["kbps_video"] for h in h264), default=float("nan"))
            worst = min((h[key] * (1 if better else -1) for h in h264), default=float("nan"))
            if rate is not None:
                parts.append(f"{label} {rate:.1f} kbit/s")
            elif math.isfinite(a[key]) and a[key] * (1 if better else -1) < worst:
                parts.append(f"{label} below the H.264 floor ({floor:.1f} kbit/s)")
            else:
                parts.append(f"{label} out of the H.264 range")
        lines.append(f"- talkcodec/{a['setting']} ({_f(a['kbps_video'], 2)} kbit/s video): "
                     + ", ".join(parts))
    return lines


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = [k for k in rows[0] if k != "fid_features"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _f(v: float, digits: int) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def markdown_table(agg: list[dict[str, Any]], header: str) -> str:
    cols = (
        "| codec | setting | 8x8 kbit/s | code kbit/s | 8x8+code kbit/s | video kbit/s "
        "| total kbit/s | bpp video | bpp total "
        "| PSNR dB | SSIM | ERQA | LMD px | mouth LMD px | mouth PSNR dB | mouth r | ID dist "
        "| ID<0.6 | LSE-C | FID |"
    )
    lines = [header, "", cols, "|" + "---|" * 20]
    for a in agg:
        lines.append(
            f"| {a['codec']} | {a['setting']} | {_f(a['kbps_lowres'], 2)} | "
            f"{_f(a.get('kbps_code', float('nan')), 2)} | "
            f"{_f(a.get('kbps_stream', float('nan')), 2)} | "
            f"{_f(a['kbps_video'], 2)} | "
            f"{_f(a['kbps_total'], 2)} | {_f(a['bpp_video'], 5)} | {_f(a['bpp_total'], 5)} | "
            f"{_f(a['psnr'], 2)} | {_f(a['ssim'], 3)} | {_f(a['erqa'], 3)} | {_f(a['lmd'], 2)} | "
            f"{_f(a['lmd_mouth'], 2)} | {_f(a.get('psnr_mouth', float('nan')), 2)} | "
            f"{_f(a['mouth_corr'], 2)} | {_f(a['id_distance'], 3)} | "
            f"{_f(a['id_match'], 2)} | {_f(a.get('lse_c', float('nan')), 2)} | "
            f"{_f(a['fid'], 1)} |"
        )
    lines += ["", "BD-rate against H.264 (video kbit/s at equal quality, overlapping range):", ""]
    for metric in ("psnr", "ssim"):
        parts = [f"{c} {_f(v, 1)}%" for c, v in bd_rates(agg, metric).items()]
        lines.append(f"- {metric.upper()}: " + (", ".join(parts) if parts else "no overlap"))
    equivalents = h264_equivalents(agg)
    if equivalents:
        lines += ["", "H.264 video kbit/s giving the same quality as each talkcodec point:", ""]
        lines += equivalents
    lines += [
        "",
        "For context only -- the third paper's figures, measured on VoxCeleb2 (other data):",
        "",
        "| system | bpp | PSNR dB | SSIM | FID |",
        "|---|---|---|---|---|",
    ]
    for name, bpp, p, s, fid in PAPER_ROWS:
        lines.append(f"| {name} | {bpp} | {_f(p, 2)} | {_f(s, 2)} | {_f(fid, 2)} |")
    return "\n".join(lines) + "\n"


def plot_rd(agg: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("lmd_mouth", "mouth LMD (px)"),
              ("fid", "FID"))
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (key, label) in zip(axes.ravel(), panels):
        finite = [a for a in agg if math.isfinite(a[key]) and a["kbps_video"] > 0]
        ax.set_ylabel(label)
        if not finite:
            ax.text(0.5, 0.5, f"{label}: not computed", ha="center", transform=ax.transAxes)
            continue
        for codec in STANDARD:
            pts = sorted((a["kbps_video"], a[key]) for a in finite if a["codec"] == codec)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=codec)
        ours = [a for a in finite if a["codec"] not in STANDARD]
        for i, a in enumerate(ours):
            color = f"C{4 + i % 6}"
            ax.scatter(a["kbps_video"], a[key], marker="*", s=140, zorder=3, color=color,
                       label=f"talkcodec/{a['setting']}")
            if math.isfinite(a.get("kbps_lowres", float("nan"))):
                ax.scatter(a["kbps_lowres"], a[key], marker="*", s=140, zorder=3,
                           facecolors="none", edgecolors=color)
        ax.set_xscale("log")
        ax.set_xlabel("video kbit/s (talkcodec: 8x8 stream + identity frame; hollow: 8x8 only)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
