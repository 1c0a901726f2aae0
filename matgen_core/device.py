"""Pick the compute device: CUDA, then Apple MPS, then CPU."""
from __future__ import annotations

import torch

from .errors import MatgenInputError


def pick_device(name: str = "auto") -> torch.device:
    """Return a torch.device for ``name`` ("auto", "cpu", "cuda", "cuda:1", "mps").

    "auto" takes CUDA when present, then MPS, then CPU. Asking for a device that is not there
    raises MatgenInputError saying which devices are.
    """
    name = (name or "auto").lower()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if has_mps:
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MatgenInputError("CUDA was requested but no CUDA GPU is visible; use --device auto or cpu.")
    if name == "mps" and not has_mps:
        raise MatgenInputError("MPS was requested but is not available here; use --device auto or cpu.")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise MatgenInputError(f"Unknown device '{name}'; choose auto, cpu, cuda or mps.")
    return torch.device(name)
