"""Typed, range-checked hyperparameters: a bad setting is named before anything is written.

:func:`check_model_config` is called by :func:`matgen_core.runs.create_run` on the preset merged
with the user's overrides (``--set key=value`` in the CLI, the Train page's form). Each value
must have the type of the preset's default (an int setting takes an int, a float setting any
finite number, a list setting a list of numbers of the right length) and lie in its range;
then the networks are built once on the CPU without data, so settings that do not fit together
(``img_size`` that the generator cannot make, a layer list of the wrong length) are reported
with the key names instead of a traceback from inside torch. :func:`check_images_fit` checks
that the training images are at least one crop (``img_size``) a side.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

from .errors import MatgenInputError

# value ranges: key -> (low, high, low_inclusive, high_inclusive); None = unbounded
_RANGES = {
    "lr": (0, 1, False, True), "lr_g": (0, 1, False, True), "lr_d": (0, 1, False, True),
    "gp_lambda": (0, None, True, True), "fraction_weight": (0, None, True, True),
    "stationarity_weight": (0, None, True, True), "volume_fraction_weight": (0, None, True, True),
    "s2_weight": (0, None, True, True), "interface_weight": (0, None, True, True),
    "isotropy_weight": (0, None, True, True), "opening_weight": (0, None, True, True),
    "euler_weight": (0, None, True, True), "corner_weight": (0, None, True, True),
    "interface_start": (0, None, True, True),
    "beta": (0, None, True, True), "gamma": (0, None, True, True),
    "pixel_weight": (0, None, True, True), "ema_decay": (0, 1, True, False),
    "fraction_range": (0, 1, False, True),
    "steps": (1, None, True, True), "batch_size": (1, 4096, True, True),
    "real_batch": (1, 4096, True, True), "critic_iters": (1, 100, True, True),
    "critic_slices": (1, 4096, True, True), "nz": (1, 4096, True, True),
    "lz": (1, 64, True, True), "img_size": (4, 1024, True, True),
    "ngf": (1, 4096, True, True), "ndf": (1, 4096, True, True),
}
# list settings: key -> (element low bound, element high bound)
_LIST_RANGES = {
    "gen_channels": (1, 4096), "critic_channels": (1, 4096), "channels": (1, 4096),
    "gen_kernels": (1, 16), "critic_kernels": (1, 16), "gen_strides": (1, 8),
    "critic_strides": (1, 8), "gen_paddings": (0, 16), "critic_paddings": (0, 16),
}
_CHOICES = {"norm": ("batch", "instance", "none"), "loss": ("bce", "wgan-gp"),
            "precision": ("fp32", "bf16", "fp16"), "gen_upsample": ("transposed", "resize")}
_BETAS = ("betas", "betas_d")
_NULLABLE = ("critic_slices", "nz")  # null means "all slices" / "img_size / 2" (a preset's default)


def _fail(key: str, what: str, value) -> None:
    raise MatgenInputError(f"Setting {key}={_show(value)} is invalid: {what}; change {key} (on "
                           f"the Train page's form, or --set {key}=... on the command line).")


def _show(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _check_range(key: str, value) -> None:
    low, high, low_in, high_in = _RANGES[key]
    ok = ((low is None or (value >= low if low_in else value > low))
          and (high is None or (value <= high if high_in else value < high)))
    if not ok:
        lo = "" if low is None else (f">= {low}" if low_in else f"> {low}")
        hi = "" if high is None else (f"<= {high}" if high_in else f"< {high}")
        _fail(key, "it must be " + " and ".join(x for x in (lo, hi) if x), value)


def check_value(key: str, value, default):
    """Check one setting against its preset ``default`` (type) and its range; return it.

    Integral floats such as 4.0 are not accepted for int settings (say 4); ints are accepted for
    float settings. Raises MatgenInputError naming ``key``.
    """
    if isinstance(default, bool):
        if not isinstance(value, bool):
            _fail(key, "it must be true or false", value)
        return value
    if value is None and (default is None or key in _NULLABLE):
        return value
    if default is None:  # optional int (nz of the 2D GAN, critic_slices): None or a positive int
        if not _is_int(value):
            _fail(key, "it must be a whole number or null", value)
    elif _is_int(default):
        if not _is_int(value):
            _fail(key, "it must be a whole number", value)
    elif isinstance(default, float):
        if not _is_number(value):
            _fail(key, "it must be a number", value)
        if not math.isfinite(value):
            _fail(key, "it must be a finite number", value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            _fail(key, "it must be text", value)
        if key in _CHOICES and value not in _CHOICES[key]:
            _fail(key, f"choose one of {', '.join(_CHOICES[key])}", value)
        return value
    elif isinstance(default, list):
        if not isinstance(value, list) or not all(_is_number(v) for v in value):
            _fail(key, f"it must be a list of numbers like {default}", value)
        if key in _BETAS:
            if len(value) != 2 or not all(math.isfinite(v) and 0 <= v < 1 for v in value):
                _fail(key, "it must be two numbers in [0, 1), like [0.5, 0.9]", value)
        elif key in _LIST_RANGES:
            low, high = _LIST_RANGES[key]
            if not value:
                _fail(key, "it must not be empty", value)
            if not all(_is_int(v) and low <= v <= high for v in value):
                _fail(key, f"it must be a list of whole numbers from {low} to {high}", value)
        return value
    if key in _RANGES and _is_number(value):
        _check_range(key, value)
    return value


def check_model_config(model: str, config: dict, defaults: dict, build: bool = True,
                       changed=()) -> dict:
    """Check every setting of ``config`` against ``defaults`` (the preset) and build the nets.

    ``config`` is the preset merged with overrides plus ``kind``, ``n_phases``, ``num_images``.
    ``build``: also build the model once on the CPU without data (settings that do not fit
    together fail here, with the settings named). ``changed``: the keys the user set (named
    first when the built model rejects the combination). Returns ``config``; raises
    MatgenInputError.
    """
    for key, default in defaults.items():
        if key in config:
            check_value(key, config[key], default)
    _check_layer_lists(config)
    if build:
        _build(model, config, list(changed))
    return config


def _check_layer_lists(c: dict) -> None:
    for net in ("gen", "critic"):
        keys = [f"{net}_{p}" for p in ("kernels", "strides", "paddings")]
        if all(k in c for k in keys + [f"{net}_channels"]):
            n = len(c[f"{net}_channels"]) + 1
            for k in keys:
                if len(c[k]) != n:
                    raise MatgenInputError(
                        f"Settings {net}_channels and {k} do not fit together: {net}_channels lists "
                        f"{n - 1} hidden layer widths, so {k} needs {n} values (one per layer), got "
                        f"{len(c[k])}; change them together with --set.")


def _build(model: str, config: dict, changed: list) -> None:
    import torch

    from .models import trainer_class

    try:
        with torch.device("meta"):  # shapes only: no memory, no time
            trainer_class(model).create(dict(config), None, torch.device("meta"))
    except MatgenInputError as err:
        raise MatgenInputError(f"These settings do not work for {model}: {err}") from None
    except (ValueError, RuntimeError, TypeError, IndexError, KeyError, ZeroDivisionError) as err:
        keys = [k for k in changed if k in config] or [k for k in ("img_size", "lz") if k in config]
        raise MatgenInputError(
            f"These settings do not work together for {model} ({' '.join(str(err).split())}); "
            f"change {', '.join(keys)} (or leave {'it' if len(keys) == 1 else 'them'} at the "
            f"preset's value).") from None


def check_images_fit(model: str, config: dict, shapes: list[tuple[int, ...]], sources=()) -> None:
    """Raise MatgenInputError unless every training image is at least ``img_size`` a side.

    ``shapes``: spatial shapes (H, W) or (Z, Y, X) of the training images (``Micrograph.shape``).
    """
    crop = config.get("img_size")
    if not _is_int(crop):
        return
    for k, shape in enumerate(shapes):
        name = sources[k] if k < len(sources) and sources[k] else f"image {k + 1}"
        size = "x".join(map(str, shape))
        if min(shape) < crop:  # a volume: crops are cut from planes along all three axes
            raise MatgenInputError(
                f"The training image {name} is {size} px but training crops are {crop}x{crop} px; "
                f"use an image of at least {crop} px a side, or a smaller crop (--set img_size=...).")
        if config.get("critic_diagonal") and len(shape) == 2:
            from .data import diagonal_orientations, diagonal_span

            if not diagonal_orientations(shape, crop):
                raise MatgenInputError(
                    f"The training image {name} is {size} px but critic_diagonal "
                    f"needs {diagonal_span(crop)} px along one side for {crop} px crops (their columns lie sqrt(2) "
                    f"apart); use a larger image, a smaller crop (img_size), or critic_diagonal=false.")
