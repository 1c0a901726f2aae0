"""MatGen core: micrographs in, statistically equivalent 2D images and 3D volumes out.

Plain Python + PyTorch, usable from a notebook; the Streamlit app and the `matgen` CLI call it.
"""
__version__ = "0.1.0"

from .errors import MatgenInputError  # noqa: F401
