"""The GPU backend from Python. Skipped without a GPU adapter, unless
INITRET_REQUIRE_GPU=1 (CI, on lavapipe), where a missing GPU fails."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import gpu_dispatcher, row_counts

import initret


def test_seed_workload_on_the_gpu():
    d = gpu_dispatcher(initret.seed_table())
    assert d.backend == "gpu" and d.kernel == "wgsl" and d.threads == 0
    assert isinstance(d.adapter, str) and d.adapter
    assert d.route(10) == "gpu"
    counts = d.popcount(np.arange(initret.SEED_ROWS, dtype=np.uint32))
    assert counts.dtype == np.uint8 == d.result_dtype
    assert int(counts.sum()) == initret.SEED_CHECKSUM


def test_gpu_matches_numpy(rng):
    for words in (1, 3, 16, 40):
        rows = int(rng.integers(1, 20_000))
        table = rng.integers(0, 2**32, size=(rows, words), dtype=np.uint64).astype(np.uint32)
        reference = row_counts(table)
        d = gpu_dispatcher(table)
        for n in (0, 1, 63, 64, 65, 4096, 100_000):
            queries = rng.integers(0, rows, size=n)
            np.testing.assert_array_equal(d.popcount(queries), reference[queries])  # int64, converted
            q32 = queries.astype(np.uint32)
            out = np.empty(n, dtype=np.uint32)
            assert d.popcount(q32, out=out) is out
            np.testing.assert_array_equal(out, reference[queries])


def test_gpu_bad_indices(rng):
    d = gpu_dispatcher(initret.seed_table())
    for dtype in (np.uint32, np.int64):
        queries = rng.integers(0, initret.SEED_ROWS, size=100_000).astype(dtype)
        queries[77_777] = 70_000
        queries[88_888] = 2**31
        with pytest.raises(initret.IndexOutOfRange) as caught:
            d.popcount(queries)
        assert (caught.value.position, caught.value.index, caught.value.rows) == (77_777, 70_000, initret.SEED_ROWS)
    with pytest.raises(initret.IndexOutOfRange) as caught:
        d.popcount([0, -1])
    assert caught.value.index == -1


def test_gpu_unavailable_names_the_reason_and_the_apt_hint():
    """INITRET_ADAPTER naming no adapter makes the GPU unavailable, on any
    machine; the apt hint comes only when there is no adapter at all."""
    code = (
        "import initret\n"
        "try:\n"
        "    initret.Dispatcher(initret.seed_table(), backend='gpu')\n"
        "except initret.GpuUnavailable as e:\n"
        "    assert isinstance(e, RuntimeError)\n"
        "    assert e.reason and e.reason in str(e), e\n"
        "    if initret.info()['gpu_adapters']:\n"
        "        assert e.hint is None and 'apt-get' not in str(e), e\n"
        "        assert 'INITRET_ADAPTER' in e.reason, e\n"
        "    else:\n"
        "        assert e.hint == initret.APT_HINT and e.hint in str(e), e\n"
        "    print('GpuUnavailable')\n"
    )
    env = dict(os.environ, INITRET_ADAPTER="no-such-adapter-anywhere")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "GpuUnavailable"


def test_no_adapter_at_all_carries_the_apt_hint():
    """With no Vulkan driver to load (and so no adapter), the hint is there."""
    if sys.platform != "linux":
        pytest.skip("VK_ICD_FILENAMES hides Vulkan drivers on Linux")
    code = (
        "import initret\n"
        "if initret.info()['gpu_adapters']:\n"
        "    print('adapters')\n"
        "else:\n"
        "    try:\n"
        "        initret.Dispatcher(initret.seed_table(), backend='gpu')\n"
        "    except initret.GpuUnavailable as e:\n"
        "        assert e.hint == initret.APT_HINT and 'apt-get install mesa-vulkan-drivers' in str(e), e\n"
        "        print('GpuUnavailable')\n"
    )
    env = dict(os.environ, VK_ICD_FILENAMES="/nonexistent", VK_DRIVER_FILES="/nonexistent")
    env.pop("INITRET_ADAPTER", None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if result.stdout.strip() == "adapters":
        pytest.skip("an adapter is there without a Vulkan driver (Metal, DX12)")
    assert result.stdout.strip() == "GpuUnavailable"


def test_auto_says_what_it_decided():
    d = initret.Dispatcher(initret.seed_table(), backend="auto")
    assert d.backend == "auto"
    assert isinstance(d.note, str) and d.note
    assert d.route(1 << 26) in ("cpu", "gpu")
    assert int(d.popcount(np.arange(initret.SEED_ROWS)).sum()) == initret.SEED_CHECKSUM
