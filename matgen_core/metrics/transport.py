"""Transport: tortuosity factor and relative effective diffusivity of one phase (taufactor)."""
from __future__ import annotations

import contextlib
import math
import sys
import threading
from typing import Callable

import numpy as np

from ..errors import MatgenInputError
from ._common import MetricCancelled, _check_phase, _prepare
from .connectivity import _percolating_fraction


def tortuosity(labels, phase: int, axis: int = 0, progress: Callable | None = None,
               should_stop: Callable[[], bool] | None = None, device="cpu",
               max_iter: int = 10000, conv_crit: float = 1e-2, chunk: int = 100,
               n_phases: int | None = None) -> dict:
    """Tortuosity factor of one phase for flux along ``axis``, via taufactor's SOR solver.

    The phase is the conducting phase (all others insulating); Dirichlet boundaries on the two
    faces perpendicular to ``axis``, no-flux on the others. taufactor is an optional dependency
    (``pip install 'matgen-studio[tortuosity]'``, included in the app extra); without it a
    percolating phase raises :class:`~matgen_core.errors.MatgenInputError` saying so.

    Args:
        phase, axis: conducting phase and flux direction.
        progress: optional ``progress(fraction, iteration)`` callback, called after every chunk of
            iterations with ``fraction`` in 0..1 (an estimate from the convergence error, never
            decreasing, 1.0 at the end) and the iteration count.
        should_stop: optional ``should_stop() -> bool``; checked before every chunk. When it
            returns True, :class:`MetricCancelled` is raised (nothing is returned).
        device: torch device for the solver ("cpu", "cuda", ...).
        max_iter: iteration budget; when reached, the result has ``converged=False``.
        conv_crit: taufactor's convergence criterion (relative spread of the layer fluxes).
        chunk: iterations between progress/cancel checks (a multiple of 100, taufactor's
            convergence-check cadence).

    Returns:
        dict ``{"tau": float, "D_eff": float, "converged": bool, "iterations": int,
        "phase_fraction": float, "percolating_fraction": float, "axis": int}``.
        ``D_eff`` is the relative effective diffusivity ``phase_fraction / tau`` (D_eff/D_0).
        A phase that does not connect the two faces gets ``tau = inf``, ``D_eff = 0`` without
        running the solver.
    """
    a, n = _prepare(labels, n_phases)
    p = _check_phase(phase, n)
    ax = int(axis)
    if not -a.ndim <= ax < a.ndim:
        raise MatgenInputError(f"axis={axis} is out of range for a {a.ndim}D image; use 0..{a.ndim - 1}.")
    ax %= a.ndim
    chunk = max(100, int(chunk) // 100 * 100)
    mask = np.ascontiguousarray(np.moveaxis(a == p, ax, 0)).astype(np.uint8)
    vf = float(mask.mean())
    perc = float(_percolating_fraction(mask.astype(bool), [0])[0])
    result = {"tau": math.inf, "D_eff": 0.0, "converged": True, "iterations": 0,
              "phase_fraction": vf, "percolating_fraction": perc, "axis": ax}
    if should_stop is not None and should_stop():
        raise MetricCancelled("tortuosity cancelled")
    if perc == 0.0:
        if progress is not None:
            progress(1.0, 0)
        return result
    if vf == 1.0:
        result.update(tau=1.0, D_eff=1.0)
        if progress is not None:
            progress(1.0, 0)
        return result

    solver = _new_solver(mask, device)
    err0 = None
    shown = 0.0
    while not solver.converged and solver.iter < max_iter:
        if should_stop is not None and should_stop():
            raise MetricCancelled("tortuosity cancelled")
        # public API only: solve() resumes from solver.iter up to iter_limit. It prints a "not
        # converged" line after every unconverged chunk, which this thread's quiet_stdout swallows
        with quiet_stdout():
            solver.solve(iter_limit=min(solver.iter + chunk, max_iter), verbose=False,
                         conv_crit=conv_crit)
        if progress is not None and not solver.converged:
            frac = solver.iter / max_iter
            err = _flux_spread(solver)
            if err is not None:
                if err0 is None:
                    err0 = max(err, conv_crit * 1.0001)
                if err > 0 and err0 > conv_crit:
                    frac = max(frac, math.log(err0 / max(err, conv_crit)) / math.log(err0 / conv_crit))
            shown = max(shown, min(0.99, frac))
            progress(shown, int(solver.iter))
    tau_v = float(np.asarray(solver.tau).ravel()[0]) if solver.tau is not None else math.nan
    d_eff = float(np.asarray(solver.D_eff).ravel()[0]) if solver.D_eff is not None else math.nan
    if not math.isfinite(tau_v) or tau_v <= 0:
        tau_v, d_eff = math.inf, 0.0
    result.update(tau=tau_v, D_eff=d_eff, converged=bool(solver.converged), iterations=int(solver.iter))
    if progress is not None:
        progress(1.0, int(solver.iter))
    return result


class _ThreadQuietStdout:
    """A stand-in for ``sys.stdout`` that drops what the threads in ``quiet`` write and passes
    everything else to ``target`` (the stdout it replaced); other attributes are the target's."""

    def __init__(self, target):
        self.target = target
        self.quiet: dict[int, int] = {}  # thread id -> nesting depth

    def write(self, text):
        if threading.get_ident() in self.quiet or self.target is None:
            return len(text)
        return self.target.write(text)

    def flush(self):
        if self.target is not None:
            self.target.flush()

    def __getattr__(self, name):
        return getattr(self.target, name)


_quiet_lock = threading.Lock()


@contextlib.contextmanager
def quiet_stdout():
    """Drop what the calling thread prints; other threads' prints go through as before.

    Why not simply ``contextlib.redirect_stdout``: taufactor 1.2.1's ``solve()`` prints
    "Warning: not converged" whenever a call ends unconverged, whatever ``verbose`` says, and has
    no logger to silence; we call it in chunks (progress, cancel), so every chunk but the last
    prints. ``redirect_stdout`` would swap ``sys.stdout`` for the whole process: in the app's
    server other threads' output in that window would be lost, and two concurrent measurements
    could restore each other's buffer as stdout for good. Here ``sys.stdout`` is wrapped (under a
    lock) by a filter keyed on the thread while at least one quiet block is active, and the
    original is put back when the last one ends (unless someone replaced it meanwhile).
    """
    me = threading.get_ident()
    with _quiet_lock:
        router = sys.stdout
        if not isinstance(router, _ThreadQuietStdout):
            router = sys.stdout = _ThreadQuietStdout(sys.stdout)
        router.quiet[me] = router.quiet.get(me, 0) + 1
    try:
        yield
    finally:
        with _quiet_lock:
            router.quiet[me] -= 1
            if not router.quiet[me]:
                del router.quiet[me]
            if not router.quiet and sys.stdout is router:
                sys.stdout = router.target


def _new_solver(mask: np.ndarray, device):
    """taufactor's two-phase SOR solver for ``mask`` (1 = conducting), flux along axis 0."""
    try:
        import taufactor
    except ImportError:
        raise MatgenInputError(
            "Tortuosity needs the optional package taufactor, which is not installed; install it "
            "with: pip install 'matgen-studio[tortuosity]' (from a checkout: pip install -e "
            "'.[tortuosity]').") from None
    return taufactor.Solver(mask, device=device)


def _flux_spread(solver) -> float | None:
    """The solver's convergence error (relative spread of the layer fluxes), for the progress
    estimate only; None when this taufactor version does not expose it."""
    try:
        return float(np.max(np.abs(solver.compute_metrics()[1])))
    except Exception:   # progress estimate only: never fail the measurement for it
        return None
