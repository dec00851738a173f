"""Packaging: what `pip install .` ships works from anywhere, leaves nothing inside the installed
package when it runs, and a later `pip install -e .` over it still imports the real package."""
import os
import shutil
import subprocess
import sys
import sysconfig
import venv

import pytest

import fastgrok as fg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_USE = """
import fastgrok as fg, os, sys
cfg = fg.Config(n=8, p=300, m=4, n_test=6, steps=3, runs=1, lr=1e-3, init_scale=1e-3,
                representation="full")
for method in ("direct", "gram"):
    fg.run(cfg.replace(method=method, backend="numba"), progress=False)
print(os.path.dirname(fg.__file__), fg.__version__, callable(fg.fit))
"""


def _pip(python, *args, cwd):
    done = subprocess.run([python, "-m", "pip", "--disable-pip-version-check", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.slow
def test_install_run_then_editable_reinstall_imports_from_anywhere(tmp_path):
    # A virtual environment whose site-packages sees this one's dependencies (numpy, numba, pip,
    # setuptools) through a .pth file, but not this checkout's own install of fastgrok.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    site = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    parents = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    with open(os.path.join(site, "_parent_env.pth"), "w") as fh:
        fh.write("\n".join(sorted(parents)) + "\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONNOUSERSITE="1")
    env.pop("NUMBA_CACHE_DIR", None)
    env.pop("FASTGROK_CACHE_DIR", None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def use():
        done = subprocess.run([python, "-c", _USE], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    # 1. A regular (non-editable) install, used from another folder: the kernels compile and
    #    their cache lands in the user cache folder, not inside site-packages.
    wheels = tmp_path / "wheels"
    had_build = os.path.exists(os.path.join(ROOT, "build"))
    try:
        _pip(python, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), ROOT,
             cwd=tmp_path)
    finally:  # setuptools builds in the checkout; leave it as it was
        if not had_build:
            shutil.rmtree(os.path.join(ROOT, "build"), ignore_errors=True)
    (wheel,) = os.listdir(wheels)
    _pip(python, "install", "--no-deps", "--no-index", str(wheels / wheel), cwd=tmp_path)
    where, version, fit_ok = use()
    assert where == os.path.join(site, "fastgrok") and version == fg.__version__ and fit_ok == "True"
    cached = [f for _, _, files in os.walk(os.path.join(site, "fastgrok")) for f in files
              if f.endswith((".nbi", ".nbc"))]
    assert not cached, f"Numba cache files inside the installed package: {cached}"
    assert any(f.endswith(".nbi") for _, _, files in os.walk(tmp_path / "cache") for f in files)
    dist_info = os.path.join(site, f"fastgrok-{fg.__version__}.dist-info")
    assert any(f == "LICENSE" for _, _, files in os.walk(dist_info) for f in files)
    with open(os.path.join(dist_info, "METADATA")) as fh:
        assert "License-Expression: BSD-3-Clause" in fh.read()
    # 2. Reinstalled editable over it: nothing of the old install shadows the checkout.
    _pip(python, "install", "--no-deps", "--no-build-isolation", "-e", ROOT, cwd=tmp_path)
    assert not os.path.exists(os.path.join(site, "fastgrok")), os.listdir(os.path.join(site, "fastgrok"))
    where, _, fit_ok = use()
    assert where == os.path.join(ROOT, "fastgrok") and fit_ok == "True"


def test_the_version_is_defined_once():
    """pyproject.toml holds the version; the package reads it from the installed metadata."""
    with open(os.path.join(ROOT, "pyproject.toml")) as fh:
        text = fh.read()
    assert text.count("\nversion = ") == 1
    with open(os.path.join(ROOT, "fastgrok", "__init__.py")) as fh:
        init = fh.read()
    assert "__version__ = _metadata.version(\"fastgrok\")" in init
    from importlib.metadata import version

    assert version("fastgrok") == fg.__version__
    assert f'version = "{fg.__version__}"' in text


@pytest.mark.slow  # a subprocess
def test_the_benchmarks_are_collected_by_the_readme_command():
    """`python -m pytest bench/ --benchmark-group-by=param:size` must find the comparisons."""
    done = subprocess.run([sys.executable, "-m", "pytest", "bench/", "--collect-only", "-q",
                           "--benchmark-group-by=param:size", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [ln for ln in done.stdout.splitlines() if "::test_" in ln]
    for name in ("bench_direct.py", "bench_gram.py", "bench_reduced.py"):
        assert any(name in ln for ln in collected), (name, done.stdout)


def test_bench_sizes_take_any_nxmxp():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        from _engines import parse_size
    finally:
        sys.path.pop(0)
    assert parse_size("400x1000x1M") == (400, 1000, 10**6)
    assert parse_size("64x128x3e6") == (64, 128, 3 * 10**6)
    assert parse_size("2x3x40k") == (2, 3, 40_000)
    for bad in ("400x1000", "ax2x3", "1.5x2x3"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)


@pytest.mark.slow
def test_the_gpu_check_runs_its_whole_logic_here():
    """`python bench/gpu_check.py --logic`: the first GPU lease must not be spent debugging it."""
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gpu_check.py"), "--logic"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "the check's logic runs" in done.stdout
    assert done.stdout.count("CONFIRMED:") >= 3 and "NOT CONFIRMED" not in done.stdout
