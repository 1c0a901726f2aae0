"""The demo model's 3D scene for the app's Home page, built in a separate process.

    python -m matgen_core.demo_scene RUN_DIR OUT_DIR

Reads ``RUN_DIR/demo_volume.npz`` (labels, made by assets/make_demo_model.py), draws phases
1..n-1 as surfaces (render.phase_surfaces) and writes ``OUT_DIR/scene.html`` (the vtk.js view,
render.scene_html) and ``OUT_DIR/scene.json`` ({"shown": [...], "flags": {phase: "thickened" |
"missing"}, "error": str | absent}). The app runs it as a subprocess: importing VTK and starting
the exporter in a thread of the Streamlit server, next to its script threads, was measured to
hang on the shared test machine (CPython 3.11, cpython gh-106905-like races), and a subprocess
also keeps that work off the server's GIL.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def build(run_dir, out_dir) -> dict:
    from . import render

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with np.load(run_dir / "demo_volume.npz", allow_pickle=False) as f:
        labels = f["labels"].astype(np.uint8)
    n = int(labels.max()) + 1
    shown = list(range(1, n))  # phase 0 (pore) hidden, as on the Generate page
    surfaces = render.phase_surfaces(labels, shown)
    info = dict(shown=shown, flags={str(k): v for k, v in render.unfaithful_phases(surfaces).items()})
    plotter = render.plotter_for(labels, shown, 1.0, kind="nphase", surfaces=surfaces,
                                 window_size=(720, 480))
    try:
        (out_dir / "scene.html.tmp").write_text(render.scene_html(plotter))
        (out_dir / "scene.html.tmp").replace(out_dir / "scene.html")
    except Exception as err:  # no OpenGL / EGL: the page shows the rest
        info["error"] = f"{type(err).__name__}: {err}"
    finally:
        plotter.close()
    (out_dir / "scene.json").write_text(json.dumps(info))
    return info


if __name__ == "__main__":
    build(sys.argv[1], sys.argv[2])
