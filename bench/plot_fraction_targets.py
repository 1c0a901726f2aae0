"""Generator-alone phase-fraction error vs requested target (issue #14), from bench_fractions JSON.

Each row of ``bench_fractions.py --json`` gives, per phase, the target and the fraction the
conditional generator made by itself. This draws, per phase, the error (generator alone - target,
pp) against the target's offset from the training fraction (pp), with the issue's 2 pp bar, as a
PNG made with PIL (no plotting dependency). Several JSON files (e.g. two training seeds) pool.

    python bench/plot_fraction_targets.py a.json [b.json ...] --center 0.45,0.40,0.15 --out fraction_targets.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plot_fraction_error import _ticks  # noqa: E402

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]
BAR_PP = 2.0


def plot(points: dict[int, list[tuple[float, float]]], title: str, size=(900, 520)) -> Image.Image:
    """``points``: phase -> [(target offset pp, generator-alone error pp)]."""
    w, h = size
    left, right, top, bottom = 80, 150, 48, 64
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    xs = [x for pts in points.values() for x, _ in pts] or [0.0]
    ys = [y for pts in points.values() for _, y in pts] or [0.0]
    xr = max(1.0, max(abs(v) for v in xs)) * 1.1
    yr = max(BAR_PP * 1.25, max(abs(v) for v in ys) * 1.1)

    def px(xv, yv):
        return (left + (xv + xr) / (2 * xr) * (w - left - right),
                top + (yr - yv) / (2 * yr) * (h - top - bottom))

    for t in _ticks(-yr, yr):
        _, yy = px(-xr, t)
        d.line([(left, yy), (w - right, yy)], fill=(230, 230, 230))
        d.text((left - 8, yy), f"{t:g}", fill="black", font=font, anchor="rm")
    for t in _ticks(-xr, xr):
        xx, _ = px(t, -yr)
        d.line([(xx, h - bottom), (xx, h - bottom + 5)], fill="black")
        d.text((xx, h - bottom + 8), f"{t:+g}" if t else "0", fill="black", font=font, anchor="mt")
    for b in (BAR_PP, -BAR_PP):  # the bar
        d.line([px(-xr, b), px(xr, b)], fill=(200, 120, 0), width=2)
    d.line([px(-xr, 0), px(xr, 0)], fill=(120, 120, 120), width=1)
    d.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black", width=1)
    for k, pts in sorted(points.items()):
        c = COLOURS[k % len(COLOURS)]
        for x, y in pts:
            cx, cy = px(x, y)
            d.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], outline=c, width=2)
        d.ellipse([w - right + 16, top + 8 + 18 * k, w - right + 24, top + 16 + 18 * k], outline=c, width=2)
        d.text((w - right + 32, top + 12 + 18 * k), f"phase {k}", fill="black", font=font, anchor="lm")
    d.text((w - right + 16, top + 20 + 18 * len(points)), f"bar: +-{BAR_PP:g} pp", fill=(200, 120, 0),
           font=font, anchor="lm")
    d.text((w / 2, 16), title, fill="black", font=font, anchor="mm")
    d.text(((w - right + left) / 2, h - 20), "target - training fraction (pp)", fill="black", font=font,
           anchor="mm")
    d.text((12, top - 20), "generator alone - target (pp)", fill="black", font=font, anchor="lm")
    return img


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", help="bench_fractions.py --json outputs")
    p.add_argument("--center", required=True, help="training fractions, e.g. 0.45,0.40,0.15")
    p.add_argument("--size", type=int, help="only rows of this cube side (default: all)")
    p.add_argument("--title", default="Conditional SliceGAN: generator-alone error vs target")
    p.add_argument("--out", default="fraction_targets.png")
    args = p.parse_args(argv)
    center = np.array([float(v) for v in args.center.split(",")])
    points: dict[int, list[tuple[float, float]]] = {k: [] for k in range(len(center))}
    rows = [r for f in args.json for r in json.loads(Path(f).read_text())
            if r.get("mode") in ("conditional", "calibration") and r.get("generator") is not None
            and (args.size is None or r["size"] == args.size)]
    for r in rows:
        t, g = np.asarray(r["target"]), np.asarray(r["generator"])
        for k in range(len(center)):
            points[k].append((100 * (t[k] - center[k]), 100 * (g[k] - t[k])))
    plot(points, args.title).save(args.out)
    worst = max((abs(y) for pts in points.values() for _, y in pts), default=0.0)
    print(f"wrote {args.out}: {len(rows)} volumes, worst generator-alone error {worst:.2f} pp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
