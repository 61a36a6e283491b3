"""tickwire's PEP 517 build backend: maturin's, without its automatic Rust download.

When ``cargo`` is missing, maturin's backend fetches a whole Rust toolchain (hundreds of MB)
into the user's cache and compiles for minutes. A user installing tickwire from source on a
machine without Rust should instead learn at once that a prebuilt wheel or Rust is needed.
``MATURIN_NO_INSTALL_RUST`` is maturin's own switch for that (read by ``maturin/__init__.py``);
it is set here unless the environment sets it, and every hook that compiles checks for cargo
first, with a message that says what to do.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

os.environ.setdefault("MATURIN_NO_INSTALL_RUST", "1")

import maturin  # noqa: E402 -- after the switch above, which maturin reads on each call

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

MESSAGE = """
tickwire: building from source needs Rust, and `cargo` is not on PATH.
  - Install a prebuilt wheel instead:  pip install --only-binary tickwire tickwire
    (or build one on a machine with Rust: `make wheel`, then pip install dist/tickwire-*.whl)
  - Or install Rust (https://rustup.rs or your package manager), then run pip again.
tickwire does not download a Rust toolchain by itself; set MATURIN_NO_INSTALL_RUST= (empty) to
let maturin fetch one into a temporary directory.
"""


def _need_cargo() -> None:
    if os.environ.get("MATURIN_NO_INSTALL_RUST") and shutil.which("cargo") is None:
        sys.stderr.write(MESSAGE)
        raise SystemExit(1)


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    return list(maturin.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(config_settings: Any = None) -> list[str]:
    return list(maturin.get_requires_for_build_editable(config_settings))


def get_requires_for_build_sdist(config_settings: Any = None) -> list[str]:
    return list(maturin.get_requires_for_build_sdist(config_settings))


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Any = None) -> str:
    _need_cargo()
    return str(maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings))


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: Any = None
) -> str:
    _need_cargo()
    return str(maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings))


def build_wheel(
    wheel_directory: str, config_settings: Any = None, metadata_directory: str | None = None
) -> str:
    _need_cargo()
    return str(maturin.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_editable(
    wheel_directory: str, config_settings: Any = None, metadata_directory: str | None = None
) -> str:
    _need_cargo()
    return str(maturin.build_editable(wheel_directory, config_settings, metadata_directory))


def build_sdist(sdist_directory: str, config_settings: Any = None) -> str:
    # Writing the sdist runs `cargo metadata`, so it needs cargo as well.
    _need_cargo()
    return str(maturin.build_sdist(sdist_directory, config_settings))
