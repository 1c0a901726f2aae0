"""3D surfaces and figures for the app (matgen_core.render)."""
import time

import numpy as np
import pytest

pv = pytest.importorskip("pyvista")

from matgen_core import render  # noqa: E402


def blobs(shape=(48, 48, 48), n_phases=3, seed=0, sigma=3.0):
    """A smooth random n-phase label volume (equal-ish fractions)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), sigma)
    cuts = np.quantile(field, np.linspace(0, 1, n_phases + 1)[1:-1])
    return np.digitize(field, cuts).astype(np.uint8)


def test_colorize_uses_phase_palette():
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    rgb = render.colorize(labels)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 1]) == render.hex_to_rgb(render.PHASE_COLORS[1])
    assert tuple(rgb[1, 0]) == render.hex_to_rgb(render.PHASE_COLORS[2])
    assert len(set(render.PHASE_COLORS)) == len(render.PHASE_COLORS)


def test_surfaces_are_closed_and_in_physical_units():
    labels = np.zeros((20, 30, 40), np.uint8)
    labels[5:15, 10:20, 10:30] = 1  # a box of phase 1 inside phase 0
    surf = render.phase_surfaces(labels, voxel_size=0.5)
    assert set(surf) == {0, 1}
    box = surf[1]
    assert box.n_cells > 0
    assert box.n_open_edges == 0  # closed, so it renders as a solid
    xmin, xmax, ymin, ymax, zmin, zmax = box.bounds
    # x is the last axis: 10..30 voxels -> about 5..15 in physical units
    assert xmin == pytest.approx(5.0, abs=0.4) and xmax == pytest.approx(15.0, abs=0.4)
    assert ymin == pytest.approx(5.0, abs=0.4) and ymax == pytest.approx(10.0, abs=0.4)
    assert zmin == pytest.approx(2.5, abs=0.4) and zmax == pytest.approx(7.5, abs=0.4)
    # a phase filling the volume ends exactly at the volume's faces
    full = render.phase_surfaces(np.zeros((10, 12, 14), np.uint8), voxel_size=2.0)[0]
    assert np.allclose(full.bounds, (0, 28, 0, 24, 0, 20), atol=0.3)


def test_missing_phase_gives_empty_surface_and_subset():
    labels = blobs((24, 24, 24), 2)
    surf = render.phase_surfaces(labels, phases=[1, 4])
    assert set(surf) == {1, 4}
    assert surf[4].n_points == 0 and surf[1].n_points > 0


def test_large_volume_is_reduced_and_bounded():
    labels = blobs((96, 96, 96), 3, sigma=2.0)
    t0 = time.perf_counter()
    surf = render.phase_surfaces(labels, max_side=64, max_faces=20_000)
    assert time.perf_counter() - t0 < 5
    flagged = render.unfaithful_phases(surf)
    for p, s in surf.items():  # per phase: about max_faces, never far above; a phase the
        # coarse grid loses may take up to thin_max_faces (150k) and is then flagged
        assert 2_000 < s.n_cells <= (150_000 if p in flagged else 2 * 20_000)
    # still spans the whole volume
    assert surf[0].bounds[1] > 90


def test_noise_volume_stays_cheap():
    labels = (np.random.default_rng(0).random((96, 96, 96)) * 3).astype(np.uint8)
    t0 = time.perf_counter()
    surf = render.phase_surfaces(labels)
    assert time.perf_counter() - t0 < 5
    assert all(s.n_cells <= 150_000 for s in surf.values())


def test_downsample_labels_keeps_majority():
    labels = np.zeros((64, 64, 64), np.uint8)
    labels[:, :, 32:] = 1
    small = render.downsample_labels(labels, 16)
    assert max(small.shape) <= 16
    assert small[:, :, :7].max() == 0 and small[:, :, 9:].min() == 1


@pytest.mark.timeout(120)
def test_plotter_for_128_cube_is_fast_and_exports_html():
    labels = blobs((128, 128, 128), 3)
    t0 = time.perf_counter()
    p = render.plotter_for(labels, visible_phases=[1, 2], opacity=0.8)
    html = render.scene_html(p)
    elapsed = time.perf_counter() - t0
    assert elapsed < 10, f"3D view of 128^3 took {elapsed:.1f} s"
    assert len(html) < 15e6  # light enough for a browser
    names = [a for a in p.actors if a.startswith("phase")]
    assert sorted(names) == ["phase 1", "phase 2"]
    assert "<html" in html.lower() and "OfflineLocalView" in html  # vtk.js inline: no download
    p.close()


def test_scene_export_uses_no_wasm_module_and_no_deprecated_call():
    import sys
    import warnings

    p = render.plotter_for(blobs((24, 24, 24), 2), visible_phases=[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a PyVista deprecation (export_html) would raise here
        html = render.scene_html(p)
    assert len(html) > 100_000
    assert sys.modules.get("trame.widgets.vtklocal") is None  # VTK.wasm (downloads) never loaded
    p.close()


def film_volume(side=128, seed=0):
    """Particles (phase 1) in pore (phase 0) with a 1-voxel film (phase 2) on them."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(np.random.default_rng(seed).random((side,) * 3).astype(np.float32), 4)
    part = field > np.quantile(field, 0.55)
    film = ndimage.binary_dilation(part, iterations=1) & ~part
    labels = np.zeros(part.shape, np.uint8)
    labels[part], labels[film] = 1, 2
    return labels


def test_thin_film_is_drawn_and_flagged_not_dropped():
    labels = film_volume(128)
    assert 0.05 < (labels == 2).mean() < 0.2
    surf = render.phase_surfaces(labels, [1, 2], max_side=48)
    assert surf[2].n_cells > 0  # before: an empty surface, silently
    flags = render.unfaithful_phases(surf)
    assert flags == {2: "thickened"}
    # the bulky phase is drawn faithfully (encloses about its own volume) and not flagged
    assert 0.6 < render.drawn_fraction(surf[1], int((labels == 1).sum())) < 1.4
    # at full resolution nothing needs flagging
    small = film_volume(40)
    assert render.unfaithful_phases(render.phase_surfaces(small, [1, 2], max_side=64)) == {}


def test_loss_figure_log_scale_and_legend_clear_of_toolbar():
    rows = [{"step": i, "critic": -100.0 + i, "generator": 0.01 * i} for i in range(50)]
    lin = render.loss_figure(rows)
    log = render.loss_figure(rows, log_y=True)
    assert lin.layout.legend.x > 1  # right of the plot area, not under the modebar
    g_lin = np.array(lin.data[1].y, float)
    g_log = np.array(log.data[1].y, float)
    assert np.allclose(g_log, np.log10(1 + g_lin))
    assert log.data[0].y[0] == pytest.approx(-np.log10(101))  # sign kept
    assert list(log.data[0].customdata) == [r["critic"] for r in rows]  # hover shows real values
    assert "log10" in log.layout.yaxis.title.text


def test_plotter_for_gray_volume_shows_slices():
    vol = (np.random.default_rng(0).random((16, 20, 24)) * 255).astype(np.uint8)
    p = render.plotter_for(vol, kind="gray")
    assert len(p.actors) >= 2
    p.close()


def test_figures():
    labels = blobs((32, 32, 32), 2)
    fig = render.slices_figure(labels, "nphase", (1, 2, 3))
    assert len(fig.data) == 3
    assert fig.data[0].z.shape == (32, 32, 3)
    rows = [{"step": i, "time_s": i * 0.1, "critic": -i, "generator": i} for i in range(5000)]
    lf = render.loss_figure(rows)
    assert {t.name for t in lf.data} == {"critic", "generator"}
    assert len(lf.data[0].x) <= 2001 and lf.data[0].x[-1] == 4999
    s2 = {0: {"axes": np.ones((3, 5)), "radial": np.ones(5)}, 1: {"axes": np.ones((3, 5)),
                                                                   "radial": np.ones(5)}}
    assert len(render.s2_figure(s2).data) == 2
    assert len(render.s2_figure(s2, per_axis=True).data) == 6
    prof = [np.full((10, 2), 0.5)] * 3
    assert len(render.profiles_figure(prof, [0.5, 0.5]).data) == 6


def test_png_data_url_carries_the_pixels(tmp_path):
    import base64
    import io as _io

    from PIL import Image

    rgb = render.colorize(blobs((24, 40), 3))
    url = render.png_data_url(rgb)
    assert url.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(_io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert np.array_equal(back, rgb)
    png = tmp_path / "latest.png"
    Image.fromarray(rgb).save(png)
    assert render.png_data_url(png) == "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    with pytest.raises(ValueError, match="uint8"):
        render.png_data_url(np.zeros((4, 4), np.float32))
