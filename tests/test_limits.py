"""Input and output size limits (limits.py, io/read.py): checked before anything big is made."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile
from PIL import Image

from matgen_core import cli, limits
from matgen_core.errors import MatgenInputError
from matgen_core.io import read_micrograph, read_volume


def _bomb_tiff(path, side=20480, tile=1024):
    """A zlib-compressed side x side uint8 TIFF written tile by tile (a few MB on disk)."""
    pattern = np.zeros((tile, tile), np.uint8)
    pattern[:, ::7] = 255
    tiles = (pattern for _ in range((side // tile) ** 2))
    tifffile.imwrite(path, tiles, shape=(side, side), dtype=np.uint8, tile=(tile, tile),
                     compression="zlib", compressionargs={"level": 1})
    return path


MEASURE = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "matgen_core.cli", *sys.argv[1:]], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # this wrapper's only child: the CLI
    print(json.dumps(dict(rc=p.returncode, stderr=p.stderr, stdout=p.stdout, wall_s=wall,
                          cpu_s=ru.ru_utime + ru.ru_stime, peak_rss_mb=ru.ru_maxrss / 1024)))
""")


def test_compressed_20480_tiff_is_refused_fast_with_little_memory(tmp_path):
    import json

    big = _bomb_tiff(tmp_path / "bomb.tif")
    assert big.stat().st_size < 20e6
    proc = subprocess.run([sys.executable, "-c", MEASURE, "train", "slicegan", str(big), "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    m = json.loads(proc.stdout)
    print(f"20480^2 TIFF refused: wall {m['wall_s']:.2f} s, cpu {m['cpu_s']:.2f} s, "
          f"peak RSS {m['peak_rss_mb']:.0f} MB")
    assert m["rc"] == 2
    lines = m["stderr"].strip().splitlines()
    assert len(lines) == 1 and "20480x20480" in lines[0] and "MATGEN_MAX_PIXELS" in lines[0]
    assert "Traceback" not in m["stderr"]
    assert m["peak_rss_mb"] < 500
    # CPU seconds do not depend on how busy the shared test machine is; the wall time does
    assert m["cpu_s"] < 2.0
    assert m["wall_s"] < 10.0
    assert not (tmp_path / "run").exists()


def _files(tmp_path, side=120):
    labels = (np.indices((side, side)).sum(0) % 9 < 4).astype(np.uint8)
    png = tmp_path / "a.png"
    Image.fromarray(labels * 255).save(png)
    tif = tmp_path / "a.tif"
    tifffile.imwrite(tif, labels)
    npy = tmp_path / "a.npy"
    np.save(npy, labels)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([labels] * 5), photometric="minisblack")
    rgb = tmp_path / "rgb.npy"
    np.save(rgb, np.stack([labels * 255] * 3, axis=-1))
    return png, tif, npy, stack, rgb


def test_pixel_limit_for_every_format_parameter_and_env(tmp_path, monkeypatch):
    png, tif, npy, stack, rgb = _files(tmp_path)
    for path in (png, tif, npy, rgb):
        assert read_micrograph(path, max_pixels=120 * 120).shape == (120, 120)
        with pytest.raises(MatgenInputError, match="120x120 = 0.0 million pixels"):
            read_micrograph(path, max_pixels=120 * 120 - 1)
    with pytest.raises(MatgenInputError, match="5x120x120"):  # a stack counts its voxels
        read_micrograph(stack, max_pixels=120 * 120 * 4)
    monkeypatch.setenv("MATGEN_MAX_PIXELS", "10000")
    for path in (png, tif, npy, stack):
        with pytest.raises(MatgenInputError, match="MATGEN_MAX_PIXELS"):
            read_micrograph(path)
    with pytest.raises(MatgenInputError, match="million pixels"):
        read_volume(stack)
    monkeypatch.setenv("MATGEN_MAX_PIXELS", "lots")
    with pytest.raises(MatgenInputError, match="MATGEN_MAX_PIXELS='lots'"):
        read_micrograph(png)
    monkeypatch.delenv("MATGEN_MAX_PIXELS")
    assert limits.max_pixels() == limits.DEFAULT_MAX_PIXELS >= 512**3  # a 512^3 volume is fine


def test_pillow_bomb_check_gives_our_message(tmp_path, monkeypatch):
    """Beyond Pillow's own bomb limit the message still says what to do (no DecompressionBombError)."""
    png, *_ = _files(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above 2x this
    with pytest.raises(MatgenInputError, match="too many pixels"):
        read_micrograph(png, max_pixels=10**9)


def test_output_must_fit_on_disk_and_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "free_disk_bytes", lambda path: 10 * 10**9)
    with pytest.raises(MatgenInputError, match="about 125 GB on disk but only 10 GB is free"):
        limits.check_output_fits(tmp_path / "v.tif", 5000**3, what="A 5000^3 volume")
    monkeypatch.setattr(limits, "free_memory_bytes", lambda: 2 * 10**9)
    with pytest.raises(MatgenInputError, match="8 GB of memory"):
        limits.check_output_fits(tmp_path / "v.vti", 4 * 10**9, 8 * 10**9)
    limits.check_output_fits(tmp_path / "v.vti", 10**9, 10**9)


def test_generate_refuses_a_5000_cube_tif_that_does_not_fit(tmp_path, monkeypatch, capsys):
    """The CLI checks the output's size against the free disk before generating anything."""
    import json as _json

    from conftest import TINY_SLICEGAN, blobs

    img = tmp_path / "blobs.png"
    Image.fromarray((blobs(64) * 255).astype(np.uint8)).save(img)
    sets = []
    for k, v in TINY_SLICEGAN.items():
        sets += ["--set", f"{k}={_json.dumps(v)}"]
    run = tmp_path / "run"
    assert cli.main(["train", "slicegan", str(img), "--out", str(run), "--steps", "1", "--quiet", *sets]) == 0
    capsys.readouterr()
    monkeypatch.setattr(limits, "free_disk_bytes", lambda path: 77 * 10**9)
    out = tmp_path / "big.tif"
    assert cli.main(["generate", str(run), "--out", str(out), "--size", "5000"]) == 2
    err = capsys.readouterr().err.strip()
    assert "5000x5000x5000" in err and "125 GB on disk" in err and "77 GB" in err
    assert len(err.splitlines()) == 1 and not out.exists()
