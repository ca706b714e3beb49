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
    assert len(names) == 1, "one segment for the counts on this host"
    (name,) = names
    assert name.startswith("irt_")
    assert sum(s[3] for s in state.values()) == 1, "exactly one worker created it"
    assert all(s[4] for s in state.values()), "no worker keeps its own copy of the table"
    assert all("rows=50000 words_per_row=3" in s[6] for s in state.values())
    # The segment lives while a worker uses it (for workers that join
    # later); every worker's dispatcher reads the counts there, in place.
    assert os.path.exists("/dev/shm/" + name)
    assert os.stat("/dev/shm/" + name).st_mode & 0o777 == 0o600
    assert all(s[5] and s[7] for s in state.values())

    # A worker that joins later attaches to the same segment.
    client.cluster.scale(4)
    client.wait_for_workers(4)
    state = client.run(plugin_state("shared3"))
    assert len(state) == 4 and {s[2] for s in state.values()} == {name}
    assert sum(s[3] for s in state.values()) == 1
    np.testing.assert_array_equal(counts.compute(), row_counts(table)[queries])

    client.unregister_worker_plugin("shared3")
    assert not os.path.exists("/dev/shm/" + name)  # the last user out unlinked it


def test_not_shared_builds_from_own_copy(client):
    plugin = initret.dask.register(client, initret.seed_table(), name="own", shared=False)
    total = int(initret.dask.popcount(da.arange(initret.SEED_ROWS, chunks=10_000), name="own").sum().compute())
    assert total == initret.SEED_CHECKSUM
    state = client.run(plugin_state("own"))
    assert all(s[2] == "" and not s[3] for s in state.values())
    assert plugin.segment == ""


def worker_segment_inodes(name):
    """Per worker: (pid, plugin's segment, created, the inode it maps)."""
    def state(dask_worker):
        plugin = dask_worker.plugins[name]
        inode = None
        for line in open("/proc/self/maps"):
            fields = line.split()
            if len(fields) >= 6 and fields[5] == "/dev/shm/" + plugin.segment:
                inode = int(fields[4])
        return (os.getpid(), plugin.segment, plugin.created_segment, inode)
    return state


def test_reregistering_after_the_table_changed_places_the_new_counts(client):
    """The plugin's segment follows the table it carries, not the
    plugin object: register, change the array in place, register again."""
    table = np.arange(1 << 16, dtype=np.uint32)
    plugin = initret.dask.DispatcherPlugin(table, threads=1, name="again")
    client.register_plugin(plugin, name="again")
    queries = da.arange(1 << 16, chunks=1 << 14)
    first = initret.dask.popcount(queries, name="again").compute()
    np.testing.assert_array_equal(first, row_counts(table))
    old = {s[1] for s in client.run(worker_segment_inodes("again")).values()}

    plugin.table[:] = 0xFFFFFFFF  # the caller's array (plugin kept it without a copy)
    client.register_plugin(plugin, name="again")
    second = initret.dask.popcount(queries, name="again").compute()
    assert (second == 32).all(), "the new table's counts, not the old ones"
    new = {s[1] for s in client.run(worker_segment_inodes("again")).values()}
    assert len(new) == 1 and new != old
    client.unregister_worker_plugin("again")
    assert not any(os.path.exists("/dev/shm/" + n) for n in old | new)


def test_killed_creator_restarts_into_the_same_segment_and_is_released(rng):
    """SIGKILL the worker that created the host's segment.
    The nanny restarts it; the new worker attaches to the segment the
    others still use (one count table on the host), and unregistering the
    plugin removes it, though its creator never tore down."""
    import signal
    import time

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        table = rng.integers(0, 2**32, size=1 << 16, dtype=np.uint64).astype(np.uint32)
        initret.dask.register(client, table, threads=1, name="killed")
        state = client.run(worker_segment_inodes("killed"))
        (name,) = {s[1] for s in state.values()}
        creator = next(s[0] for s in state.values() if s[2])
        os.kill(creator, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while True:  # the nanny starts a new worker, which sets the plugin up
            try:
                state = client.run(worker_segment_inodes("killed"))
            except Exception:
                state = {}
            if len(state) == 2 and creator not in {s[0] for s in state.values()}:
                break
            assert time.monotonic() < deadline, "the killed worker was not restarted"
            time.sleep(0.2)
        assert {s[1] for s in state.values()} == {name}
        assert not any(s[2] for s in state.values()), "the restarted worker adopted the segment"
        assert {s[3] for s in state.values()} == {os.stat("/dev/shm/" + name).st_ino}, "one table on the host"
        queries = da.from_array(rng.integers(0, 1 << 16, size=50_000), chunks=10_000)
        np.testing.assert_array_equal(initret.dask.popcount(queries, name="killed").compute(),
                                      row_counts(table)[queries.compute()])
        client.unregister_worker_plugin("killed")
        assert not os.path.exists("/dev/shm/" + name)


def seed_popcount_block(block, name):
    state = initret.dask.get_state(name)
    cache, table = state["cache"], state["table"]
    return np.array([cache[int(i)].count("1") + int(table[i] != i) for i in block], dtype=np.int64)


def state_segments(name):
    def state(dask_worker):
        plugin = dask_worker.plugins[name]
        return (os.getpid(), plugin.segment, plugin.created_segment, type(plugin.state["cache"]).__name__,
                plugin.host_state is None)
    return state


def test_any_state_placed_once_per_host(client):
    """Any state (here the seed's dict and an array) placed once
    per host; tasks get it with get_state; the last worker out unlinks it."""
    cache = {i: bin(i) for i in range(initret.SEED_ROWS)}
    state = {"cache": cache, "table": np.arange(initret.SEED_ROWS)}
    client.register_plugin(initret.dask.StatePlugin(state, name="seed"), name="seed")
    counts = da.arange(initret.SEED_ROWS, chunks=8192).map_blocks(seed_popcount_block, "seed", dtype=np.int64)
    assert int(counts.sum().compute()) == initret.SEED_CHECKSUM
    reports = client.run(state_segments("seed"))
    names = {r[1] for r in reports.values()}
    assert len(names) == 1 and sum(r[2] for r in reports.values()) == 1
    assert all(r[3] == "SharedDict" and r[4] for r in reports.values())
    (name,) = names
    assert os.stat("/dev/shm/" + name).st_mode & 0o777 == 0o600
    client.unregister_worker_plugin("seed")
    assert not os.path.exists("/dev/shm/" + name)
