"""initret.dask places the counts once per host: on a local cluster of three
worker processes, one worker derives them into the shared memory segment,
the other two map it, every dispatcher reads them there in place, and
gives the right counts."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import row_counts

pytest.importorskip("dask.array")
pytest.importorskip("distributed")

import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import initret  # noqa: E402
import initret.dask  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory in /dev/shm")


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def plugin_state(name):
    def state(dask_worker):
        plugin = dask_worker.plugins[name]
        mapped = plugin.segment != "" and any(
            line.rstrip().endswith("/dev/shm/" + plugin.segment) for line in open("/proc/self/maps")
        )
        return (plugin.pid, plugin.builds, plugin.segment, plugin.created_segment,
                plugin.table is None, mapped, repr(plugin.dispatcher),
                plugin.dispatcher is not None and plugin.dispatcher.counts_shared)
    return state


def test_one_segment_per_host_and_results(client, rng):
    table = rng.integers(0, 2**32, size=(50_000, 3), dtype=np.uint64).astype(np.uint32)
    plugin = initret.dask.register(client, table, threads=1, name="shared3", shared=True)
    assert plugin.shared and plugin.dispatcher is None and plugin.segment == ""

    queries = rng.integers(0, 50_000, size=400_000)
    counts = initret.dask.popcount(da.from_array(queries, chunks=20_000), name="shared3")
    np.testing.assert_array_equal(counts.compute(), row_counts(table)[queries])

    state = client.run(plugin_state("shared3"))
    assert len(state) == 3
    pids = {s[0] for s in state.values()}
    names = {s[2] for s in state.values()}
    assert len(pids) == 3 and all(s[1] == 1 for s in state.values())
    assert names == {"irt_" + plugin.token}, "one segment for the counts on this host"
    assert sum(s[3] for s in state.values()) == 1, "exactly one worker created it"
    assert all(s[4] for s in state.values()), "no worker keeps its own copy of the table"
    assert all("rows=50000 words_per_row=3" in s[6] for s in state.values())
    segments = [f for f in os.listdir("/dev/shm") if f.startswith("irt_" + plugin.token)]
    assert segments == ["irt_" + plugin.token]
    # The creating worker keeps the segment (for workers that join later)
    # until its plugin is torn down; every worker's dispatcher reads the
    # counts there, in place.
    assert os.path.exists("/dev/shm/irt_" + plugin.token)
    assert all(s[5] and s[7] for s in state.values())

    # A worker that joins later attaches to the same segment.
    client.cluster.scale(4)
    client.wait_for_workers(4)
    state = client.run(plugin_state("shared3"))
    assert len(state) == 4 and {s[2] for s in state.values()} == {"irt_" + plugin.token}
    assert sum(s[3] for s in state.values()) == 1
    np.testing.assert_array_equal(counts.compute(), row_counts(table)[queries])

    client.unregister_worker_plugin("shared3")
    assert not os.path.exists("/dev/shm/irt_" + plugin.token)


def test_not_shared_builds_from_own_copy(client):
    plugin = initret.dask.register(client, initret.seed_table(), name="own", shared=False)
    total = int(initret.dask.popcount(da.arange(initret.SEED_ROWS, chunks=10_000), name="own").sum().compute())
    assert total == initret.SEED_CHECKSUM
    state = client.run(plugin_state("own"))
    assert all(s[2] == "" and not s[3] for s in state.values())
    assert not any(f.startswith("irt_" + plugin.token) for f in os.listdir("/dev/shm"))
