"""Fixtures for the fast-kernel tests: build the native kernel library once per session."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
KERNEL_CACHE = REPO_ROOT / ".cache" / "kernels"


def load_build_tool():
    """tools/ is not a package: import tools/build_kernels.py by path."""
    spec = importlib.util.spec_from_file_location("vitrine_build_kernels", REPO_ROOT / "tools" / "build_kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def build_tool():
    return load_build_tool()


@pytest.fixture(scope="session")
def native_library(build_tool) -> Path:
    """Path of a freshly built native kernel library (skips when no C compiler is installed)."""
    if not any(shutil.which(c) for c in ("clang-16", "gcc", "cc")):
        pytest.skip("no C compiler (clang-16/gcc/cc) on PATH: cannot build csrc/ natively")
    return build_tool.build_kernels(KERNEL_CACHE, "native")


@pytest.fixture(scope="session")
def simd_backend(native_library):
    from app.fastpath import SimdKernelBackend

    return SimdKernelBackend(native_library)
