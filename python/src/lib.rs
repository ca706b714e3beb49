//! `initret._initret`: the compiled half of the `initret` Python package.
//!
//! It wraps [`initret::Dispatcher`] for numpy callers. The table is copied
//! into a [`BitTable`] once, when the dispatcher is built (the initializer);
//! every `popcount` call then borrows the caller's query array, releases the
//! GIL for the lookups (batches of [`DETACH_MIN_QUERIES`] or more) and writes
//! into a fresh or caller-given `uint32` array.
//!
//! Errors cross the FFI boundary as the Python exception classes defined in
//! `initret/_errors.py` (`IndexOutOfRange`, `InvalidTable`, `GpuUnavailable`,
//! ...), never as panics.

use std::mem::ManuallyDrop;
use std::sync::{Mutex, OnceLock, PoisonError};

use initret::{Backend, BitTable, Dispatcher};
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyType};
use rayon::prelude::*;

/// The most worker threads a `Dispatcher` may ask for: far past any CPU's
/// count, and short of the point where starting them would take minutes
/// and gigabytes (`threads=10**6` would otherwise try to start them all).
const MAX_THREADS: usize = 1024;

/// Batches of at least this many queries release the GIL while they run.
/// Smaller ones finish in a few microseconds; dropping and re-taking the GIL
/// for them would only add latency when other threads compete for it.
const DETACH_MIN_QUERIES: usize = 2048;

/// Queries that are not `uint32` are converted (and range-checked) in chunks
/// of this many, each chunk then looked up on the thread that converted it.
/// Equal to the CPU backend's inline limit, so a chunk never goes through
/// the backend's own worker pool.
const CONVERT_CHUNK: usize = initret::cpu::INLINE_MAX_QUERIES;

/// Non-`u32` batches up to this many queries are converted and looked up on
/// the calling thread, chunk by chunk; larger ones use the conversion threads.
const SEQUENTIAL_MAX_QUERIES: usize = 1 << 17;

thread_local! {
    /// Each thread's buffer for one converted chunk, reused across calls
    /// (a fresh 256 KiB allocation per chunk would be a fresh mmap).
    static CHUNK_BUFFER: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The `numpy` module, imported once.
fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    NUMPY
        .get_or_try_init(py, || py.import("numpy").map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// The Python exception classes of `initret/_errors.py`, looked up once.
fn error_class<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyType>> {
    static CLASSES: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
    let classes = CLASSES.get_or_try_init(py, || -> PyResult<Py<PyDict>> {
        let module = py.import("initret._errors")?;
        let dict = PyDict::new(py);
        for name in [
            "InitretError",
            "IndexOutOfRange",
            "InvalidTable",
            "GpuUnavailable",
            "GpuError",
            "IsaUnavailable",
        ] {
            dict.set_item(name, module.getattr(name)?)?;
        }
        Ok(dict.unbind())
    })?;
    classes
        .bind(py)
        .get_item(name)?
        .ok_or_else(|| PyRuntimeError::new_err(format!("initret._errors has no {name}")))?
        .cast_into::<PyType>()
        .map_err(PyErr::from)
}

/// Builds an instance of one of the `initret._errors` classes.
fn raise<'py, A>(py: Python<'py>, name: &'static str, args: A) -> PyErr
where
    A: pyo3::call::PyCallArgs<'py>,
{
    match error_class(py, name).and_then(|class| class.call1(args)) {
        Ok(value) => PyErr::from_value(value),
        Err(err) => err,
    }
}

/// Maps a library error to the matching Python exception.
fn to_pyerr(py: Python<'_>, error: initret::Error) -> PyErr {
    use initret::Error;
    match error {
        Error::IndexOutOfRange {
            position,
            index,
            rows,
            ..
        } => raise(py, "IndexOutOfRange", (position, index, rows)),
        Error::InvalidTable(..) => {
            let text = error.to_string();
            let message = text.strip_prefix("invalid table: ").unwrap_or(&text);
            raise(py, "InvalidTable", (message.to_string(),))
        }
        Error::GpuUnavailable(..) => {
            let text = error.to_string();
            let reason = text
                .strip_prefix("GPU unavailable: ")
                .unwrap_or(&text)
                .to_string();
            raise(py, "GpuUnavailable", (reason,))
        }
        Error::IsaUnavailable { .. } => raise(py, "IsaUnavailable", (error.to_string(),)),
        Error::OutputLength { .. } => PyValueError::new_err(error.to_string()),
        Error::InvalidConfig(..) => PyValueError::new_err(error.to_string()),
        Error::DeviceLost(..) => raise(py, "GpuError", (error.to_string(), "DeviceLost")),
        Error::GpuTimeout { .. } => raise(py, "GpuError", (error.to_string(), "GpuTimeout")),
        Error::Gpu(..) => raise(py, "GpuError", (error.to_string(), "Gpu")),
        Error::ForeignGpuValue { .. } => {
            raise(py, "GpuError", (error.to_string(), "ForeignGpuValue"))
        }
        Error::CountsIncomplete => raise(py, "GpuError", (error.to_string(), "CountsIncomplete")),
        Error::Initializer { .. } => raise(py, "InitretError", (error.to_string(), "Initializer")),
        Error::InitializerPanicked { .. } => raise(
            py,
            "InitretError",
            (error.to_string(), "InitializerPanicked"),
        ),
        Error::TaskPanicked { .. } => {
            raise(py, "InitretError", (error.to_string(), "TaskPanicked"))
        }
        Error::ThreadSpawn(..) => raise(py, "InitretError", (error.to_string(), "ThreadSpawn")),
        Error::Internal(..) => raise(py, "InitretError", (error.to_string(), "Internal")),
        // `initret::Error` is non-exhaustive: a variant added later still
        // reaches Python, as the base class.
        other => raise(py, "InitretError", (other.to_string(), "Other")),
    }
}

/// An integer element type numpy may hand us for queries.
trait Query: numpy::Element + Copy + Send + Sync {
    /// The value as `u64`, negative values wrapping to huge ones (so one
    /// unsigned comparison against the row count rejects both).
    fn wrapped(self) -> u64;
    /// The value exactly, for error reports.
    fn wide(self) -> i128;
    /// `Some` when the slice already is `u32` queries, which go to the
    /// backend untouched.
    fn as_u32(queries: &[Self]) -> Option<&[u32]> {
        let _ = queries;
        None
    }
}

macro_rules! impl_query {
    ($($t:ty),*) => {$(
        impl Query for $t {
            #[inline(always)]
            fn wrapped(self) -> u64 {
                self as i64 as u64
            }
            fn wide(self) -> i128 {
                self as i128
            }
        }
    )*};
}
impl_query!(i8, i16, i32, i64, u8, u16);

impl Query for u64 {
    #[inline(always)]
    fn wrapped(self) -> u64 {
        self
    }
    fn wide(self) -> i128 {
        self as i128
    }
}

impl Query for u32 {
    #[inline(always)]
    fn wrapped(self) -> u64 {
        self as u64
    }
    fn wide(self) -> i128 {
        self as i128
    }
    fn as_u32(queries: &[u32]) -> Option<&[u32]> {
        Some(queries)
    }
}

/// Why a lookup failed, before it is turned into a Python exception.
enum LookupError {
    /// A query outside `0..rows` (negative, too large, past `u32::MAX`).
    Bad { position: usize, index: i128 },
    /// Any error from the library.
    Lib(initret::Error),
    /// A failure of the binding itself (threads, invariants).
    Other(String),
}

impl From<initret::Error> for LookupError {
    fn from(error: initret::Error) -> LookupError {
        LookupError::Lib(error)
    }
}

/// Converts `queries` to `u32` row indices in `out`, checking each against
/// `rows`. The loop is branch-free so that it vectorizes (compiled for
/// AVX-512 and AVX2 too, picked at run time); only a chunk with a bad query
/// is scanned again to find the first one.
fn convert<T: Query>(queries: &[T], rows: u64, out: &mut [u32]) -> Result<(), LookupError> {
    #[cfg(target_arch = "x86_64")]
    let bad = {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { convert_avx512(queries, rows, out) }
        } else if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            unsafe { convert_avx2(queries, rows, out) }
        } else {
            convert_flagged(queries, rows, out)
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let bad = convert_flagged(queries, rows, out);
    if !bad {
        return Ok(());
    }
    match queries.iter().position(|q| q.wrapped() >= rows) {
        Some(position) => Err(LookupError::Bad {
            position,
            index: queries[position].wide(),
        }),
        None => Err(LookupError::Other(
            "internal error: a bad query was flagged but not found".into(),
        )),
    }
}

/// The conversion loop proper: writes every query as `u32` and says whether
/// any was outside `0..rows`.
#[inline(always)]
fn convert_flagged<T: Query>(queries: &[T], rows: u64, out: &mut [u32]) -> bool {
    let mut bad = false;
    for (o, &q) in out.iter_mut().zip(queries) {
        let w = q.wrapped();
        bad |= w >= rows;
        *o = w as u32;
    }
    bad
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
fn convert_avx512<T: Query>(queries: &[T], rows: u64, out: &mut [u32]) -> bool {
    convert_flagged(queries, rows, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn convert_avx2<T: Query>(queries: &[T], rows: u64, out: &mut [u32]) -> bool {
    convert_flagged(queries, rows, out)
}

/// Of two failures, the one to report: the first bad position wins.
fn first_failure(a: LookupError, b: LookupError) -> LookupError {
    match (&a, &b) {
        (LookupError::Bad { position: pa, .. }, LookupError::Bad { position: pb, .. }) => {
            if pa <= pb { a } else { b }
        }
        (LookupError::Lib(initret::Error::IndexOutOfRange { .. }), LookupError::Bad { .. }) => b,
        (LookupError::Lib(_) | LookupError::Other(_), _) => a,
        (_, LookupError::Lib(_) | LookupError::Other(_)) => b,
    }
}

/// Lowers an [`initret::Error::IndexOutOfRange`] to [`LookupError::Bad`],
/// shifting its position by `offset`.
fn shifted(error: LookupError, offset: usize) -> LookupError {
    match error {
        LookupError::Bad { position, index } => LookupError::Bad {
            position: position + offset,
            index,
        },
        LookupError::Lib(initret::Error::IndexOutOfRange {
            position, index, ..
        }) => LookupError::Bad {
            position: position + offset,
            index: index as i128,
        },
        other => other,
    }
}

/// `initret.Dispatcher`: popcount lookups into a table placed once on a
/// backend.
///
/// ``Dispatcher(table, backend="cpu", threads=0)``
///
/// * ``table``: a numpy ``uint32`` array, 1-D (one word per row) or 2-D
///   (rows x words); any integer array-like whose values fit in 32 unsigned
///   bits is accepted. It is copied at build, so later changes to the
///   caller's array do not change results.
/// * ``backend``: ``"cpu"`` (SIMD kernels on worker threads), ``"gpu"``
///   (wgpu; raises ``GpuUnavailable`` when there is no adapter, never falls
///   back silently) or ``"auto"`` (the CPU, plus a real GPU for batches
///   above a crossover measured at build; see ``.note``).
/// * ``threads``: CPU worker threads, 0 for one per CPU.
///
/// A dispatcher may be shared by any number of Python threads; batches of
/// 2048 queries or more release the GIL while they run. It belongs to the
/// process that built it: after ``fork`` build a new one in the child
/// (for example in a ``Pool`` initializer or ``initret.dask.DispatcherPlugin``).
#[pyclass(frozen, name = "Dispatcher", module = "initret")]
struct PyDispatcher {
    inner: ManuallyDrop<Dispatcher>,
    /// The process that built it: its worker threads and GPU device exist
    /// only there.
    pid: u32,
    /// Threads for converting non-`u32` queries, started on first use.
    convert_pool: ManuallyDrop<OnceLock<Result<rayon::ThreadPool, String>>>,
    /// The last few large result arrays this dispatcher returned. One that
    /// Python no longer references anywhere else (its reference count is
    /// the pool's one) is filled again by the next call of the same shape
    /// instead of a new array, whose first touch costs a page fault per page
    /// (measured: 2.4–12 ms for a 64 MiB result, against 2.3–2.5 ms for the
    /// 2^24 lookups themselves).
    recycled: Mutex<Vec<Py<PyArrayDyn<u32>>>>,
}

/// Results of at least this many counts are kept for reuse (4 MiB).
const RECYCLE_MIN_LEN: usize = 1 << 20;

/// How many results a dispatcher keeps for reuse.
const RECYCLE_MAX: usize = 2;

impl Drop for PyDispatcher {
    fn drop(&mut self) {
        // A copy inherited through `fork` has no worker threads and no GPU
        // driver threads in this process: dropping it would wait for them
        // forever (joining the CPU workers, or inside the Vulkan driver).
        // Such a copy is left alone; the process's memory goes with it.
        if std::process::id() == self.pid {
            // SAFETY: dropped exactly once, here, and never used again.
            unsafe {
                ManuallyDrop::drop(&mut self.convert_pool);
                ManuallyDrop::drop(&mut self.inner);
            }
        }
    }
}

impl PyDispatcher {
    /// A result array of `shape` for a call without `out`: a kept one that
    /// nothing outside this dispatcher references any more, or a new one.
    fn fresh_output<'py>(&self, py: Python<'py>, shape: &[usize]) -> Bound<'py, PyArrayDyn<u32>> {
        if shape.iter().product::<usize>() >= RECYCLE_MIN_LEN {
            let mut recycled = self.recycled.lock().unwrap_or_else(PoisonError::into_inner);
            // A reference count of 1 is the pool's own reference: no
            // variable, view, memoryview or container holds the array. The
            // GIL is held, so none can appear while it is taken out.
            let free = recycled.iter().position(|kept| {
                let kept = kept.bind(py);
                // SAFETY: `kept` is a live object and the GIL is held.
                let references = unsafe { pyo3::ffi::Py_REFCNT(kept.as_ptr()) };
                references == 1
                    && kept.shape() == shape
                    && kept.is_c_contiguous()
                    && kept.try_readwrite().is_ok()
            });
            if let Some(k) = free {
                return recycled.swap_remove(k).into_bound(py);
            }
        }
        // SAFETY: every element is written by the lookup before the array
        // is returned; on error the array is dropped unread.
        unsafe { PyArrayDyn::<u32>::new(py, shape, false) }
    }

    /// Keeps a large result, so that once Python drops it the next call of
    /// its shape can fill it again (see `recycled`).
    fn keep_for_reuse(&self, result: &Bound<'_, PyArrayDyn<u32>>) {
        if result.len() < RECYCLE_MIN_LEN {
            return;
        }
        let mut recycled = self.recycled.lock().unwrap_or_else(PoisonError::into_inner);
        if recycled.len() >= RECYCLE_MAX {
            recycled.remove(0);
        }
        recycled.push(result.clone().unbind());
    }

    fn check_process(&self) -> PyResult<()> {
        if std::process::id() != self.pid {
            return Err(PyRuntimeError::new_err(
                "this Dispatcher was built in another process (it was inherited through fork), \
                 where its worker threads and GPU device live; build a new Dispatcher in this \
                 process, e.g. in a Pool initializer",
            ));
        }
        Ok(())
    }

    fn convert_pool(&self) -> Result<&rayon::ThreadPool, LookupError> {
        let threads = self.inner.cpu().map(|cpu| cpu.threads()).unwrap_or(0);
        self.convert_pool
            .get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("initret-convert-{i}"))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| LookupError::Other(format!("could not start conversion threads: {e}")))
    }

    /// The lookups proper; runs without the GIL for large batches.
    fn lookup<T: Query>(&self, queries: &[T], out: &mut [u32]) -> Result<(), LookupError> {
        let n = queries.len();
        if let Some(queries) = T::as_u32(queries) {
            // The backend decides itself which batches run on the calling
            // thread (the seed's 65535 do) and which go to its workers.
            return self
                .inner
                .popcount_into(queries, out)
                .map_err(|e| shifted(e.into(), 0));
        }
        let rows = self.inner.rows() as u64;
        if self.inner.route(n) == Backend::Gpu {
            // The GPU wants the whole batch in one call: convert it all
            // (in parallel when large), then look it up.
            let mut converted = vec![0u32; n];
            if n <= SEQUENTIAL_MAX_QUERIES {
                convert(queries, rows, &mut converted)?;
            } else {
                self.convert_pool()?.install(|| {
                    converted
                        .par_chunks_mut(CONVERT_CHUNK)
                        .zip(queries.par_chunks(CONVERT_CHUNK))
                        .enumerate()
                        .map(|(i, (c, q))| {
                            convert(q, rows, c).map_err(|e| shifted(e, i * CONVERT_CHUNK))
                        })
                        .filter_map(Result::err)
                        .reduce_with(first_failure)
                        .map_or(Ok(()), Err)
                })?;
            }
            return self
                .inner
                .popcount_into(&converted, out)
                .map_err(|e| shifted(e.into(), 0));
        }
        // CPU: convert a chunk into a small per-thread buffer and look it up
        // right away, on the same thread, while it is still in cache. Up to
        // SEQUENTIAL_MAX_QUERIES this runs on the calling thread (waking
        // other threads costs more than it saves); beyond, chunks are spread
        // over the conversion threads.
        let chunk = |i: usize, q: &[T], o: &mut [u32]| -> Result<(), LookupError> {
            CHUNK_BUFFER.with(|buffer| {
                let mut buffer = buffer.borrow_mut();
                buffer.resize(CONVERT_CHUNK, 0);
                let buffer = &mut buffer[..q.len()];
                convert(q, rows, buffer)
                    .and_then(|()| self.inner.popcount_into(buffer, o).map_err(Into::into))
                    .map_err(|e| shifted(e, i * CONVERT_CHUNK))
            })
        };
        if n <= SEQUENTIAL_MAX_QUERIES {
            return queries
                .chunks(CONVERT_CHUNK)
                .zip(out.chunks_mut(CONVERT_CHUNK))
                .enumerate()
                .try_for_each(|(i, (q, o))| chunk(i, q, o));
        }
        self.convert_pool()?.install(|| {
            out.par_chunks_mut(CONVERT_CHUNK)
                .zip(queries.par_chunks(CONVERT_CHUNK))
                .enumerate()
                .map(|(i, (o, q))| chunk(i, q, o))
                .filter_map(Result::err)
                .reduce_with(first_failure)
                .map_or(Ok(()), Err)
        })
    }

    /// Runs [`Self::lookup`], releasing the GIL for large batches, and turns
    /// a failure into the Python exception.
    fn lookup_py<T: Query>(&self, py: Python<'_>, queries: &[T], out: &mut [u32]) -> PyResult<()> {
        let result = if queries.len() >= DETACH_MIN_QUERIES {
            py.detach(|| self.lookup(queries, out))
        } else {
            self.lookup(queries, out)
        };
        result.map_err(|e| match e {
            LookupError::Bad { position, index } => {
                raise(py, "IndexOutOfRange", (position, index, self.inner.rows()))
            }
            LookupError::Lib(e) => to_pyerr(py, e),
            LookupError::Other(message) => raise(py, "InitretError", (message, "Internal")),
        })
    }

    /// Looks up a C-contiguous, native-order integer array into `out`.
    fn run(
        &self,
        py: Python<'_>,
        queries: &Bound<'_, PyUntypedArray>,
        out: &mut [u32],
    ) -> PyResult<()> {
        macro_rules! try_type {
            ($($t:ty),*) => {$(
                if let Ok(array) = queries.cast::<PyArrayDyn<$t>>() {
                    return match array.try_readonly() {
                        Ok(readonly) => {
                            let slice = readonly.as_slice().map_err(|e| {
                                PyRuntimeError::new_err(format!("queries are not contiguous: {e}"))
                            })?;
                            self.lookup_py(py, slice, out)
                        }
                        // `out` overlaps the queries: look up a copy of them.
                        Err(_) => {
                            let copy = queries.call_method0("copy")?.cast_into::<PyUntypedArray>()?;
                            self.run(py, &copy, out)
                        }
                    };
                }
            )*};
        }
        try_type!(u32, i64, i32, u64, u16, u8, i16, i8);
        Err(PyTypeError::new_err(format!(
            "queries must be integers; got an array of dtype {}",
            queries.dtype()
        )))
    }
}

/// The query array to look up: C-contiguous, native byte order, an integer
/// dtype. Lists and other array-likes go through `numpy.asarray`; an empty
/// list becomes an empty `uint32` array; object arrays (Python ints too big
/// for int64) are converted element by element.
fn query_array<'py>(
    py: Python<'py>,
    queries: &Bound<'py, PyAny>,
    rows: usize,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let given_array = queries.is_instance_of::<PyUntypedArray>();
    let mut array = if given_array {
        queries.cast::<PyUntypedArray>()?.clone()
    } else {
        numpy(py)?
            .call_method1("asarray", (queries,))?
            .cast_into::<PyUntypedArray>()?
    };
    match array.dtype().kind() {
        b'i' | b'u' => {}
        b'O' => return object_queries(py, &array, rows),
        _ if !given_array && array.is_empty() => {
            return numpy(py)?
                .call_method1("zeros", (array.shape().to_vec(), "uint32"))?
                .cast_into::<PyUntypedArray>()
                .map_err(PyErr::from);
        }
        _ => {
            return Err(PyTypeError::new_err(format!(
                "queries must be integers; got {} of dtype {}",
                if given_array { "an array" } else { "values" },
                array.dtype()
            )));
        }
    }
    if array.dtype().is_native_byteorder() == Some(false) {
        let native = array.dtype().call_method1("newbyteorder", ("=",))?;
        array = array
            .call_method1("astype", (native,))?
            .cast_into::<PyUntypedArray>()?;
    }
    if !array.is_c_contiguous() || !array.is_aligned() {
        // A strided view, or a buffer at an odd address (arrays rebuilt
        // from network buffers, e.g. by Dask, can be): an aligned C copy.
        array = array
            .call_method1("copy", ("C",))?
            .cast_into::<PyUntypedArray>()?;
    }
    Ok(array)
}

/// An object array of queries (Python ints of any size, numpy integer
/// scalars) as a `uint32` array; floats and other objects are a `TypeError`,
/// an int outside `0..rows` is `IndexOutOfRange` naming the original value.
fn object_queries<'py>(
    py: Python<'py>,
    array: &Bound<'py, PyUntypedArray>,
    rows: usize,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let operator = py.import("operator")?;
    let flat = array.call_method0("ravel")?;
    let mut converted = Vec::with_capacity(array.len());
    for (position, item) in flat.try_iter()?.enumerate() {
        let item = item?;
        if item.is_instance_of::<pyo3::types::PyBool>() {
            return Err(PyTypeError::new_err(
                "queries must be integers; got a bool (boolean masks are not queries)",
            ));
        }
        let index = operator.call_method1("index", (&item,)).map_err(|_| {
            PyTypeError::new_err(format!(
                "queries must be integers; got {} at position {position}",
                item.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        match index.extract::<i128>() {
            Ok(i) if i >= 0 && (i as u128) < rows as u128 => converted.push(i as u32),
            _ => return Err(raise(py, "IndexOutOfRange", (position, index, rows))),
        }
    }
    let shape = array.shape().to_vec();
    PyArray1::<u32>::from_vec(py, converted)
        .reshape(shape)
        .map(|a| a.as_untyped().clone())
}

/// The table as a [`BitTable`]: 1-D (one word per row) or 2-D (rows x
/// words), integer values that fit in 32 unsigned bits, copied.
fn table_from_py(py: Python<'_>, table: &Bound<'_, PyAny>) -> PyResult<BitTable> {
    let numpy = numpy(py)?;
    let array = numpy
        .call_method1("asarray", (table,))?
        .cast_into::<PyUntypedArray>()?;
    let shape = array.shape().to_vec();
    let (rows, words) = match shape[..] {
        [rows] => (rows, 1),
        [rows, words] => (rows, words),
        _ => {
            return Err(raise(
                py,
                "InvalidTable",
                (format!(
                    "the table must be 1-D (one word per row) or 2-D (rows x words); got {} dimensions",
                    shape.len()
                ),),
            ));
        }
    };
    if rows == 0 || words == 0 {
        return Err(raise(
            py,
            "InvalidTable",
            (format!(
                "the table has {rows} rows of {words} words; it needs at least one row of at least one word"
            ),),
        ));
    }
    match array.dtype().kind() {
        b'u' | b'i' => {}
        _ => {
            return Err(PyTypeError::new_err(format!(
                "the table must hold 32-bit words (numpy uint32); got dtype {}",
                array.dtype()
            )));
        }
    }
    let is_u32 = array.dtype().is_equiv_to(&numpy::dtype::<u32>(py));
    if !is_u32 {
        let low = array.call_method0("min")?;
        let high = array.call_method0("max")?;
        let low_ok = low.extract::<i128>()? >= 0;
        let high_ok = high.extract::<i128>()? <= i128::from(u32::MAX);
        if !low_ok || !high_ok {
            return Err(raise(
                py,
                "InvalidTable",
                (format!(
                    "table values must fit in 32 unsigned bits; they range from {low} to {high}"
                ),),
            ));
        }
    }
    let mut contiguous = numpy
        .call_method1("ascontiguousarray", (array, "uint32"))?
        .cast_into::<PyArrayDyn<u32>>()?;
    if !contiguous.is_aligned() {
        contiguous = contiguous
            .call_method1("copy", ("C",))?
            .cast_into::<PyArrayDyn<u32>>()?;
    }
    let readonly = contiguous
        .try_readonly()
        .map_err(|e| PyRuntimeError::new_err(format!("the table could not be read: {e}")))?;
    let data = readonly
        .as_slice()
        .map_err(|e| PyRuntimeError::new_err(format!("the table is not contiguous: {e}")))?
        .to_vec();
    BitTable::from_rows(words, data).map_err(|e| to_pyerr(py, e))
}

#[pymethods]
impl PyDispatcher {
    #[new]
    #[pyo3(signature = (table, backend = "cpu", threads = 0))]
    fn new(
        py: Python<'_>,
        table: &Bound<'_, PyAny>,
        backend: &str,
        threads: i64,
    ) -> PyResult<Self> {
        let backend = match backend.trim().to_ascii_lowercase().as_str() {
            "cpu" => Backend::Cpu,
            "gpu" => Backend::Gpu,
            "auto" => Backend::Auto,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown backend {other:?}; expected \"cpu\", \"gpu\" or \"auto\""
                )));
            }
        };
        let threads = usize::try_from(threads)
            .ok()
            .filter(|&t| t <= MAX_THREADS)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "threads must be 0 (one per CPU) to {MAX_THREADS}; got {threads}"
                ))
            })?;
        let table = table_from_py(py, table)?;
        let inner = py
            .detach(|| {
                Dispatcher::builder(table)
                    .backend(backend)
                    .threads(threads)
                    .build()
            })
            .map_err(|e| to_pyerr(py, e))?;
        Ok(PyDispatcher {
            inner: ManuallyDrop::new(inner),
            pid: std::process::id(),
            convert_pool: ManuallyDrop::new(OnceLock::new()),
            recycled: Mutex::new(Vec::new()),
        })
    }

    /// popcount(queries, out=None) -> numpy.ndarray
    ///
    /// The popcount of each queried row, as a ``uint32`` array of the
    /// queries' shape.
    ///
    /// ``queries`` may be any integer array-like: numpy arrays of any
    /// integer dtype (strided views too), lists, ranges. A query outside
    /// ``0 .. rows`` (negative, too large, past 2**32) raises
    /// ``IndexOutOfRange`` naming the first bad position (in C order);
    /// negative indices never wrap around. Floats, bools and other
    /// non-integers raise ``TypeError``.
    ///
    /// ``out``, if given, must be a writable ``uint32`` array of the
    /// queries' shape; it is filled in place and returned. After an error it
    /// may be partly written.
    #[pyo3(signature = (queries, out = None))]
    fn popcount<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        out: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_process()?;
        let queries = query_array(py, queries, self.inner.rows())?;
        let shape = queries.shape().to_vec();
        let Some(out) = out else {
            let result = self.fresh_output(py, &shape);
            {
                let mut writer = result.try_readwrite().map_err(|e| {
                    PyRuntimeError::new_err(format!("a new array cannot be written: {e}"))
                })?;
                let slice = writer.as_slice_mut().map_err(|e| {
                    PyRuntimeError::new_err(format!("a new array is not contiguous: {e}"))
                })?;
                self.run(py, &queries, slice)?;
            }
            self.keep_for_reuse(&result);
            return Ok(result.into_any());
        };
        let target = out
            .cast::<PyArrayDyn<u32>>()
            .map_err(|_| PyTypeError::new_err("out must be a numpy.ndarray of dtype uint32"))?;
        if target.shape() != shape.as_slice() {
            return Err(PyValueError::new_err(format!(
                "out has shape {:?} but the queries have shape {:?}",
                target.shape(),
                shape
            )));
        }
        if target.is_c_contiguous() && target.is_aligned() {
            let mut writer = target
                .try_readwrite()
                .map_err(|e| PyValueError::new_err(format!("out cannot be written: {e}")))?;
            let slice = writer
                .as_slice_mut()
                .map_err(|e| PyRuntimeError::new_err(format!("out is not contiguous: {e}")))?;
            self.run(py, &queries, slice)?;
        } else {
            if target.try_readwrite().is_err() {
                return Err(PyValueError::new_err(
                    "out cannot be written: it is read-only",
                ));
            }
            let counts = self.popcount(py, queries.as_any(), None)?;
            numpy(py)?.call_method1("copyto", (target, counts))?;
        }
        Ok(out.clone())
    }

    /// "cpu" or "gpu": where a batch of ``queries`` queries would run now.
    fn route(&self, queries: usize) -> String {
        self.inner.route(queries).to_string()
    }

    /// One line saying what runs the lookups (backend, kernel, threads or
    /// adapter).
    fn describe(&self) -> String {
        self.inner.describe()
    }

    /// The backend that was asked for: "cpu", "gpu" or "auto".
    #[getter]
    fn backend(&self) -> String {
        self.inner.requested_backend().to_string()
    }

    /// The lookup kernel: for the "cpu" and "auto" backends, the CPU kernel
    /// that measured fastest when the dispatcher was built (such as
    /// "avx512-loads", "avx2-gather" or "scalar-pf128"; see
    /// ``initret.info()``); "wgsl" for "gpu".
    #[getter]
    fn kernel(&self) -> String {
        match self.inner.cpu() {
            Some(cpu) => cpu.kernel().name(),
            None => "wgsl".to_string(),
        }
    }

    /// For ``backend="auto"``: why batches go where they go (no GPU, a
    /// software adapter, the measured crossover, a lost device). ``None``
    /// for the other backends.
    #[getter]
    fn note(&self) -> Option<String> {
        self.inner.note()
    }

    /// The GPU adapter's name when a GPU is in use, else ``None``.
    #[getter]
    fn adapter(&self) -> Option<String> {
        self.inner.gpu().map(|gpu| gpu.adapter().name.clone())
    }

    /// Number of rows; valid queries are ``0 .. rows``.
    #[getter]
    fn rows(&self) -> usize {
        self.inner.rows()
    }

    /// Words (32-bit) per row.
    #[getter]
    fn words_per_row(&self) -> usize {
        self.inner.words_per_row()
    }

    /// CPU worker threads (0 for the "gpu" backend).
    #[getter]
    fn threads(&self) -> usize {
        self.inner.cpu().map(|cpu| cpu.threads()).unwrap_or(0)
    }

    fn __repr__(&self) -> String {
        format!(
            "<initret.Dispatcher rows={} words_per_row={} backend={}: {}>",
            self.inner.rows(),
            self.inner.words_per_row(),
            self.inner.requested_backend(),
            self.inner.describe()
        )
    }
}

/// info() -> dict
///
/// What this machine offers initret: CPU features, the CPU kernels
/// available and the one that would be chosen, and the GPU adapters.
#[pyfunction]
fn info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("version", env!("CARGO_PKG_VERSION"))?;
    let features = PyDict::new(py);
    for (name, present) in initret::arch::cpu_features() {
        features.set_item(name, present)?;
    }
    dict.set_item("cpu_features", features)?;
    let kernels: Vec<String> = initret::arch::Kernel::available()
        .into_iter()
        .map(|kernel| kernel.name())
        .collect();
    dict.set_item("kernels", kernels)?;
    // Which kernel runs is measured per table when a dispatcher is built
    // (`Dispatcher.kernel`); what can be said here is the ISA they come from.
    match initret::arch::Isa::selected() {
        Ok(isa) => dict.set_item("isa", isa.name())?,
        Err(e) => dict.set_item("isa", format!("error: {e}"))?,
    }
    dict.set_item(
        "cpus",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    )?;
    let adapters = PyList::empty(py);
    for adapter in py.detach(initret::gpu::adapters) {
        let a = PyDict::new(py);
        a.set_item("name", &adapter.name)?;
        a.set_item("backend", &adapter.backend)?;
        a.set_item("device_type", &adapter.device_type)?;
        a.set_item("driver", &adapter.driver)?;
        a.set_item("driver_info", &adapter.driver_info)?;
        a.set_item(
            "max_storage_buffer_binding_size",
            adapter.max_storage_buffer_binding_size,
        )?;
        a.set_item("max_buffer_size", adapter.max_buffer_size)?;
        a.set_item("summary", adapter.to_string())?;
        adapters.append(a)?;
    }
    dict.set_item("gpu_adapters", adapters)?;
    Ok(dict)
}

/// The compiled half of the ``initret`` package; import ``initret`` instead.
#[pymodule]
fn _initret(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDispatcher>()?;
    m.add_function(wrap_pyfunction!(info, m)?)?;
    m.add("SEED_ROWS", initret::SEED_ROWS)?;
    m.add("SEED_CHECKSUM", initret::SEED_CHECKSUM)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
