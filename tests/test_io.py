"""Tests for matgen_core.io (reading, segmenting, writing) and matgen_core.synthetic."""
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from matgen_core.io import write as io_write
from matgen_core.errors import MatgenInputError
from matgen_core.io import (
    Micrograph,
    detect_kind,
    read_micrograph,
    read_phase_table,
    read_volume,
    require_phases,
    segment,
    to_bytes,
    write_npy,
    write_tiff,
    write_vti,
)
from matgen_core.synthetic import synthetic_microstructure

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "slicegan_examples"


def three_phase(shape=(40, 50), seed=0):
    """Labels 0..2 with every label present."""
    labels = synthetic_microstructure(shape, n_phases=3, feature_size=4, seed=seed)
    assert set(np.unique(labels)) == {0, 1, 2}, "pick a larger shape or another seed"
    return labels


def gradient(shape=(32, 48)):
    """A smooth uint8 image with many grey levels."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    return ((x + y) * 255 // (shape[0] + shape[1] - 2)).astype(np.uint8)


# ----------------------------------------------------------------------------- reading: formats


def test_png_8bit_nphase_round_trip(tmp_path):
    labels = three_phase()
    Image.fromarray(np.array([0, 127, 255], np.uint8)[labels]).save(tmp_path / "a.png")
    m = read_micrograph(tmp_path / "a.png")
    assert (m.kind, m.n_phases, m.phase_values, m.ndim, m.shape) == ("nphase", 3, [0, 127, 255], 2, labels.shape)
    assert m.labels.dtype == np.uint8 and np.array_equal(m.labels, labels)
    assert m.image.dtype == np.float32 and np.allclose(m.image, labels / 2)
    assert (m.voxel_size, m.unit, m.source) == (None, "px", "a.png")


def test_png_8bit_gray(tmp_path):
    img = gradient()
    Image.fromarray(img).save(tmp_path / "g.png")
    m = read_micrograph(tmp_path / "g.png")
    assert (m.kind, m.labels, m.n_phases, m.phase_values) == ("gray", None, 0, [])
    assert np.allclose(m.image, img / 255)


def test_png_16bit_gray_is_stretched(tmp_path):
    img = (gradient().astype(np.uint16) * 10 + 1000)
    Image.fromarray(img).save(tmp_path / "g16.png")
    m = read_micrograph(tmp_path / "g16.png")
    assert m.kind == "gray"
    assert m.image.min() == 0 and m.image.max() == 1


def test_tiff_16bit_gray_and_nphase(tmp_path):
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "g.tif", rng.integers(0, 4096, (30, 40), dtype=np.uint16))
    m = read_micrograph(tmp_path / "g.tif")
    assert m.kind == "gray" and m.image.dtype == np.float32 and m.image.min() == 0 and m.image.max() == 1
    labels = three_phase()
    tifffile.imwrite(tmp_path / "p.tif", np.array([100, 30000, 65535], np.uint16)[labels])
    m = read_micrograph(tmp_path / "p.tif")
    assert m.kind == "nphase" and m.phase_values == [100, 30000, 65535] and np.array_equal(m.labels, labels)


def test_float_tiff(tmp_path):
    rng = np.random.default_rng(1)
    tifffile.imwrite(tmp_path / "f.tif", rng.normal(5, 2, (30, 40)).astype(np.float32))
    m = read_micrograph(tmp_path / "f.tif")
    assert m.kind == "gray" and m.image.min() == 0 and m.image.max() == 1
    tifffile.imwrite(tmp_path / "f2.tif", np.where(three_phase() > 0, 0.75, -1.5).astype(np.float32))
    m = read_micrograph(tmp_path / "f2.tif")
    assert m.kind == "nphase" and m.phase_values == [-1.5, 0.75]


def test_rgb_colour_and_colour_phases(tmp_path):
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    m = read_micrograph(tmp_path / "c.png")
    assert (m.kind, m.ndim, m.shape, m.image.shape) == ("color", 2, (30, 40), (30, 40, 3))
    labels = three_phase()
    colours = np.array([[200, 0, 0], [0, 0, 255], [0, 180, 0]], np.uint8)
    Image.fromarray(colours[labels]).save(tmp_path / "cp.png")
    m = read_micrograph(tmp_path / "cp.png")
    assert m.kind == "nphase" and m.n_phases == 3
    # colours sorted by (R, G, B): blue, green, red
    assert m.phase_values == [(0, 0, 255), (0, 180, 0), (200, 0, 0)]
    assert np.array_equal(np.array(m.phase_values, np.uint8)[m.labels], colours[labels])


def test_rgb_with_equal_channels_is_grayscale(tmp_path):
    img = gradient()
    Image.fromarray(np.stack([img] * 3, -1)).save(tmp_path / "g.png")
    m = read_micrograph(tmp_path / "g.png")
    assert m.kind == "gray" and m.image.shape == img.shape


def test_rgba_constant_alpha_is_dropped(tmp_path):
    labels = three_phase()
    grey = np.array([0, 85, 170], np.uint8)[labels]
    rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], -1)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    m = read_micrograph(tmp_path / "a.png")
    assert m.kind == "nphase" and m.phase_values == [0, 85, 170] and np.array_equal(m.labels, labels)


def test_palette_png_is_read_as_colours(tmp_path):
    im = Image.fromarray(three_phase()).convert("P")
    im.putpalette([0, 0, 0, 255, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "pal.png")
    m = read_micrograph(tmp_path / "pal.png")
    assert m.kind == "nphase" and m.phase_values == [(0, 0, 0), (0, 0, 255), (255, 255, 0)]


def test_jpg_gray_and_bmp(tmp_path):
    img = gradient((64, 64))
    Image.fromarray(img).save(tmp_path / "g.jpg", quality=95)
    m = read_micrograph(tmp_path / "g.jpg")
    assert m.kind == "gray" and m.shape == (64, 64) and np.abs(m.image - img / 255).max() < 0.05
    labels = three_phase()
    Image.fromarray(np.array([10, 20, 30], np.uint8)[labels]).save(tmp_path / "p.bmp")
    m = read_micrograph(tmp_path / "p.bmp")
    assert m.kind == "nphase" and m.phase_values == [10, 20, 30] and np.array_equal(m.labels, labels)


def test_3d_tiff_stack_with_imagej_voxel_size(tmp_path):
    vol = np.array([0, 85, 170], np.uint8)[three_phase((12, 20, 24))]
    tifffile.imwrite(
        tmp_path / "v.tif", vol, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
        metadata={"spacing": 0.5, "unit": "micron", "axes": "ZYX"},
    )
    m = read_micrograph(tmp_path / "v.tif")
    assert (m.kind, m.ndim, m.shape, m.n_phases) == ("nphase", 3, (12, 20, 24), 3)
    assert m.voxel_size == pytest.approx(0.5) and m.unit == "um"


def test_tiff_centimetre_resolution_and_inch_dpi(tmp_path):
    img = gradient()
    tifffile.imwrite(tmp_path / "cm.tif", img, resolution=(1e4 / 2.0, 1e4 / 2.0), resolutionunit="CENTIMETER")
    m = read_micrograph(tmp_path / "cm.tif")
    assert m.voxel_size == pytest.approx(2.0, rel=1e-3) and m.unit == "um"
    tifffile.imwrite(tmp_path / "dpi.tif", img, resolution=(72, 72), resolutionunit="INCH")
    m = read_micrograph(tmp_path / "dpi.tif")
    assert (m.voxel_size, m.unit) == (None, "px")  # a print DPI is not a pixel size


def test_single_slice_stack_is_squeezed_to_2d(tmp_path):
    labels = three_phase()
    tifffile.imwrite(tmp_path / "one.tif", labels[np.newaxis])
    m = read_micrograph(tmp_path / "one.tif")
    assert m.ndim == 2 and m.shape == labels.shape


def test_npy_is_read_too(tmp_path):
    vol = three_phase((8, 16, 16))
    np.save(tmp_path / "v.npy", vol)
    m = read_micrograph(tmp_path / "v.npy")
    assert m.kind == "nphase" and m.shape == vol.shape and m.phase_values == [0, 1, 2]


def test_max_phases_controls_detection(tmp_path):
    img = np.tile(np.arange(10, dtype=np.uint8) * 20, (10, 3))
    Image.fromarray(img).save(tmp_path / "ten.png")
    assert read_micrograph(tmp_path / "ten.png").kind == "gray"
    assert read_micrograph(tmp_path / "ten.png", max_phases=10).n_phases == 10


def test_detect_kind():
    assert detect_kind(three_phase()) == "nphase"
    assert detect_kind(gradient()) == "gray"
    assert detect_kind(np.random.default_rng(0).random((10, 10, 10))) == "gray"
    assert detect_kind(np.stack([gradient()] * 3, -1)) == "gray"
    assert detect_kind(np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)) == "color"
    assert detect_kind(np.array([[0, 1], [1, 0]], bool)) == "nphase"


# ----------------------------------------------------------------------------- reading: errors


def test_missing_file(tmp_path):
    with pytest.raises(MatgenInputError, match="File not found.*check the path"):
        read_micrograph(tmp_path / "nope.png")


def test_folder_empty_corrupt_and_not_an_image(tmp_path):
    with pytest.raises(MatgenInputError, match="folder"):
        read_micrograph(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(MatgenInputError, match="empty"):
        read_micrograph(tmp_path / "empty.png")
    Image.fromarray(gradient()).save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:100])
    with pytest.raises(MatgenInputError, match="damaged"):
        read_micrograph(tmp_path / "cut.png")
    tifffile.imwrite(tmp_path / "ok.tif", gradient())
    (tmp_path / "cut.tif").write_bytes((tmp_path / "ok.tif").read_bytes()[:20])
    with pytest.raises(MatgenInputError, match="damaged"):
        read_micrograph(tmp_path / "cut.tif")
    (tmp_path / "notes.txt").write_text("not pixels")
    with pytest.raises(MatgenInputError, match="not an image"):
        read_micrograph(tmp_path / "notes.txt")


def test_single_phase_image(tmp_path):
    Image.fromarray(np.full((20, 20), 7, np.uint8)).save(tmp_path / "flat.png")
    with pytest.raises(MatgenInputError, match="only one phase.*at least 2 phases"):
        read_micrograph(tmp_path / "flat.png")


def test_varying_alpha_channels_and_dimensions(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 3] = np.arange(10)
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    with pytest.raises(MatgenInputError, match="transparency"):
        read_micrograph(tmp_path / "alpha.png")
    np.save(tmp_path / "line.npy", np.arange(10)[None, :])
    with pytest.raises(MatgenInputError, match="not a 2D image"):
        read_micrograph(tmp_path / "line.npy")
    np.save(tmp_path / "4d.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(MatgenInputError, match="4 dimensions"):
        read_micrograph(tmp_path / "4d.npy")
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(MatgenInputError, match="NaN"):
        read_micrograph(tmp_path / "nan.npy")


def test_require_phases():
    m = Micrograph(labels=None, image=gradient().astype(np.float32) / 255, kind="gray", source="x.png")
    with pytest.raises(MatgenInputError, match=r"x.png is a grayscale image with \d+ grey levels.*--segment"):
        require_phases(m)
    colour = Micrograph(labels=None, image=np.random.default_rng(0).random((8, 8, 3), np.float32), kind="color")
    with pytest.raises(MatgenInputError, match="colour image with 64 colours"):
        require_phases(colour)
    seg = segment(m, 2)
    assert require_phases(seg) is seg


# ----------------------------------------------------------------------------- segmentation


def test_multiotsu_recovers_noisy_three_level_image():
    labels = three_phase((128, 128))
    noisy = np.array([0.2, 0.5, 0.8])[labels] + np.random.default_rng(0).normal(0, 0.05, labels.shape)
    m = segment(noisy.astype(np.float32), 3)
    assert m.kind == "nphase" and m.n_phases == 3 and m.labels.dtype == np.uint8
    assert (m.labels == labels).mean() > 0.95
    assert m.phase_values[0] < m.phase_values[1] < m.phase_values[2]


def test_segment_3d_and_keeps_micrograph_metadata():
    vol = three_phase((16, 24, 24))
    noisy = (np.array([40, 120, 200])[vol] + np.random.default_rng(3).normal(0, 10, vol.shape)).clip(0, 255)
    image = noisy.astype(np.float32) / 255
    m = Micrograph(labels=None, image=image, kind="gray", voxel_size=0.3, unit="um", source="v.tif")
    s = segment(m, 3)
    assert s.shape == vol.shape and (s.labels == vol).mean() > 0.95
    assert (s.voxel_size, s.unit, s.source) == (0.3, "um", "v.tif")


def test_colour_segmentation_sorted_by_luminance():
    labels = three_phase((96, 96))
    colours = np.array([[0.9, 0.9, 0.2], [0.1, 0.1, 0.6], [0.8, 0.1, 0.1]])  # yellow, navy, red
    noisy = colours[labels] + np.random.default_rng(4).normal(0, 0.05, labels.shape + (3,))
    m = segment(noisy.clip(0, 1).astype(np.float32), 3)
    by_luminance = np.argsort(colours @ [0.299, 0.587, 0.114])  # navy, red, yellow
    expected = np.argsort(by_luminance)[labels]
    assert (m.labels == expected).mean() > 0.95
    assert m.phase_values[0][2] > m.phase_values[0][0]  # darkest phase is the navy one


def test_segment_is_fast_enough_for_live_preview():
    rng = np.random.default_rng(5)
    gray, rgb = rng.random((512, 512), np.float32), rng.random((512, 512, 3), np.float32)
    start = time.perf_counter()
    segment(gray, 4)
    segment(rgb, 4)
    assert time.perf_counter() - start < 3  # generous: shared CI machines are slow


def test_segment_errors():
    with pytest.raises(MatgenInputError, match="2 to 8"):
        segment(gradient(), 1)
    with pytest.raises(MatgenInputError, match="2 to 8"):
        segment(gradient(), 2.5)
    with pytest.raises(MatgenInputError, match="too few distinct grey levels"):
        segment(np.array([[0, 1], [1, 0]], np.uint8), 3)
    with pytest.raises(MatgenInputError, match="fewer than 3 distinct colours"):
        segment(np.stack([three_phase() > 0] * 3, -1).astype(np.float32) * [1, 0.5, 0], 3)


# ----------------------------------------------------------------------------- writing


def test_write_tiff_metadata_round_trip(tmp_path):
    vol = three_phase((10, 20, 30))
    write_tiff(tmp_path / "out" / "v.tif", vol, voxel_size=1.5, unit="um", phase_values=[0, 85, 170])
    arr, meta = read_volume(tmp_path / "out" / "v.tif")
    assert arr.dtype == np.uint8 and np.array_equal(arr, vol)
    assert meta == {"voxel_size": 1.5, "unit": "um", "phase_values": [0, 85, 170]}
    assert read_phase_table(tmp_path / "out" / "v.tif") == [0, 85, 170]
    with tifffile.TiffFile(tmp_path / "out" / "v.tif") as tif:  # what ImageJ/Fiji sees
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        assert tif.imagej_metadata["spacing"] == 1.5 and tif.imagej_metadata["unit"] == "micron"
    m = read_micrograph(tmp_path / "out" / "v.tif")
    assert m.phase_values == [0, 85, 170] and np.array_equal(m.labels, vol) and m.voxel_size == 1.5


def test_phase_table_keeps_labels_when_a_phase_is_absent(tmp_path, monkeypatch):
    # a generated volume where phase 1 of 3 never occurs: labels {0, 2} must stay {0, 2}
    vol = three_phase((6, 20, 30))
    vol[vol == 1] = 2
    table = [0, 128, 255]
    for big in (False, True):   # ImageJ record and (over the BigTIFF threshold) JSON record
        if big:
            monkeypatch.setattr(io_write, "_BIGTIFF_BYTES", 100)
        write_tiff(tmp_path / f"v{big}.tif", vol, phase_values=table)
        m = read_micrograph(tmp_path / f"v{big}.tif")
        assert m.kind == "nphase" and m.n_phases == 3 and m.phase_values == table
        assert np.array_equal(m.labels, vol) and set(np.unique(m.labels)) == {0, 2}
    # the metrics comparison then puts the generated phase 2 against the reference phase 2
    from matgen_core import metrics
    ref = three_phase((40, 50))
    result = metrics.compare(ref, m.labels)
    rows = {(r["metric"], r["phase"]): r for r in result["rows"]}
    assert rows[("phase_fraction", 1)]["generated"] == 0.0
    assert rows[("phase_fraction", 2)]["generated"] == pytest.approx(np.mean(vol == 2))
    # without a phase table the distinct values are still mapped to 0..k-1 (other software's files)
    tifffile.imwrite(tmp_path / "plain.tif", vol * 100)
    assert set(np.unique(read_micrograph(tmp_path / "plain.tif").labels)) == {0, 1}


def test_write_tiff_2d_rgb_stack_and_float(tmp_path):
    write_tiff(tmp_path / "a.tif", three_phase())
    arr, meta = read_volume(tmp_path / "a.tif")
    assert arr.shape == (40, 50) and meta == {"voxel_size": None, "unit": "px", "phase_values": None}
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    write_tiff(tmp_path / "c.tif", rgb, phase_values=[(1, 2, 3), (4, 5, 6)])
    arr, meta = read_volume(tmp_path / "c.tif")
    assert np.array_equal(arr, rgb) and meta["phase_values"] == [(1, 2, 3), (4, 5, 6)]
    samples = np.stack([three_phase(seed=s) for s in range(4)])
    write_tiff(tmp_path / "k.tif", samples)
    assert read_volume(tmp_path / "k.tif")[0].shape == (4, 40, 50)
    write_tiff(tmp_path / "f.tif", np.array([[0.0, 0.5], [1.0, 0.25]]))
    assert read_volume(tmp_path / "f.tif")[0].tolist() == [[0, 128], [255, 64]]
    with pytest.raises(MatgenInputError, match="do not fit in 8 bits"):
        write_tiff(tmp_path / "bad.tif", np.array([[0, 300], [1, 2]]))
    with pytest.raises(MatgenInputError, match="positive"):
        write_tiff(tmp_path / "bad.tif", three_phase(), voxel_size=-1)


def test_write_tiff_switches_to_bigtiff(tmp_path, monkeypatch):
    monkeypatch.setattr(io_write, "_BIGTIFF_BYTES", 100)
    vol = three_phase((4, 10, 10))
    write_tiff(tmp_path / "big.tif", vol, voxel_size=0.25, unit="nm", phase_values=[5, 6, 7])
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.is_bigtiff
    arr, meta = read_volume(tmp_path / "big.tif")
    assert np.array_equal(arr, vol) and meta == {"voxel_size": 0.25, "unit": "nm", "phase_values": [5, 6, 7]}


def test_npy_round_trip_and_read_volume_errors(tmp_path):
    vol = three_phase((10, 12, 14))
    write_npy(tmp_path / "sub" / "v.npy", vol)
    arr, meta = read_volume(tmp_path / "sub" / "v.npy")
    assert np.array_equal(arr, vol) and meta["voxel_size"] is None
    (tmp_path / "v.png").write_bytes(b"x")
    with pytest.raises(MatgenInputError, match="not a volume file"):
        read_volume(tmp_path / "v.png")
    with pytest.raises(MatgenInputError, match="File not found"):
        read_volume(tmp_path / "missing.tif")


def test_write_vti_reads_back_in_pyvista(tmp_path):
    pyvista = pytest.importorskip("pyvista")
    vol = three_phase((10, 12, 14))
    write_vti(tmp_path / "v.vti", vol, voxel_size=0.5)
    grid = pyvista.read(tmp_path / "v.vti")
    assert tuple(grid.dimensions) == (15, 13, 11) and tuple(grid.spacing) == (0.5, 0.5, 0.5)
    phase = np.asarray(grid.cell_data["phase"]).reshape(vol.shape)
    assert np.array_equal(phase, vol)


def test_to_bytes_formats(tmp_path):
    vol = three_phase((10, 12, 14))
    tif = to_bytes(vol, "tif", voxel_size=2.0, unit="um", phase_values=[0, 1, 2])
    (tmp_path / "v.tif").write_bytes(tif)
    assert read_volume(tmp_path / "v.tif")[1]["voxel_size"] == 2.0
    (tmp_path / "v.npy").write_bytes(to_bytes(vol, "npy"))
    assert np.array_equal(np.load(tmp_path / "v.npy"), vol)
    (tmp_path / "s.png").write_bytes(to_bytes(three_phase() * 100, "png"))
    assert read_micrograph(tmp_path / "s.png").phase_values == [0, 100, 200]
    assert to_bytes(vol, "vti").startswith(b"<?xml")
    with pytest.raises(MatgenInputError, match="PNG holds one 2D image"):
        to_bytes(vol, "png")
    with pytest.raises(MatgenInputError, match="Unknown format"):
        to_bytes(vol, "gif")


# ----------------------------------------------------------------------------- synthetic data


def test_synthetic_microstructure_2d_and_3d():
    a = synthetic_microstructure((64, 64), n_phases=3, seed=1)
    assert a.dtype == np.uint8 and a.shape == (64, 64) and set(np.unique(a)) == {0, 1, 2}
    assert np.array_equal(a, synthetic_microstructure((64, 64), n_phases=3, seed=1))
    assert not np.array_equal(a, synthetic_microstructure((64, 64), n_phases=3, seed=2))
    start = time.perf_counter()
    v = synthetic_microstructure((64, 64, 64), n_phases=3, feature_size=10)
    assert time.perf_counter() - start < 3
    fractions = np.bincount(v.ravel(), minlength=3) / v.size
    assert 0.3 < fractions[1] < 0.55 and 0.05 < fractions[2] < 0.25
    # isotropic: the two-point probability of the particle phase at a 4-voxel lag is the same along each axis
    particles = v == 1
    s2 = [np.mean(particles.take(range(60), axis=i) & particles.take(range(4, 64), axis=i)) for i in range(3)]
    assert np.ptp(s2) < 0.03
    assert set(np.unique(synthetic_microstructure((32, 32), n_phases=2))) == {0, 1}
    assert set(np.unique(synthetic_microstructure((64, 64), n_phases=4, seed=0))) == {0, 1, 2, 3}
    with pytest.raises(MatgenInputError):
        synthetic_microstructure((8,), n_phases=3)


def test_example_asset_matches_generator():
    m = read_micrograph(ROOT / "assets" / "example_electrode.png")
    assert (m.kind, m.shape, m.phase_values) == ("nphase", (256, 256), [0, 127, 255])
    regenerated = synthetic_microstructure((256, 256), n_phases=3, feature_size=10, seed=0)
    assert np.array_equal(m.labels, regenerated)


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared example data not present")
def test_shared_examples():
    m = read_micrograph(SHARED / "micro017.png")
    assert (m.kind, m.n_phases, m.phase_values) == ("nphase", 2, [0, 255])
    m = read_micrograph(SHARED / "micro007.png")
    assert m.kind == "gray" and m.shape == (500, 500)
    with pytest.raises(MatgenInputError, match="126 grey levels"):
        require_phases(m)
    m = read_micrograph(SHARED / "electrode.tiff")
    assert (m.kind, m.ndim, m.shape, m.phase_values) == ("nphase", 3, (256, 256, 256), [0, 85, 170])
    fractions = np.bincount(m.labels.ravel(), minlength=3) / m.labels.size
    assert np.allclose(fractions, [0.45, 0.40, 0.15], atol=0.01)
