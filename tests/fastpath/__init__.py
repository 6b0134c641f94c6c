"""Tests of app.fastpath and the SIMD kernels in csrc/."""
