"""Shared helpers for the initret Python tests."""

from __future__ import annotations

import os

import numpy as np
import pytest

import initret


def row_counts(table: np.ndarray) -> np.ndarray:
    """The numpy reference: popcount of every row of a 1-D or 2-D uint32 table."""
    table = np.ascontiguousarray(table, dtype=np.uint32)
    if table.ndim == 1:
        table = table[:, None]
    bits = np.unpackbits(table.view(np.uint8), axis=1)
    return bits.sum(axis=1, dtype=np.uint32)


def require_gpu() -> bool:
    """CI sets INITRET_REQUIRE_GPU=1: a missing GPU then fails the GPU tests."""
    return os.environ.get("INITRET_REQUIRE_GPU", "") not in ("", "0")


def gpu_dispatcher(table, **kwargs) -> initret.Dispatcher:
    """A GPU dispatcher, or a skip (a failure under INITRET_REQUIRE_GPU=1)."""
    try:
        return initret.Dispatcher(table, backend="gpu", **kwargs)
    except initret.GpuUnavailable as error:
        if require_gpu():
            pytest.fail(f"INITRET_REQUIRE_GPU is set but there is no GPU: {error}")
        pytest.skip(f"no GPU adapter: {error.reason}")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20260101)


@pytest.fixture(scope="session")
def seed_dispatcher() -> initret.Dispatcher:
    return initret.Dispatcher(initret.seed_table(), backend="cpu", threads=2)
