"""initret.dask on a local two-process cluster. Skipped only when dask or
distributed is not installed (CI installs the [dask] extra)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import row_counts

pytest.importorskip("dask.array")
pytest.importorskip("distributed")

import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import initret  # noqa: E402
import initret.dask  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def test_one_dispatcher_per_worker_and_results(client, rng):
    table = rng.integers(0, 2**32, size=(30_000, 5), dtype=np.uint64).astype(np.uint32)
    reference = row_counts(table)
    plugin = initret.dask.register(client, table, threads=1, name="random5")
    assert plugin.dispatcher is None  # built on the workers, not here

    queries = rng.integers(0, 30_000, size=500_000)
    counts = initret.dask.popcount(da.from_array(queries, chunks=37_000), name="random5")
    assert counts.dtype == np.uint32 and counts.shape == queries.shape
    np.testing.assert_array_equal(counts.compute(), reference[queries])
    # A second computation reuses the same dispatchers.
    assert int(counts.sum().compute()) == int(reference[queries].sum())

    state = client.run(lambda dask_worker: (
        dask_worker.plugins["random5"].builds,
        dask_worker.plugins["random5"].pid,
        repr(dask_worker.plugins["random5"].dispatcher),
        dask_worker.plugins["random5"].table is None,
    ))
    assert len(state) == 2
    pids = set()
    for builds, pid, dispatcher, dropped_table in state.values():
        assert builds == 1, "each worker builds its dispatcher exactly once"
        assert "rows=30000 words_per_row=5" in dispatcher
        assert dropped_table
        pids.add(pid)
    assert len(pids) == 2  # two worker processes


def test_three_line_version_and_2d_queries(client):
    client.register_plugin(initret.dask.DispatcherPlugin(initret.seed_table()))
    queries = da.arange(initret.SEED_ROWS, chunks=10_000)
    total = int(initret.dask.popcount(queries).sum().compute())
    assert total == initret.SEED_CHECKSUM

    grid = da.from_array(np.arange(600).reshape(20, 30), chunks=(7, 11))
    np.testing.assert_array_equal(
        initret.dask.popcount(grid).compute(),
        row_counts(initret.seed_table())[np.arange(600).reshape(20, 30)],
    )


def test_bad_query_position_is_global(client):
    client.register_plugin(initret.dask.DispatcherPlugin(initret.seed_table()))
    queries = np.arange(100_000) % initret.SEED_ROWS
    queries[71_234] = -3
    with pytest.raises(initret.IndexOutOfRange) as caught:
        initret.dask.popcount(da.from_array(queries, chunks=10_000)).compute()
    assert (caught.value.position, caught.value.index, caught.value.rows) == (71_234, -3, initret.SEED_ROWS)

    grid = np.zeros((20, 30), dtype=np.int64)
    grid[13, 17] = 10**6
    with pytest.raises(initret.IndexOutOfRange) as caught:
        initret.dask.popcount(da.from_array(grid, chunks=(7, 11))).compute()
    assert caught.value.position == 13 * 30 + 17


def test_missing_plugin_is_a_clear_error(client):
    with pytest.raises(RuntimeError, match="no initret dispatcher named"):
        initret.dask.popcount(da.arange(10, chunks=5), name="never-registered").compute()
    with pytest.raises(RuntimeError, match="inside a Dask task"):
        initret.dask.get_dispatcher()
