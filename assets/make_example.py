"""Generate the default example micrograph, assets/example_electrode.png.

    python assets/make_example.py

A 256x256, 3-phase, battery-electrode-like image made by
``matgen_core.synthetic.synthetic_microstructure`` with a fixed seed: pores (grey value 0),
active-material particles of 8-14 px diameter (127) and a thin binder film on the particles (255).
The output is deterministic, so running the script again reproduces the committed file.
"""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, without installing the package

from matgen_core.io import to_bytes  # noqa: E402
from matgen_core.synthetic import synthetic_microstructure  # noqa: E402

OUT = ROOT / "assets" / "example_electrode.png"
GREY_LEVELS = np.array([0, 127, 255], dtype=np.uint8)  # pore, particle, binder


def make_example() -> np.ndarray:
    """The example image as uint8 grey levels 0/127/255, shape (256, 256)."""
    labels = synthetic_microstructure((256, 256), n_phases=3, feature_size=10, seed=0)
    return GREY_LEVELS[labels]


if __name__ == "__main__":
    OUT.write_bytes(to_bytes(make_example(), "png"))
    print(f"wrote {OUT.relative_to(ROOT)}")
