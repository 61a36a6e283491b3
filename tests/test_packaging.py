"""Packaging: licence texts, the build backend's refusal without Rust, an installed wheel."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tickwire as tw

ROOT = Path(__file__).resolve().parents[1]
BACKEND = ROOT / "build_backend"


def _path_without_rust() -> str:
    keep = [
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not (Path(d, "cargo").exists() or Path(d, "rustc").exists())
    ]
    return os.pathsep.join([str(Path(sys.executable).parent), *keep])


def _backend_call(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "MATURIN_NO_INSTALL_RUST"}
    full.update(PATH=_path_without_rust(), **env)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=full,
        cwd=ROOT,
        check=False,
    )


needs_source = pytest.mark.skipif(
    not BACKEND.is_dir() or importlib.util.find_spec("maturin") is None,
    reason="needs the source tree and maturin (not the installed-wheel pass)",
)


@needs_source
def test_plain_maturin_would_download_rust_without_cargo() -> None:
    """Why the wrapper exists: maturin's own backend asks for a toolchain installer."""
    r = _backend_call("import maturin; print(maturin.get_requires_for_build_wheel())")
    assert r.returncode == 0, r.stderr
    assert "puccinialin" in r.stdout


@needs_source
def test_building_without_cargo_fails_at_once_with_a_message(tmp_path: Path) -> None:
    code = (
        "import sys; sys.path.insert(0, 'build_backend'); import tickwire_backend as b; "
        f"print('requires', b.get_requires_for_build_wheel()); b.build_wheel({str(tmp_path)!r})"
    )
    r = _backend_call(code)
    assert r.returncode == 1
    assert "requires []" in r.stdout, "no toolchain installer requested"
    assert "building from source needs Rust" in r.stderr
    assert "pip install --only-binary tickwire tickwire" in r.stderr
    assert "Rust not found, installing" not in r.stdout + r.stderr
    assert list(tmp_path.iterdir()) == []


@needs_source
def test_pyproject_uses_the_wrapper_and_ships_the_licences() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'build-backend = "tickwire_backend"' in text
    assert 'backend-path = ["build_backend"]' in text
    assert 'license-files = ["LICENSE-MIT", "LICENSE-APACHE"]' in text
    assert "Permission is hereby granted" in (ROOT / "LICENSE-MIT").read_text()
    assert "Apache License" in (ROOT / "LICENSE-APACHE").read_text()


def test_an_installed_wheel_carries_both_licences() -> None:
    if "site-packages" not in tw.__file__:
        pytest.skip("tickwire runs from the source tree (editable), not from a wheel")
    files = importlib.metadata.files("tickwire") or []
    names = {Path(str(f)).name for f in files if "licenses" in str(f)}
    assert {"LICENSE-MIT", "LICENSE-APACHE"} <= names
    meta = importlib.metadata.metadata("tickwire")
    assert meta["License-Expression"] == "MIT OR Apache-2.0"
