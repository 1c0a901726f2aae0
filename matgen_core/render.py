"""Pictures of micrographs and volumes for the app: phase colours, 3D surfaces, plotly figures.

No streamlit here. The 3D view is a PyVista plotter holding one smooth, decimated surface per
phase, built on a downsampled copy of the volume (a full-resolution 128^3 surface is tens of MB,
far too much for a browser); full resolution is shown in orthogonal slices (plotly) instead.

PyVista renders offscreen through VTK's EGL window on headless machines; we set
``VTK_DEFAULT_OPENGL_WINDOW`` before VTK is imported unless the user chose something else.
"""
from __future__ import annotations

import math
import os
import sys
import threading
from typing import Iterable, Sequence

import numpy as np

# the phase palette and display scaling live in the core (preview.py, pure numpy); re-exported
from .preview import PHASE_COLORS, colorize, hex_to_rgb, phase_color, to_display  # noqa: F401

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

# --------------------------------------------------------------------------------------------
# 3D surfaces

_IMPORT_LOCK = threading.Lock()


def _pyvista():
    """pyvista with its plotting module fully loaded. PyVista loads ``pyvista.plotting`` lazily on
    first attribute access; two threads doing that at once (the app's warm-up and a page) can
    see a half-initialised module (AttributeError: no attribute 'Plotter'), so it is done once,
    under a lock."""
    with _IMPORT_LOCK:
        import pyvista
        import pyvista.plotting  # noqa: F401

        pyvista.Plotter  # noqa: B018  (resolves the lazy attribute while holding the lock)
        return pyvista


def _block_mean(field: np.ndarray, f: int) -> np.ndarray:
    """Mean over f*f*f blocks, padding the far edges by replication so nothing is cut off."""
    pads = [(0, (-s) % f) for s in field.shape]
    if any(p[1] for p in pads):
        field = np.pad(field, pads, mode="edge")
    z, y, x = field.shape
    return field.reshape(z // f, f, y // f, f, x // f, f).mean(axis=(1, 3, 5))


def _shrink(field: np.ndarray, max_side: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Downsample a float field so its longest side is <= max_side. Returns (field, voxel scale)."""
    shape = np.array(field.shape, dtype=float)
    scale = np.ones(3)
    longest = int(shape.max())
    if longest <= max_side:
        return field, (1.0, 1.0, 1.0)
    f = longest // max_side
    if f >= 2:  # cheap, alias-free integer pooling first
        field = _block_mean(field, f)
        scale *= np.array(shape) / np.array(field.shape)
        shape = np.array(field.shape, dtype=float)
    if field.shape and max(field.shape) > max_side:
        from scipy import ndimage

        zoom = max_side / max(field.shape)
        new = ndimage.zoom(field, zoom, order=1, prefilter=False)
        scale *= shape / np.array(new.shape)
        field = new
    return field, tuple(float(s) for s in scale)


def downsample_labels(labels: np.ndarray, max_side: int = 96) -> np.ndarray:
    """Mode-pool a label volume so its longest side is <= max_side (for quick previews)."""
    labels = np.asarray(labels)
    n = int(labels.max()) + 1
    if max(labels.shape) <= max_side:
        return labels
    fractions = [_shrink((labels == p).astype(np.float32), max_side)[0] for p in range(n)]
    return np.argmax(np.stack(fractions), axis=0).astype(np.uint8)


def _contour(field: np.ndarray, scale, voxel_size: float, smooth: bool, level: float = 0.5):
    pv = _pyvista()
    from scipy import ndimage

    if smooth:
        field = ndimage.gaussian_filter(field, sigma=0.6, mode="nearest")
    field = np.pad(field, 1, mode="constant", constant_values=0.0)
    spacing = tuple(float(voxel_size) * s for s in scale[::-1])
    grid = pv.ImageData(dimensions=field.shape[::-1], spacing=spacing,
                        origin=tuple(-0.5 * s for s in spacing))  # voxel centres at (i + 0.5) * s
    # (Z, Y, X) C-order == (X, Y, Z) Fortran order: x varies fastest, as VTK wants.
    grid.point_data["f"] = field.ravel(order="C")
    surf = grid.contour([level], scalars="f", method="flying_edges")
    surf.clear_data()
    return surf


def phase_surfaces(
    labels: np.ndarray,
    phases: Iterable[int] | None = None,
    max_side: int = 96,
    voxel_size: float = 1.0,
    smooth: bool = True,
    max_faces: int = 60_000,
    min_side: int = 24,
    thin_max_faces: int = 150_000,
) -> dict[int, "object"]:
    """One closed surface (pyvista.PolyData) per phase of a 3D label volume (Z, Y, X).

    Each phase's indicator is pooled to a grid of at most ``max_side`` voxels a side (the local
    volume fraction, so surfaces stay smooth rather than blocky), blurred a little when
    ``smooth``, padded with zeros so every surface is closed at the volume's faces, and contoured
    at 0.5. The grid is chosen per phase so the surface has about ``max_faces`` triangles or
    fewer: the phase's interface area (voxel faces) predicts the triangle count, so a fine
    structure gets a coarser grid in one pass instead of a slow decimation. A browser then gets
    a light scene (about 25 bytes a triangle). Each phase is independent of the others (so
    callers can cache per phase). Coordinates are physical (x = last axis); a phase with no
    voxels gets an empty PolyData. A phase that the chosen grid loses (the surface encloses less
    than half its voxels: a thin film) is redrawn on the finest grid (``max_side``) if that
    stays under ``thin_max_faces`` triangles; :func:`missing_phases` says which phases are still
    not shown faithfully, so the view can say so. Each surface carries ``field_data
    ["phase_voxels"]`` (the phase's voxel count) for that check.
    """
    pv = _pyvista()

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"phase_surfaces needs a 3D label volume, got shape {labels.shape}")
    n = int(labels.max()) + 1 if labels.size else 0
    phases = list(range(n)) if phases is None else [int(p) for p in phases]
    longest = max(labels.shape)
    out: dict[int, object] = {}
    for p in phases:
        mask = labels == p
        if not mask.any():
            out[p] = pv.PolyData()
            continue
        faces = sum(int(np.count_nonzero(np.diff(mask, axis=a))) for a in range(3))
        faces += 2 * sum(int(np.count_nonzero(np.take(mask, [0, -1], axis=a))) for a in range(3))
        # about 1.5-2 triangles per voxel face, and triangles ~ side^2 (fewer on coarse grids,
        # where thin features merge away): one guess, then at most one correction
        side = longest * math.sqrt(max_faces / max(1.5 * faces, 1.0))
        side = int(min(max_side, longest, max(min_side, side)))
        field = mask.astype(np.float32)
        surf = _contour(*_shrink(field, side), voxel_size, smooth)
        if surf.n_cells > 2 * max_faces and side > min_side:
            new = max(min_side, int(side * math.sqrt(max_faces / surf.n_cells)))
        elif surf.n_cells < 0.4 * max_faces and side < min(max_side, longest):
            new = min(max_side, longest, int(1.6 * side),
                      int(side * math.sqrt(max_faces / max(surf.n_cells, 1)) * 0.8))
        else:
            new = side
        if new != side:
            second = _contour(*_shrink(field, new), voxel_size, smooth)
            if second.n_cells <= 2 * max_faces or second.n_cells < surf.n_cells:
                surf, side = second, new
        # a thin phase (a binder film) vanishes on a coarse grid: pooled below 0.5 everywhere.
        # Then draw it on the finest grid allowed, whatever its triangle count (up to
        # thin_max_faces), so the view keeps it instead of silently dropping it.
        voxels = int(mask.sum())
        finest = min(max_side, longest)
        thickened = False
        if side < finest and drawn_fraction(surf, voxels, voxel_size) < 0.5:
            fine = _contour(*_shrink(field, finest), voxel_size, smooth)
            if fine.n_cells <= thin_max_faces and (
                    drawn_fraction(fine, voxels, voxel_size) > drawn_fraction(surf, voxels, voxel_size)):
                surf, side = fine, finest
        if drawn_fraction(surf, voxels, voxel_size) < 0.5 and side >= longest:
            exact = _contour(field, (1.0, 1.0, 1.0), voxel_size, False)  # no blur: voxel-exact
            if 0 < exact.n_cells <= thin_max_faces:
                surf = exact
        if drawn_fraction(surf, voxels, voxel_size) < 0.5:
            # still lost: thinner than one cell of the finest grid. Draw it thickened (contour the
            # pooled fraction at half its typical peak instead of 0.5) and flag it, so the view
            # says so rather than dropping the phase.
            from scipy import ndimage

            grid_side = side
            while grid_side >= min_side and not thickened:
                pooled, scale = _shrink(field, grid_side)
                if smooth:
                    pooled = ndimage.gaussian_filter(pooled, sigma=0.6, mode="nearest")
                peak = float(np.percentile(pooled[pooled > 0], 99)) if (pooled > 0).any() else 0.0
                if peak <= 0:
                    break
                thick = _contour(pooled, scale, voxel_size, False, level=0.5 * min(peak, 1.0))
                if 0 < thick.n_cells <= thin_max_faces:
                    surf, thickened = thick, True
                grid_side = int(grid_side * 0.7)  # too many triangles: a coarser grid
        surf.field_data["phase_voxels"] = np.array([voxels])
        surf.field_data["thickened"] = np.array([int(thickened)])
        out[p] = surf
    return out


def drawn_fraction(surface, voxels: int, voxel_size: float = 1.0) -> float:
    """How much of a phase's volume (``voxels`` voxels) the closed ``surface`` encloses, 0..1+.

    About 1 when the 3D view shows the phase faithfully; well below 1 when the phase is finer
    than the grid its surface was drawn on (it then looks thinner or is missing).
    """
    if voxels <= 0:
        return 1.0
    if surface is None or surface.n_points == 0:
        return 0.0
    return float(abs(surface.volume)) / (voxels * float(voxel_size) ** 3)


def unfaithful_phases(surfaces: dict, voxel_size: float = 1.0, below: float = 0.5) -> dict[int, str]:
    """{phase: "thickened" | "missing"} for phases the 3D view does not show as they are.

    "thickened": finer than the 3D grid, drawn inflated (:func:`phase_surfaces` flags it);
    "missing": the surface encloses less than ``below`` of the phase's voxels. ``surfaces`` is
    :func:`phase_surfaces` output; the pages put a note on the 3D view for these phases.
    """
    out = {}
    for p, surf in surfaces.items():
        keys = surf.field_data.keys()
        voxels = int(surf.field_data["phase_voxels"][0]) if "phase_voxels" in keys else 0
        if not voxels:
            continue
        if "thickened" in keys and int(surf.field_data["thickened"][0]):
            out[int(p)] = "thickened"
        elif drawn_fraction(surf, voxels, voxel_size) < below:
            out[int(p)] = "missing"
    return out


def plotter_for(
    volume: np.ndarray,
    visible_phases: Iterable[int] | None = None,
    opacity: float | dict[int, float] = 1.0,
    colors: Sequence[str] | None = None,
    *,
    kind: str = "nphase",
    voxel_size: float = 1.0,
    max_side: int = 96,
    window_size: tuple[int, int] = (720, 520),
    surfaces: dict[int, object] | None = None,
):
    """An off-screen pyvista.Plotter showing ``volume`` (Z, Y, X), ready for :func:`scene_html`.

    n-phase volumes: one coloured surface per visible phase (``surfaces`` may pass pre-computed
    ``phase_surfaces`` output to skip the contouring). Gray / colour volumes: three orthogonal
    slices through the centre. ``opacity`` is one number or {phase: opacity}.
    """
    pv = _pyvista()

    volume = np.asarray(volume)
    p = pv.Plotter(off_screen=True, window_size=list(window_size))
    p.set_background("white")
    if kind == "nphase":
        n = int(volume.max()) + 1 if volume.size else 0
        visible = list(range(n)) if visible_phases is None else [int(v) for v in visible_phases]
        if surfaces is None:
            surfaces = phase_surfaces(volume, visible, max_side=max_side, voxel_size=voxel_size)
        for ph in visible:
            surf = surfaces.get(ph)
            if surf is None or surf.n_points == 0:
                continue
            op = opacity.get(ph, 1.0) if isinstance(opacity, dict) else opacity
            p.add_mesh(
                surf,
                color=phase_color(ph, colors),
                opacity=float(op),
                smooth_shading=True,
                name=f"phase {ph}",
            )
    else:
        gray = volume if volume.ndim == 3 else volume.mean(axis=-1)
        gray_small, scale = _shrink(gray.astype(np.float32), max_side)
        grid = pv.ImageData(
            dimensions=gray_small.shape[::-1],
            spacing=tuple(float(voxel_size) * s for s in scale[::-1]),
        )
        grid.point_data["intensity"] = gray_small.ravel(order="C")
        p.add_mesh(grid.slice_orthogonal(), scalars="intensity", cmap="gray", show_scalar_bar=False)
    z, y, x = volume.shape[:3]
    box = pv.Box(bounds=(0, x * voxel_size, 0, y * voxel_size, 0, z * voxel_size))
    p.add_mesh(box.extract_feature_edges(), color="black", line_width=1)
    p.camera_position = "iso"
    p.camera.zoom(0.95)
    return p


_EXPORT_LOCK = threading.Lock()


def scene_html(plotter) -> str:
    """The plotter's scene as one self-contained HTML page (vtk.js inline, about 1 MB + the
    surfaces), to show in an iframe: drag to rotate, scroll to zoom. Nothing is downloaded.

    trame-pyvista's exporter starts a local trame server and, when trame-vtklocal is installed,
    initialises it too; that module fetches VTK.wasm from the internet. This export only needs
    the vtk.js scene, so trame-vtklocal is kept out (its import is blocked for this process).
    """
    if "trame.widgets.vtklocal" not in sys.modules:
        sys.modules["trame.widgets.vtklocal"] = None  # `from trame.widgets import vtklocal` -> ImportError
    with _EXPORT_LOCK:  # one export at a time: they share the trame server
        return plotter.trame.export_html(filename=None).read()


# --------------------------------------------------------------------------------------------
# images inline


def png_data_url(image) -> str:
    """A picture as a ``data:image/png;base64,...`` URL: a uint8 array (H, W) or (H, W, 3), or
    the path of an image file (sent as it is when it is a PNG).

    For pictures that a live page redraws every second (the training preview): the URL carries
    the pixels, so the browser never fetches them from the app server, whose stored media files
    are replaced when the page reruns (a fetch that loses that race shows a broken image).
    """
    import base64
    import io as _io
    from pathlib import Path

    from PIL import Image

    if isinstance(image, (str, Path)):
        data = Path(image).read_bytes()
        if not data.startswith(b"\x89PNG"):
            buf = _io.BytesIO()
            Image.open(_io.BytesIO(data)).save(buf, format="PNG")
            data = buf.getvalue()
    else:
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise ValueError(f"png_data_url needs a uint8 (H, W) or (H, W, 3) array, got {array.dtype} {array.shape}")
        buf = _io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------------------------
# plotly figures (pages only show them)


def slices_figure(volume: np.ndarray, kind: str, index: tuple[int, int, int] | None = None,
                  voxel_size: float = 1.0, unit: str = "px"):
    """Three full-resolution orthogonal slices (XY at z, XZ at y, YZ at x) side by side."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    volume = np.asarray(volume)
    z, y, x = volume.shape[:3]
    iz, iy, ix = index if index is not None else (z // 2, y // 2, x // 2)
    planes = [
        (f"XY plane (z = {iz})", volume[iz]),
        (f"XZ plane (y = {iy})", volume[:, iy]),
        (f"YZ plane (x = {ix})", volume[:, :, ix]),
    ]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for t, _ in planes],
                        horizontal_spacing=0.04)
    for col, (_, img) in enumerate(planes, start=1):
        fig.add_trace(go.Image(z=to_display(img, kind), hoverinfo="skip"), row=1, col=col)
        fig.update_xaxes(showticklabels=False, row=1, col=col)
        fig.update_yaxes(showticklabels=False, scaleanchor=f"x{col if col > 1 else ''}",
                         row=1, col=col)
    fig.update_layout(margin=dict(l=0, r=0, t=30, b=0), height=320)
    return fig


def loss_figure(rows: list[dict], loss_names: Sequence[str] | None = None, max_points: int = 2000,
                log_y: bool = False):
    """Training curves: one line per loss against step (long histories are thinned).

    ``log_y``: a symmetric-log-like view for losses of very different sizes: each curve is drawn
    as sign(v) * log10(1 + |v|), so small losses are not flattened by large (or negative) ones;
    the axis title says so. The legend sits to the right of the plot, clear of the toolbar.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    if rows:
        if len(rows) > max_points:
            stride = math.ceil(len(rows) / max_points)
            rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
        names = list(loss_names) if loss_names else [
            k for k in rows[-1] if k not in ("step", "time_s", "elapsed_s") and
            isinstance(rows[-1][k], (int, float))
        ]
        steps = [r.get("step") for r in rows]
        for name in names:
            raw = [r.get(name) for r in rows]
            values = raw
            if log_y:
                values = [None if v is None else math.copysign(math.log10(1.0 + abs(v)), v)
                          for v in raw]
            fig.add_trace(go.Scatter(x=steps, y=values, customdata=raw, mode="lines", name=name,
                                     hovertemplate=f"{name}: %{{customdata:.4g}} at step "
                                                   f"%{{x}}<extra></extra>"))
    fig.update_layout(xaxis_title="step",
                      yaxis_title="sign(loss) x log10(1 + |loss|)" if log_y else "loss",
                      height=340, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="v", yanchor="top", y=1.0, xanchor="left", x=1.02))
    return fig


def s2_figure(s2: dict, voxel_size: float | None = None, unit: str = "px", per_axis: bool = False,
              reference: dict | None = None):
    """Two-point correlation S2(r) per phase, from ``metrics.s2_all`` output.

    ``per_axis``: one line per axis (dotted, dashed, solid) instead of the radial average.
    ``reference``: a second s2_all result drawn in the same colours, thin and dashed ("training").
    """
    import plotly.graph_objects as go

    axis_names = ("z", "y", "x")
    fig = go.Figure()

    def add(data, label, dash_for):
        for p in sorted(data):
            entry = data[p]
            curves = entry["axes"] if per_axis else [entry["radial"]]
            nd = len(entry["axes"])
            for a, curve in enumerate(curves):
                curve = np.asarray(curve)
                r = np.arange(len(curve)) * (voxel_size if voxel_size else 1.0)
                name = f"phase {p}" + (f" {axis_names[3 - nd + a]}" if per_axis else "")
                fig.add_trace(go.Scatter(
                    x=r, y=curve, mode="lines", name=f"{label}{name}",
                    line=dict(color=phase_color(p), dash=dash_for(a),
                              width=1.5 if label else 2.5)))

    dashes = ("dot", "dash", "solid")
    if reference is not None:
        add(reference, "training ", lambda a: "dash")
    add(s2, "", (lambda a: dashes[a % 3]) if per_axis else (lambda a: "solid"))
    fig.update_layout(
        xaxis_title=f"distance r [{unit if voxel_size else 'px'}]", yaxis_title="S2(r)",
        height=300, margin=dict(l=10, r=10, t=30, b=10),
        title=dict(text="Two-point correlation (starts at the phase fraction, levels off at its square)",
                   font=dict(size=13)))
    return fig


def compare_s2_figure(result: dict):
    """S2 curves of a ``metrics.compare`` result: training (thin, dashed) vs generated per axis."""
    import plotly.graph_objects as go

    curves = result["curves"]
    r = np.asarray(curves["r_phys"] if curves.get("r_phys") is not None else curves["r"], float)
    unit = result.get("unit", "px") if curves.get("r_phys") is not None else "px"
    fig = go.Figure()
    dashes = ("dot", "dashdot", "solid")
    for p, c in enumerate(curves["phases"]):
        color = phase_color(p)
        fig.add_trace(go.Scatter(x=r, y=c["reference"], mode="lines", name=f"phase {p} training",
                                 line=dict(color=color, dash="dash", width=1.5)))
        gen_axes = np.asarray(c.get("generated_axes") or [c["generated"]], float)
        labels = ("Z", "Y", "X") if len(gen_axes) == 3 else ("Y", "X")
        for a, curve in enumerate(gen_axes):
            fig.add_trace(go.Scatter(
                x=r, y=curve, mode="lines", name=f"phase {p} generated {labels[a]}",
                line=dict(color=color, dash=dashes[(a + 3 - len(gen_axes)) % 3], width=2.5)))
    fig.update_layout(xaxis_title=f"distance r [{unit}]", yaxis_title="S2(r)", height=380,
                      margin=dict(l=10, r=10, t=30, b=10))
    return fig


def profiles_figure(profiles, reference_fractions=None):
    """Per-slice phase fractions along each axis (``metrics.fraction_profiles`` output)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    nd = len(profiles)
    names = ("Z", "Y", "X")[3 - nd:]
    fig = make_subplots(rows=1, cols=nd, shared_yaxes=True,
                        subplot_titles=[f"along {a}" for a in names], horizontal_spacing=0.03)
    for a, prof in enumerate(profiles):
        prof = np.asarray(prof, float)
        for p in range(prof.shape[1]):
            fig.add_trace(go.Scatter(y=prof[:, p], mode="lines", name=f"phase {p}",
                                     legendgroup=f"p{p}", showlegend=a == 0,
                                     line=dict(color=phase_color(p))), row=1, col=a + 1)
            if reference_fractions is not None and p < len(reference_fractions):
                fig.add_hline(y=float(reference_fractions[p]), line=dict(color=phase_color(p),
                              dash="dash", width=1), row=1, col=a + 1)
        fig.update_xaxes(title_text="slice", row=1, col=a + 1)
    fig.update_yaxes(title_text="phase fraction", range=[0, 1], row=1, col=1)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10))
    return fig
