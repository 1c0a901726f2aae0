"""Length units: the spellings found in TIFF metadata and user input, mapped to one short name."""
from __future__ import annotations

# spelling (lower case) -> canonical unit; "px" means uncalibrated (lengths in pixels)
UNIT_ALIASES = {
    "micron": "um", "microns": "um", "micrometer": "um", "micrometre": "um", "um": "um",
    "\u00b5m": "um", "\u03bcm": "um", "\\u00b5m": "um",
    "nanometer": "nm", "nanometre": "nm", "nm": "nm", "millimeter": "mm", "millimetre": "mm", "mm": "mm",
    "pixel": "px", "pixels": "px", "px": "px", "": "px",
}


def canonical_unit(unit) -> str:
    """The short name of ``unit`` ("micron" -> "um", "" -> "px"); an unknown unit is returned as given."""
    return UNIT_ALIASES.get(str(unit).lower(), str(unit))
