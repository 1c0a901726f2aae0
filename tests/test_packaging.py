"""Packaging (issue #17): the core installs and imports without the app stack, taufactor's
version is in the tested range. The fresh-venv install check is .ci/check_core_install.sh."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UI_LIBS = ("streamlit", "pyvista", "vtk", "trame", "plotly")
APP_STACK = ("streamlit", "plotly", "pyvista", "stpyvista", "trame-pyvista", "nest_asyncio2")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_importing_the_core_loads_no_ui_or_rendering_library():
    code = (
        "import importlib, os, pkgutil, sys\n"
        "import matgen_core\n"
        "names = [m.name for m in pkgutil.walk_packages(matgen_core.__path__, 'matgen_core.')]\n"
        "assert 'matgen_core.metrics.report' in names and 'matgen_core.models.slicegan' in names\n"
        "for n in names:\n"
        "    if n != 'matgen_core.render':\n"
        "        importlib.import_module(n)\n"
        f"bad = sorted({{n.split('.')[0] for n in sys.modules}} & set({UI_LIBS!r}))\n"
        "print('BAD', bad)\n"
        "print('VTK', os.environ.get('VTK_DEFAULT_OPENGL_WINDOW'))\n"
        "print('RENDER', 'matgen_core.render' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "VTK_DEFAULT_OPENGL_WINDOW"}
    env["PYTHONPATH"] = str(ROOT)
    env.pop("DISPLAY", None)   # render.py sets the VTK variable only without a display
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "BAD []" in out.stdout, out.stdout
    assert "VTK None" in out.stdout, out.stdout
    assert "RENDER False" in out.stdout, out.stdout


def test_render_module_is_what_sets_the_vtk_variable():
    # the check above would pass vacuously if nothing ever set it: importing render does
    code = "import os, matgen_core.render; print(os.environ.get('VTK_DEFAULT_OPENGL_WINDOW'))"
    env = {k: v for k, v in os.environ.items() if k not in ("VTK_DEFAULT_OPENGL_WINDOW", "DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "vtkEGLRenderWindow"


def test_core_dependencies_exclude_the_app_stack():
    project = _pyproject()["project"]
    core = {_name(r) for r in project["dependencies"]}
    assert {"torch", "numpy", "scipy", "scikit-image", "tifffile", "pillow"} <= core
    assert not core & {"streamlit", "plotly", "pyvista", "stpyvista", "trame-pyvista",
                       "nest-asyncio2", "taufactor", "vtk"}
    extras = project["optional-dependencies"]
    app = {_name(r) for r in extras["app"]}
    assert {n.replace("_", "-") for n in APP_STACK} <= app
    assert any(r.startswith("matgen-studio[") and "tortuosity" in r for r in extras["app"])
    assert any(r.startswith("matgen-studio[") and "app" in r for r in extras["test"])
    assert "pytest" in {_name(r) for r in extras["test"]}


def test_installed_taufactor_is_in_the_tested_range():
    specifiers = pytest.importorskip("packaging.specifiers")
    pytest.importorskip("taufactor")
    reqs = [r for r in _pyproject()["project"]["optional-dependencies"]["tortuosity"]
            if _name(r) == "taufactor"]
    assert len(reqs) == 1
    spec = specifiers.SpecifierSet(reqs[0][len("taufactor"):].strip())
    assert "<" in str(spec), "taufactor must have an upper bound (only tested versions)"
    version = metadata.version("taufactor")
    assert version in spec, f"installed taufactor {version} is outside the tested range {spec}"


def test_tortuosity_without_taufactor_says_how_to_install_it():
    # a core-only install has no taufactor: the error must say what to install
    code = (
        "import sys, numpy as np\n"
        "sys.modules['taufactor'] = None   # as if not installed\n"
        "from matgen_core.errors import MatgenInputError\n"
        "from matgen_core.metrics import tortuosity\n"
        "a = np.zeros((8, 8, 8), np.uint8); a[:, 2:6, 2:6] = 1\n"
        "a[:, 3, 3] = 0\n"
        "try:\n"
        "    tortuosity(a, 1, 0)\n"
        "except MatgenInputError as e:\n"
        "    print('ERR', e)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ERR" in out.stdout and "matgen-studio[tortuosity]" in out.stdout, out.stdout


def test_core_modules_stay_small():
    # one idea per module (issue #17): the metrics and io packages replaced a 1,300-line
    # metrics.py and an 893-line io.py; slicegan.py was 847 lines
    paths = sorted((ROOT / "matgen_core").rglob("*.py"))
    assert {"io/read.py", "metrics/report.py", "models/slicegan.py"} <= {
        p.relative_to(ROOT / "matgen_core").as_posix() for p in paths}
    too_long = {p.relative_to(ROOT).as_posix(): n for p in paths
                if (n := len(p.read_text().splitlines())) > 600}
    assert not too_long, f"files over 600 lines: {too_long}"
