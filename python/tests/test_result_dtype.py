"""The result dtype: ``popcount`` returns the table's natural count type
(the smallest of uint8, uint16, uint32 holding the largest row count, as
numpy's ``counts[q]`` does), ``dtype=`` and a wider ``out=`` widen it, and a
type too narrow for the counts is ``OutputTooNarrow`` before any write."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import initret
from conftest import gpu_dispatcher, row_counts

RESULT_DTYPES = [np.uint8, np.uint16, np.uint32]


def tables():
    """(table, natural dtype): 1-word rows (uint8); 8-word rows whose
    largest count is 255 (still uint8, though such rows could hold 256);
    9-word rows passing 255 (uint16); 2100-word rows passing 65535 (uint32)."""
    rng = np.random.default_rng(7)
    one = rng.integers(0, 2**32, size=3000, dtype=np.uint64).astype(np.uint32)
    almost = np.full((40, 8), 0xFFFFFFFF, dtype=np.uint32)
    almost[:, 0] = 0x7FFFFFFF  # 255 bits a row
    nine = rng.integers(0, 2**32, size=(500, 9), dtype=np.uint64).astype(np.uint32)
    nine[3] = 0xFFFFFFFF  # 288 bits
    wide = np.zeros((6, 2100), dtype=np.uint32)
    wide[4] = 0xFFFFFFFF  # 67200 bits
    return [(one, np.uint8), (almost, np.uint8), (nine, np.uint16), (wide, np.uint32)]


def backends():
    yield "cpu", lambda table: initret.Dispatcher(table, backend="cpu", threads=2)
    yield "gpu", gpu_dispatcher


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_every_result_dtype_on_every_backend(backend):
    build = dict(backends())[backend]
    rng = np.random.default_rng(11)
    for table, natural in tables():
        d = build(table)
        reference = row_counts(table)
        assert d.result_dtype == natural, (table.shape, d.result_dtype)
        rows = len(reference)
        for n in (0, 1, 65, 5000, 100_000):
            q64 = rng.integers(0, rows, size=n)  # int64, numpy's default
            for queries in (q64, q64.astype(np.uint64), q64.astype(np.uint32)):
                got = d.popcount(queries)
                assert got.dtype == natural  # as numpy's counts[q] would be
                np.testing.assert_array_equal(got, reference[queries])
                for dtype in RESULT_DTYPES:
                    if np.dtype(dtype).itemsize < np.dtype(natural).itemsize:
                        with pytest.raises(initret.OutputTooNarrow):
                            d.popcount(queries, dtype=dtype)
                        out = np.full(n, 7, dtype=dtype)
                        with pytest.raises(initret.OutputTooNarrow):
                            d.popcount(queries, out=out)
                        assert (out == 7).all()  # nothing written
                        continue
                    widened = d.popcount(queries, dtype=dtype)
                    assert widened.dtype == dtype
                    np.testing.assert_array_equal(widened, reference[queries])
                    out = np.full(n, 7, dtype=dtype)
                    assert d.popcount(queries, out=out) is out
                    np.testing.assert_array_equal(out, reference[queries])


def test_sixty_four_bit_queries_only_they_can_hold(seed_dispatcher):
    d = seed_dispatcher
    for dtype in RESULT_DTYPES:
        for bad, value in ((np.array([5, 2**32 + 3, 1], dtype=np.uint64), 2**32 + 3),
                           (np.array([5, -(2**40), 1], dtype=np.int64), -(2**40)),
                           (np.array([5, 2**63 + 9, 1], dtype=np.uint64), 2**63 + 9)):
            with pytest.raises(initret.IndexOutOfRange) as caught:
                d.popcount(bad, dtype=dtype)
            assert (caught.value.position, caught.value.index) == (1, value)


def test_the_default_is_the_natural_dtype_and_uint32_widens_it(seed_dispatcher, rng):
    d = seed_dispatcher
    counts = row_counts(initret.seed_table()).astype(np.uint8)
    q = rng.integers(0, initret.SEED_ROWS, size=2**21)  # large: recycled results
    for _ in range(3):
        r8 = d.popcount(q)
        assert r8.dtype == np.uint8 == counts[q].dtype
        r32 = d.popcount(q, dtype=np.uint32)
        assert r32.dtype == np.uint32
        np.testing.assert_array_equal(r8, r32)
        np.testing.assert_array_equal(r8, counts[q])
        del r8, r32
    # dtype names and dtype objects alike; None is the default.
    assert d.popcount([3], dtype="uint16").dtype == np.uint16
    assert d.popcount([3], dtype=np.dtype("u4")).dtype == np.uint32
    assert d.popcount([3], dtype=None).dtype == np.uint8


def test_out_rules(seed_dispatcher):
    d = seed_dispatcher
    q = np.array([[7, 255], [0, 65534]])
    for dtype in RESULT_DTYPES:
        out = np.zeros(q.shape, dtype=dtype)
        assert d.popcount(q, out=out) is out
        assert out.tolist() == [[3, 8], [0, 15]]
        # dtype= naming out's own type is allowed; another one is not.
        assert d.popcount(q, out=out, dtype=dtype) is out
    with pytest.raises(ValueError, match="dtype"):
        d.popcount(q, out=np.zeros(q.shape, dtype=np.uint16), dtype=np.uint32)
    # Only uint8/uint16/uint32, native order, are result types.
    for wrong in (np.int64, np.uint64, np.int32, np.float32, ">u4"):
        with pytest.raises(TypeError, match="uint8, uint16 or uint32"):
            d.popcount(q, out=np.zeros(q.shape, dtype=wrong))
        with pytest.raises(TypeError, match="uint8, uint16 or uint32"):
            d.popcount(q, dtype=wrong)
    with pytest.raises(TypeError):
        d.popcount(q, out=[0, 0, 0, 0])
    # A strided out of a wider type.
    big = np.full((2, 4), 9, dtype=np.uint16)
    assert d.popcount(q, out=big[:, ::2]) is not None
    assert big.tolist() == [[3, 9, 8, 9], [0, 9, 15, 9]]


def test_output_too_narrow_is_a_clear_value_error():
    wide = np.full((3, 9), 0xFFFFFFFF, dtype=np.uint32)
    d = initret.Dispatcher(wide, backend="cpu", threads=1)
    assert d.result_dtype == np.uint16
    out = np.full(3, 5, dtype=np.uint8)
    with pytest.raises(initret.OutputTooNarrow) as caught:
        d.popcount([0, 1, 2], out=out)
    error = caught.value
    assert isinstance(error, ValueError) and isinstance(error, initret.InitretError)
    assert (error.output_bytes, error.count_bytes) == (1, 2)
    assert "uint8" in str(error) and "uint16" in str(error)
    assert (out == 5).all()
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is initret.OutputTooNarrow
    assert (again.output_bytes, again.count_bytes, str(again)) == (1, 2, str(error))
    # Too narrow is refused before the queries are even looked at.
    with pytest.raises(initret.OutputTooNarrow):
        d.popcount([0, 99], dtype=np.uint8)
    assert d.popcount([0, 1], dtype=np.uint32).tolist() == [288, 288]


def test_a_pickled_dispatcher_keeps_its_result_dtype():
    for table, natural in tables():
        d = initret.Dispatcher(table, backend="cpu", threads=1)
        again = pickle.loads(pickle.dumps(d))
        assert again.result_dtype == d.result_dtype == natural
        q = np.arange(len(row_counts(table)))
        np.testing.assert_array_equal(again.popcount(q), d.popcount(q))
