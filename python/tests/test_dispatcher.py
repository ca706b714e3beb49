"""initret.Dispatcher: results against numpy, input forms, and every bad input."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from conftest import row_counts

import initret

INT_DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64]


def random_table(rng: np.random.Generator, rows: int, words: int, kind: str = "random") -> np.ndarray:
    if kind == "zeros":
        table = np.zeros((rows, words), dtype=np.uint32)
    elif kind == "ones":
        table = np.full((rows, words), 0xFFFFFFFF, dtype=np.uint32)
    else:
        table = rng.integers(0, 2**32, size=(rows, words), dtype=np.uint64).astype(np.uint32)
    return table[:, 0].copy() if words == 1 and rng.random() < 0.5 else table


# ---------------------------------------------------------------------------
# Results


def test_seed_workload_checksum(seed_dispatcher):
    counts = seed_dispatcher.popcount(np.arange(initret.SEED_ROWS))
    assert counts.dtype == np.uint8 == seed_dispatcher.result_dtype  # the counts fit a byte
    assert counts.shape == (initret.SEED_ROWS,)
    assert int(counts.sum()) == initret.SEED_CHECKSUM == 524272
    assert counts[7] == 3 and counts[0] == 0 and counts[65534] == 15


@pytest.mark.parametrize("case", range(24))
def test_random_tables_and_batches_match_numpy(rng, case):
    words = [1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 39, 40][case % 12]
    rows = int(rng.choice([1, 2, 63, 1000, 4097, 70_000]))
    kind = ["random", "random", "zeros", "ones"][case % 4]
    table = random_table(rng, rows, words, kind)
    reference = row_counts(table)
    d = initret.Dispatcher(table, backend="cpu", threads=int(rng.integers(0, 3)))
    assert d.rows == rows and d.words_per_row == words
    # Batch sizes from 0 to 10^5, including every SIMD tail length around
    # the chunk sizes.
    for n in [0, 1, 7, 8, 9, 15, 16, 17, 33, 1000, 2047, 2048, 2049, 32767, 32768, 32769,
              int(rng.integers(0, 100_001)), 100_000]:
        shape = rng.choice(["random", "sorted", "last"])
        queries = rng.integers(0, rows, size=n)
        if shape == "sorted":
            queries.sort()
        elif shape == "last":
            queries[:] = rows - 1
        expected = reference[queries]
        np.testing.assert_array_equal(d.popcount(queries), expected)
        np.testing.assert_array_equal(d.popcount(queries.astype(np.uint32)), expected)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_every_integer_dtype(seed_dispatcher, rng, dtype):
    top = min(initret.SEED_ROWS, np.iinfo(dtype).max + 1)
    queries = rng.integers(0, top, size=50_000).astype(dtype)
    expected = row_counts(initret.seed_table())[queries.astype(np.int64)]
    np.testing.assert_array_equal(seed_dispatcher.popcount(queries), expected)
    # Non-native byte order too.
    swapped = queries.astype(queries.dtype.newbyteorder(">" if np.little_endian else "<"))
    np.testing.assert_array_equal(seed_dispatcher.popcount(swapped), expected)


def test_strided_views_lists_ranges_and_shapes(seed_dispatcher, rng):
    reference = row_counts(initret.seed_table())
    base = rng.integers(0, initret.SEED_ROWS, size=200_000)
    for view in (base[::3], base[5:100_000:7], base[::-1], base.reshape(400, 500)[:, ::2],
                 base.reshape(400, 500).T, base.astype(np.uint32)[1::2]):
        assert not (view.flags.c_contiguous and view.base is None)
        got = seed_dispatcher.popcount(view)
        assert got.shape == view.shape
        np.testing.assert_array_equal(got, reference[view])
    assert seed_dispatcher.popcount([3, 7, 255]).tolist() == [2, 3, 8]
    assert seed_dispatcher.popcount(range(8)).tolist() == [0, 1, 1, 2, 1, 2, 2, 3]
    assert seed_dispatcher.popcount((np.int64(5), 6)).tolist() == [2, 2]
    assert seed_dispatcher.popcount([]).shape == (0,)
    assert seed_dispatcher.popcount(np.array([], dtype=np.int64)).dtype == np.uint8
    assert int(seed_dispatcher.popcount(np.int64(65534))) == 15  # 0-d in, 0-d out
    cube = base[:24].reshape(2, 3, 4)
    np.testing.assert_array_equal(seed_dispatcher.popcount(cube), reference[cube])


def test_misaligned_queries(seed_dispatcher):
    raw = np.zeros(8 * 1000 + 1, dtype=np.uint8)
    queries = np.frombuffer(raw.data, dtype=np.int64, count=1000, offset=1)
    assert not queries.flags.aligned
    assert seed_dispatcher.popcount(queries).tolist() == [0] * 1000


def test_out_is_filled_in_place(seed_dispatcher, rng):
    reference = row_counts(initret.seed_table())
    queries = rng.integers(0, initret.SEED_ROWS, size=100_000)
    out = np.full(100_000, 99, dtype=np.uint32)
    result = seed_dispatcher.popcount(queries, out=out)
    assert result is out
    np.testing.assert_array_equal(out, reference[queries])
    # A strided out is filled too, and nothing around it is touched.
    big = np.full(200_000, 77, dtype=np.uint32)
    result = seed_dispatcher.popcount(queries, out=big[::2])
    np.testing.assert_array_equal(big[::2], reference[queries])
    assert (big[1::2] == 77).all()
    # In place over the queries themselves.
    q32 = queries.astype(np.uint32)
    expected = reference[q32]
    seed_dispatcher.popcount(q32, out=q32)
    np.testing.assert_array_equal(q32, expected)


def test_table_is_copied_at_build(rng):
    table = rng.integers(0, 2**32, size=(5000, 3), dtype=np.uint64).astype(np.uint32)
    reference = row_counts(table)
    d = initret.Dispatcher(table, backend="cpu")
    table[:] = 0
    table_view = np.asarray(table)
    table_view.fill(0xFFFFFFFF)
    queries = np.arange(5000)
    np.testing.assert_array_equal(d.popcount(queries), reference)


def test_table_forms_1d_2d_lists_and_other_integer_dtypes():
    assert initret.Dispatcher([[1, 3], [7, 0]]).popcount([0, 1]).tolist() == [3, 3]
    assert initret.Dispatcher(np.array([255, 1], dtype=np.int64)).popcount([0, 1]).tolist() == [8, 1]
    assert initret.Dispatcher(np.arange(10, dtype=np.uint8)).popcount([9]).tolist() == [2]
    table = np.arange(40, dtype=np.uint32).reshape(20, 2)[::2]  # strided rows
    assert initret.Dispatcher(table).popcount([1]).tolist() == [row_counts(table)[1]]
    assert initret.Dispatcher([0xFFFFFFFF]).popcount([0]).tolist() == [32]


def test_properties_and_info(seed_dispatcher):
    d = seed_dispatcher
    assert d.backend == "cpu"
    assert d.kernel in info_kernels()
    assert d.note is None
    assert d.adapter is None
    assert d.threads == 2
    assert d.rows == initret.SEED_ROWS and d.words_per_row == 1
    assert d.route(1 << 24) == "cpu"
    assert d.describe().startswith("cpu")
    assert "Dispatcher" in repr(d)
    auto = initret.Dispatcher(initret.seed_table(), backend="auto")
    assert auto.backend == "auto"
    assert isinstance(auto.note, str) and auto.note
    assert int(auto.popcount(np.arange(initret.SEED_ROWS)).sum()) == initret.SEED_CHECKSUM
    info = initret.info()
    assert isinstance(info, dict)
    assert {"version", "cpu_features", "kernels", "isa", "cpus", "gpu_adapters"} <= set(info)
    assert "scalar" in info["kernels"]
    assert any(k.split("-")[0] == info["isa"] for k in info["kernels"])
    assert isinstance(info["gpu_adapters"], list)
    for adapter in info["gpu_adapters"]:
        assert {"name", "backend", "device_type", "summary"} <= set(adapter)


def info_kernels():
    return initret.info()["kernels"]


# ---------------------------------------------------------------------------
# Bad input


def test_index_out_of_range_names_the_first_bad_position(seed_dispatcher, rng):
    rows = initret.SEED_ROWS
    for bad_value in [rows, rows + 1, 70_000, 2**32 - 1, 2**32, 2**32 + 3, 2**40, 2**63 - 1, 2**63, 2**64 - 1,
                      -1, -2**31, -2**63, -2**63 + 3]:
        for dtype in (np.int64, np.uint64, np.uint32, np.int32):
            if not np.iinfo(dtype).min <= bad_value <= np.iinfo(dtype).max:
                continue
            value = dtype(bad_value)
            for n, position in [(1, 0), (10, 9), (100_000, 54_321), (100_000, 99_999)]:
                queries = rng.integers(0, rows, size=n).astype(dtype)
                queries[position] = value
                if position + 5 < n:
                    queries[position + 5] = value  # a later bad one is not reported
                with pytest.raises(initret.IndexOutOfRange) as caught:
                    seed_dispatcher.popcount(queries)
                error = caught.value
                assert isinstance(error, IndexError)
                assert (error.position, error.index, error.rows) == (position, bad_value, rows)


def test_negative_index_never_wraps(seed_dispatcher):
    with pytest.raises(initret.IndexOutOfRange) as caught:
        seed_dispatcher.popcount([5, -1])
    assert (caught.value.position, caught.value.index) == (1, -1)
    with pytest.raises(IndexError):
        seed_dispatcher.popcount(np.array([-1], dtype=np.int8))


def test_python_ints_past_64_bits(seed_dispatcher):
    with pytest.raises(initret.IndexOutOfRange) as caught:
        seed_dispatcher.popcount([1, 2, 2**70])
    assert (caught.value.position, caught.value.index) == (2, 2**70)
    with pytest.raises(initret.IndexOutOfRange) as caught:
        seed_dispatcher.popcount([1, -(2**70)])
    assert caught.value.index == -(2**70)


def test_first_bad_position_across_chunks_and_in_2d(seed_dispatcher):
    queries = np.zeros((300, 1000), dtype=np.int64)
    queries[250, 3] = -5
    queries[100, 999] = 65535
    with pytest.raises(initret.IndexOutOfRange) as caught:
        seed_dispatcher.popcount(queries)
    assert (caught.value.position, caught.value.index) == (100 * 1000 + 999, 65535)
    with pytest.raises(initret.IndexOutOfRange) as caught:
        seed_dispatcher.popcount(np.abs(queries).astype(np.uint32))
    assert caught.value.position == 100 * 1000 + 999


@pytest.mark.parametrize("queries", [
    [1.0, 2.0], np.array([1.5]), np.arange(4, dtype=np.float32), np.array([True, False]),
    [True], ["a"], np.array(["1"]), [1, None], [1, 2.5], np.array([1 + 2j]),
])
def test_non_integer_queries_are_type_errors(seed_dispatcher, queries):
    with pytest.raises(TypeError):
        seed_dispatcher.popcount(queries)


def test_bad_out(seed_dispatcher):
    queries = np.arange(10)
    with pytest.raises(TypeError):
        seed_dispatcher.popcount(queries, out=np.empty(10, dtype=np.int64))
    with pytest.raises(TypeError):
        seed_dispatcher.popcount(queries, out=[0] * 10)
    with pytest.raises(ValueError):
        seed_dispatcher.popcount(queries, out=np.empty(11, dtype=np.uint32))
    with pytest.raises(ValueError):
        seed_dispatcher.popcount(queries, out=np.empty((2, 5), dtype=np.uint32))
    readonly = np.empty(10, dtype=np.uint32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError):
        seed_dispatcher.popcount(queries, out=readonly)
    strided_readonly = np.empty(20, dtype=np.uint32)
    strided_readonly.flags.writeable = False
    with pytest.raises(ValueError):
        seed_dispatcher.popcount(queries, out=strided_readonly[::2])


@pytest.mark.parametrize("table", [
    np.zeros((2, 2, 2), dtype=np.uint32),  # 3-D
    np.zeros(0, dtype=np.uint32),          # zero rows
    np.zeros((0, 4), dtype=np.uint32),     # zero rows, 2-D
    np.zeros((5, 0), dtype=np.uint32),     # zero words
    np.uint32(5),                          # 0-D
    [],                                    # empty list
    np.array([-1, 2]),                     # does not fit in 32 unsigned bits
    np.array([2**32]),
])
def test_invalid_tables(table):
    with pytest.raises(initret.InvalidTable) as caught:
        initret.Dispatcher(table)
    assert isinstance(caught.value, ValueError)


def test_non_integer_tables_and_bad_arguments():
    with pytest.raises(TypeError):
        initret.Dispatcher(np.array([1.5, 2.0]))
    with pytest.raises(TypeError):
        initret.Dispatcher(np.array([True, False]))
    with pytest.raises(ValueError):
        initret.Dispatcher(initret.seed_table(), backend="tpu")
    with pytest.raises(ValueError):
        initret.Dispatcher(initret.seed_table(), threads=-1)
    # Refused at once, rather than starting a million threads.
    with pytest.raises(ValueError, match="1024"):
        initret.Dispatcher(initret.seed_table(), threads=10**6)
    with pytest.raises(TypeError):
        initret.Dispatcher(initret.seed_table(), backend=None)


def test_exceptions_pickle_with_their_attributes():
    errors = [
        initret.IndexOutOfRange(3, -1, 10),
        initret.InvalidTable("no rows"),
        initret.GpuUnavailable("no adapter", hint=initret.APT_HINT),
        initret.GpuError("device lost", "DeviceLost"),
        initret.IsaUnavailable("avx512 is not available"),
        initret.ConcurrentModification("the queries changed", 5),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert isinstance(copy, initret.InitretError)
    copy = pickle.loads(pickle.dumps(errors[0]))
    assert (copy.position, copy.index, copy.rows) == (3, -1, 10)
    gpu = pickle.loads(pickle.dumps(errors[2]))
    assert gpu.reason == "no adapter" and "apt-get install mesa-vulkan-drivers" in str(gpu)
    assert gpu.hint == initret.APT_HINT
    assert initret.GpuUnavailable("INITRET_ADAPTER matches none").hint is None
    assert pickle.loads(pickle.dumps(errors[-1])).position == 5
    assert issubclass(initret.ConcurrentModification, RuntimeError)
    assert issubclass(initret.GpuUnavailable, RuntimeError)
    assert issubclass(initret.InvalidTable, ValueError)
    assert issubclass(initret.IndexOutOfRange, IndexError)


def test_large_results_are_never_overwritten_while_referenced(rng):
    # Large results are kept and refilled once Python drops them: a result,
    # a view of one, or one made read-only must never change under its owner.
    rows = 1000
    table = rng.integers(0, 2**32, rows, dtype=np.uint64).astype(np.uint32)
    counts = row_counts(table)
    d = initret.Dispatcher(table, backend="cpu")
    n = 1 << 20
    batches = [rng.integers(0, rows, n, dtype=np.uint32) for _ in range(6)]
    expected = [counts[q] for q in batches]

    r0 = d.popcount(batches[0])
    r1 = d.popcount(batches[1])
    view = d.popcount(batches[2])[::3]
    frozen = d.popcount(batches[3])
    frozen.flags.writeable = False
    kept_in_list = [d.popcount(batches[4])]
    for _ in range(3):
        for k in (5, 0, 1):
            assert np.array_equal(d.popcount(batches[k]), expected[k])
    assert np.array_equal(r0, expected[0])
    assert np.array_equal(r1, expected[1])
    assert np.array_equal(view, expected[2][::3])
    assert np.array_equal(frozen, expected[3])
    assert np.array_equal(kept_in_list[0], expected[4])
    assert r0 is not r1

    # Dropped results are refilled: the same shape comes back right.
    del r0, r1, view, frozen, kept_in_list
    for k in range(6):
        result = d.popcount(batches[k])
        assert np.array_equal(result, expected[k])
        assert result.flags.writeable and result.flags.owndata
    # Other shapes and bad batches are unaffected by what is kept.
    assert np.array_equal(d.popcount(batches[0][: n - 1]), expected[0][: n - 1])
    bad = batches[1].copy()
    bad[n // 2] = rows
    with pytest.raises(initret.IndexOutOfRange):
        d.popcount(bad)
    assert np.array_equal(d.popcount(batches[1]), expected[1])


def test_the_inline_limit_is_measured_or_given_and_survives_pickling():
    rng = np.random.default_rng(7)
    table = rng.integers(0, 2**32, size=5000, dtype=np.uint64).astype(np.uint32)
    counts = row_counts(table)
    measured = initret.Dispatcher(table, threads=2)
    limits = [int(n) for n in re.findall(r"up to (\d+)", measured.describe())]
    assert len(limits) == 2 and all(4096 <= n <= 1 << 17 for n in limits), measured.describe()
    assert "batches inline: all u32, all 64-bit" in initret.Dispatcher(table, threads=1).describe()
    # 0: every batch goes to the workers, split into one chunk each.
    split = initret.Dispatcher(table, threads=2, inline_max_queries=0)
    assert "batches inline: up to 0 u32, up to 0 64-bit" in split.describe()
    for n in (1, 3, 100, 70_000):
        queries = rng.integers(0, len(table), size=n)
        for q in (queries, queries.astype(np.uint32)):
            np.testing.assert_array_equal(split.popcount(q), counts[q])
    bad = np.arange(70_000) % len(table)
    bad[[40_000, 69_999]] = len(table)
    with pytest.raises(IndexError, match="40000"):
        split.popcount(bad)
    again = pickle.loads(pickle.dumps(split))
    assert "batches inline: up to 0 u32, up to 0 64-bit" in again.describe()
    never = initret.Dispatcher(table, threads=2, inline_max_queries=2**40)  # kept: it holds the segment
    assert f"up to {2**40} u32" in pickle.loads(pickle.dumps(never)).describe()
    with pytest.raises(OverflowError):
        initret.Dispatcher(table, inline_max_queries=-1)


def test_placement_is_chosen_and_described():
    table = np.arange(1 << 12, dtype=np.uint32)
    queries = np.arange(1 << 12)
    expected = np.array([bin(i).count("1") for i in range(1 << 12)], dtype=np.uint32)
    for placement in ("per-domain", "shared", "per-worker"):
        d = initret.Dispatcher(table, backend="cpu", threads=2, placement=placement)
        assert placement + ":" in d.describe()
        np.testing.assert_array_equal(d.popcount(queries), expected)
    # Two workers, one copy each: the summary counts them.
    assert "2 copies" in initret.Dispatcher(table, backend="cpu", threads=2, placement="per-worker").describe()
    assert "1 copy" in initret.Dispatcher(table, backend="cpu", threads=2, placement="shared").describe()
    with pytest.raises(ValueError, match="per-domain, shared or per-worker"):
        initret.Dispatcher(table, backend="cpu", placement="per-core")
