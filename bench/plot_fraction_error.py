"""Fraction error vs training step of a SliceGAN run (like Fig. 13 of the original report).

The SliceGAN trainer logs ``fraction_error`` in ``losses.jsonl``: the largest |mean soft phase
fraction of a generated volume - its target| (averaged over the batch for conditional runs, whose
targets change every step). This draws it, in percentage points, with a moving average, as a PNG
made with PIL (no plotting dependency).

    python bench/plot_fraction_error.py RUN_DIR [--out fraction_error.png] [--smooth 25]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from matgen_core import runs  # noqa: E402
from matgen_core.errors import MatgenInputError  # noqa: E402


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = max(hi - lo, 1e-9)
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def moving_average(y: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or len(y) < 2:
        return y
    k = min(k, len(y))
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty_like(y)
    for i in range(len(y)):  # trailing window, shorter at the start
        a = max(0, i - k + 1)
        out[i] = (c[i + 1] - c[a]) / (i + 1 - a)
    return out


def plot(steps, errors_pp, title: str, smooth: int = 25, size=(900, 520)) -> Image.Image:
    """A line chart: light raw points, dark moving average, axes in steps and pp."""
    w, h = size
    left, right, top, bottom = 80, 24, 48, 64
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    x = np.asarray(steps, float)
    y = np.asarray(errors_pp, float)
    x0, x1 = float(x.min()), float(max(x.max(), x.min() + 1))
    y1 = float(np.percentile(y, 99.5)) * 1.05 if len(y) else 1.0
    y1 = max(y1, 1e-3)

    def px(xv, yv):
        return (left + (xv - x0) / (x1 - x0) * (w - left - right),
                h - bottom - min(yv, y1) / y1 * (h - top - bottom))

    for t in _ticks(0.0, y1):  # grid + y labels
        _, yy = px(x0, t)
        d.line([(left, yy), (w - right, yy)], fill=(230, 230, 230))
        d.text((left - 8, yy), f"{t:g}", fill="black", font=font, anchor="rm")
    for t in _ticks(x0, x1):
        xx, _ = px(t, 0)
        d.line([(xx, h - bottom), (xx, h - bottom + 5)], fill="black")
        d.text((xx, h - bottom + 8), f"{t:g}", fill="black", font=font, anchor="mt")
    d.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black", width=1)
    if len(x) > 1:
        d.line([px(a, b) for a, b in zip(x, y)], fill=(170, 200, 235), width=1)
        d.line([px(a, b) for a, b in zip(x, moving_average(y, smooth))], fill=(20, 70, 160), width=3)
    d.text((w / 2, 16), title, fill="black", font=font, anchor="mm")
    d.text((w / 2, h - 20), "training step", fill="black", font=font, anchor="mm")
    d.text((12, top - 20), "fraction error (pp)", fill="black", font=font, anchor="lm")
    d.text((w - right, top - 20), f"light: per step   dark: mean of {smooth}", fill=(80, 80, 80),
           font=font, anchor="rm")
    return img


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="SliceGAN run directory (with losses.jsonl)")
    p.add_argument("--out", help="PNG path (default: RUN/fraction_error.png)")
    p.add_argument("--smooth", type=int, default=25, help="moving-average window in steps")
    args = p.parse_args(argv)
    rows = [r for r in runs.read_losses(args.run) if r.get("fraction_error") is not None]
    if not rows:
        raise MatgenInputError(f"{args.run} has no logged fraction_error (not a SliceGAN run, or "
                               f"not trained yet).")
    cfg = runs.load_config(args.run)["model_config"]
    steps = [r["step"] for r in rows]
    err = [100.0 * r["fraction_error"] for r in rows]
    kind = (f"conditional, targets +-{100 * cfg.get('fraction_range', 0.1):.0f} pp"
            if cfg.get("conditional") else "target: training fractions")
    title = f"SliceGAN fraction error vs training step ({kind})"
    out = Path(args.out) if args.out else Path(args.run) / "fraction_error.png"
    plot(steps, err, title, smooth=args.smooth).save(out)
    last = np.mean(err[-min(len(err), args.smooth):])
    print(f"wrote {out}: {len(rows)} steps, fraction error first {err[0]:.2f} pp, "
          f"mean of last {min(len(err), args.smooth)} {last:.2f} pp")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MatgenInputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
