//! `initret.Dispatcher`.

use std::mem::ManuallyDrop;
use std::sync::Mutex;

use initret::arch::CountWord;
use initret::arch::KernelRequest;
use initret::{Dispatcher, DispatcherBuilder, Placement};
use numpy::{
    Element, PyArrayDescr, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::arguments::{backend_from_py, kernel_request_from_py, table_from_py, threads_from_py};
use crate::errors::to_pyerr;
use crate::numpy;
use crate::output::{RecycledResults, ResultType, unwritable_out, with_result_type};
use crate::queries::{Lookup, query_array};
use crate::sharing::{CountsLayout, counts_view, dispatcher_over, pickled_cpu};

/// `initret.Dispatcher`: popcount lookups into a table placed once on a
/// backend.
///
/// ``Dispatcher(table, backend="cpu", threads=0, *, kernel=None, isa=None, placement="per-domain", inline_max_queries=None)``
///
/// * ``table``: a numpy ``uint32`` array, 1-D (one word per row) or 2-D
///   (rows x words); any integer array-like whose values fit in 32 unsigned
///   bits is accepted. It is copied at build, so later changes to the
///   caller's array do not change results.
/// * ``backend``: ``"cpu"`` (SIMD kernels on worker threads), ``"gpu"``
///   (wgpu; raises ``GpuUnavailable`` when there is no adapter, never falls
///   back silently) or ``"auto"`` (the CPU, plus a real GPU for batches
///   above a crossover measured at build; see ``.note``).
/// * ``threads``: CPU worker threads, 0 for one per CPU, at most 1024.
/// * ``kernel``: fixes the CPU kernel, unmeasured, by name (as
///   ``initret.info()["kernels"]`` lists them; ``"scalar-loads"`` for the
///   plain scalar loop). Overrides ``INITRET_FORCE_ISA``.
/// * ``isa``: measures only this instruction set's kernels (``"scalar"``,
///   ``"avx2"``, ``"avx512"``, ``"neon"``). Overrides ``INITRET_FORCE_ISA``,
///   which is otherwise read each time a dispatcher is built.
/// * ``placement``: how the CPU backend places its count table:
///   ``"per-domain"`` (one copy per cache domain, the CPUs sharing a
///   last-level cache and NUMA node; workers pinned there when there are
///   several), ``"shared"`` (one copy) or ``"per-worker"`` (one per
///   thread, the baseline). ``describe()`` says what was placed where.
/// * ``inline_max_queries``: CPU batches up to this many queries run on the
///   calling thread, longer ones are split across the workers. ``None``
///   (the default) measures where splitting pays, with the workers parked
///   first so that their wake-up counts (with one thread every batch runs
///   on the calling thread); ``describe()`` shows the limits.
///
/// A dispatcher may be shared by any number of Python threads; batches of
/// 2048 queries or more release the GIL while they run. It belongs to the
/// process that built it: after ``fork`` build a new one in the child
/// (for example in a ``Pool`` initializer or ``initret.dask.DispatcherPlugin``).
#[pyclass(frozen, name = "Dispatcher", module = "initret")]
pub(crate) struct PyDispatcher {
    inner: ManuallyDrop<Dispatcher>,
    /// The process that built it: its worker threads and GPU device exist
    /// only there.
    pid: u32,
    /// Large results kept for the next call of the same shape.
    recycled: RecycledResults,
    /// What the pickling code (Python's, `initret/_share.py`) keeps on
    /// this dispatcher: the shared memory segments holding its counts.
    sharing: Mutex<Option<Py<PyAny>>>,
    /// The kernel (`kernel=`) or ISA (`isa=`) this dispatcher was asked
    /// for, which a pickled copy asks for too.
    kernel_request: Option<KernelRequest>,
    /// The inline limit it was given (`inline_max_queries=`), which a
    /// pickled copy is given too; `None`: measured.
    inline_max_queries: Option<usize>,
}

impl Drop for PyDispatcher {
    fn drop(&mut self) {
        // A copy inherited through `fork` has no worker threads and no GPU
        // driver threads in this process: dropping it would wait for them
        // forever (joining the CPU workers, or inside the Vulkan driver).
        // Such a copy is left alone; the process's memory goes with it.
        if std::process::id() == self.pid {
            // SAFETY: dropped exactly once, here, and never used again.
            unsafe {
                ManuallyDrop::drop(&mut self.inner);
            }
        }
    }
}

impl PyDispatcher {
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

    fn wrap(inner: Dispatcher) -> PyDispatcher {
        PyDispatcher {
            inner: ManuallyDrop::new(inner),
            pid: std::process::id(),
            recycled: RecycledResults::default(),
            sharing: Mutex::new(None),
            kernel_request: None,
            inline_max_queries: None,
        }
    }

    fn lookup(&self) -> Lookup<'_> {
        Lookup {
            dispatcher: &self.inner,
        }
    }

    /// The natural result type: the smallest that holds every count.
    fn result_type(&self) -> ResultType {
        ResultType::of_bytes(self.inner.result_bytes())
    }

    /// `popcount` once the result type `R` is settled (and holds the
    /// counts): into a fresh array, or into `out` (whose dtype is `R`).
    fn popcount_as<'py, R: CountWord + Element>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyUntypedArray>,
        out: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let shape = queries.shape().to_vec();
        let Some(out) = out else {
            let result = self.recycled.fresh::<R>(py, &shape);
            {
                let mut writer = result.try_readwrite().map_err(|e| {
                    PyRuntimeError::new_err(format!("a new array cannot be written: {e}"))
                })?;
                let slice = writer.as_slice_mut().map_err(|e| {
                    PyRuntimeError::new_err(format!("a new array is not contiguous: {e}"))
                })?;
                self.lookup().run(py, queries, slice)?;
            }
            self.recycled.keep(&result);
            return Ok(result.into_any());
        };
        let target = out
            .cast::<PyArrayDyn<R>>()
            .map_err(|_| PyTypeError::new_err("out changed its dtype during the call"))?;
        if target.shape() != shape.as_slice() {
            return Err(PyValueError::new_err(format!(
                "out has shape {:?} but the queries have shape {:?}",
                target.shape(),
                shape
            )));
        }
        // `out` may share memory with the queries through another object
        // (two `np.frombuffer` views of one buffer): compared by address
        // bounds, as numpy's ufuncs do, and then computed into a temporary
        // and copied, so the counts are right whatever the overlap.
        let overlaps = numpy(py)?
            .call_method1("may_share_memory", (queries, target))?
            .is_truthy()?;
        if target.is_c_contiguous() && target.is_aligned() && !overlaps {
            let mut writer = target.try_readwrite().map_err(|_| unwritable_out(out))?;
            let slice = writer
                .as_slice_mut()
                .map_err(|e| PyRuntimeError::new_err(format!("out is not contiguous: {e}")))?;
            self.lookup().run(py, queries, slice)?;
        } else {
            if target.try_readwrite().is_err() {
                return Err(unwritable_out(out));
            }
            let counts = self.popcount_as::<R>(py, queries, None)?;
            numpy(py)?.call_method1("copyto", (target, counts))?;
        }
        Ok(out.clone())
    }
}

#[pymethods]
impl PyDispatcher {
    #[new]
    #[pyo3(
        signature = (table, backend = "cpu", threads = None, *, kernel = None, isa = None, placement = "per-domain", inline_max_queries = None),
        text_signature = "(table, backend='cpu', threads=0, *, kernel=None, isa=None, placement='per-domain', inline_max_queries=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        table: &Bound<'_, PyAny>,
        backend: &str,
        threads: Option<&Bound<'_, PyAny>>,
        kernel: Option<&str>,
        isa: Option<&str>,
        placement: &str,
        inline_max_queries: Option<usize>,
    ) -> PyResult<Self> {
        let placement = placement
            .parse::<Placement>()
            .map_err(|e| to_pyerr(py, e))?;
        let backend = backend_from_py(py, backend)?;
        let threads = threads.map_or(Ok(0), threads_from_py)?;
        let request = kernel_request_from_py(py, kernel, isa)?;
        let table = table_from_py(py, table)?;
        let inner = py
            .detach(|| {
                let builder = Dispatcher::builder(table)
                    .backend(backend)
                    .threads(threads)
                    .placement(placement);
                with_requests(builder, request, inline_max_queries).build()
            })
            .map_err(|e| to_pyerr(py, e))?;
        let mut dispatcher = PyDispatcher::wrap(inner);
        dispatcher.kernel_request = request;
        dispatcher.inline_max_queries = inline_max_queries;
        Ok(dispatcher)
    }

    /// popcount(queries, out=None, *, dtype=None) -> numpy.ndarray
    ///
    /// The popcount of each queried row, as an array of the queries' shape
    /// whose dtype is, by default, the dispatcher's ``result_dtype``: the
    /// smallest of ``uint8``, ``uint16`` and ``uint32`` that holds the
    /// table's largest row count, as numpy's ``counts[q]`` returns the
    /// counts' own dtype (``uint8`` for rows of up to 7 words). A narrower
    /// result moves fewer bytes: for 1-word rows a ``uint8`` result is a
    /// quarter of a ``uint32`` one.
    ///
    /// ``queries`` may be any integer array-like: numpy arrays of any
    /// integer dtype (strided views too), lists, ranges. ``int64``,
    /// ``uint64`` and ``uint32`` arrays are read in place. A query outside
    /// ``0 .. rows`` (negative, too large, past 2**32) raises
    /// ``IndexOutOfRange`` naming the first bad position (in C order);
    /// negative indices never wrap around. Floats, bools and other
    /// non-integers raise ``TypeError``.
    ///
    /// ``dtype`` (``uint8``, ``uint16`` or ``uint32``) asks for another
    /// result type: a wider one widens the counts (``dtype=np.uint32`` gives
    /// what every call returned before 0.2). ``out``, if given, must be a
    /// writable ``uint8``, ``uint16`` or ``uint32`` array of the queries'
    /// shape; it is filled in place and returned, and its dtype is the
    /// result type (``dtype``, if also given, must name the same one). A
    /// type narrower than ``result_dtype`` raises ``OutputTooNarrow`` (a
    /// ``ValueError``) before anything is written; after any other error
    /// ``out`` may be partly written.
    #[pyo3(signature = (queries, out = None, *, dtype = None))]
    fn popcount<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        out: Option<&Bound<'py, PyAny>>,
        dtype: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_process()?;
        let requested = dtype
            .filter(|d| !d.is_none())
            .map(ResultType::of_dtype_arg)
            .transpose()?;
        let given = out.map(ResultType::of_out).transpose()?;
        let result_type = match (requested, given) {
            (Some(asked), Some(given)) if asked != given => {
                return Err(PyValueError::new_err(format!(
                    "dtype={} but out has dtype {}: give one, or the same in both",
                    asked.dtype(py),
                    given.dtype(py)
                )));
            }
            (_, Some(given)) => given,
            (Some(asked), None) => asked,
            (None, None) => self.result_type(),
        };
        initret::Error::check_output_width_bytes(result_type.bytes(), self.inner.result_bytes())
            .map_err(|e| to_pyerr(py, e))?;
        let queries = query_array(py, queries, self.inner.rows())?;
        with_result_type!(result_type, R => self.popcount_as::<R>(py, &queries, out))
    }

    /// ``(rows, bytes_per_count, words_per_row, backend, threads,
    /// placement, kernel, isa, inline_max_queries)``: what a pickle of this
    /// dispatcher must carry besides its counts to build the same
    /// dispatcher again (the kernel, ISA or inline limit only when one was
    /// asked for). Raises ``TypeError`` for
    /// a dispatcher whose counts live on the GPU only. Not API: pickling
    /// (``initret/_share.py``, through ``copyreg``) calls it.
    fn _pickle_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.check_process()?;
        let cpu = pickled_cpu(&self.inner)?;
        let kernel = match self.kernel_request {
            Some(KernelRequest::Fixed(kernel)) => Some(kernel.name()),
            _ => None,
        };
        let isa = match self.kernel_request {
            Some(KernelRequest::Measure { isa: Some(isa) }) => Some(isa.name()),
            _ => None,
        };
        (
            self.inner.rows(),
            cpu.counts().bytes_per_count(),
            self.inner.words_per_row(),
            self.inner.requested_backend().to_string(),
            cpu.threads(),
            cpu.placement().to_string(),
            kernel,
            isa,
            self.inline_max_queries,
        )
            .into_pyobject(py)
    }

    /// Whatever the pickling code keeps on this dispatcher (the shared
    /// memory segments of its counts); ``None`` until it sets it. Not API.
    #[getter]
    fn _sharing(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let slot = self
            .sharing
            .lock()
            .map_err(|_| PyRuntimeError::new_err("a pickle of this Dispatcher panicked"))?;
        Ok(slot.as_ref().map_or_else(|| py.None(), |o| o.clone_ref(py)))
    }

    #[setter(_sharing)]
    fn set_sharing(&self, value: Py<PyAny>) -> PyResult<()> {
        *self
            .sharing
            .lock()
            .map_err(|_| PyRuntimeError::new_err("a pickle of this Dispatcher panicked"))? =
            Some(value);
        Ok(())
    }

    /// A Dispatcher over counts already derived (what pickling sends):
    /// ``counts`` a read-only ``uint8`` array of the count bytes in
    /// immutable memory, read in place and kept alive. Not API: use pickle.
    #[staticmethod]
    #[pyo3(signature = (counts, rows, bytes_per_count, words_per_row, backend, threads, placement, kernel = None, isa = None, inline_max_queries = None))]
    #[allow(clippy::too_many_arguments)]
    fn _from_counts(
        py: Python<'_>,
        counts: &Bound<'_, PyUntypedArray>,
        rows: usize,
        bytes_per_count: usize,
        words_per_row: usize,
        backend: &str,
        threads: usize,
        placement: &str,
        kernel: Option<&str>,
        isa: Option<&str>,
        inline_max_queries: Option<usize>,
    ) -> PyResult<PyDispatcher> {
        let backend = backend_from_py(py, backend)?;
        let placement = placement
            .parse::<Placement>()
            .map_err(|e| to_pyerr(py, e))?;
        let request = kernel_request_from_py(py, kernel, isa)?;
        dispatcher_over(
            py,
            counts,
            CountsLayout {
                rows,
                bytes_per_count,
                words_per_row,
            },
            |builder| {
                with_requests(builder, request, inline_max_queries)
                    .backend(backend)
                    .threads(threads)
                    .placement(placement)
            },
        )
        .map(|inner| {
            let mut dispatcher = PyDispatcher::wrap(inner);
            dispatcher.kernel_request = request;
            dispatcher.inline_max_queries = inline_max_queries;
            dispatcher
        })
    }

    /// ``(counts, bytes_per_count)``: this dispatcher's derived counts as a
    /// read-only ``uint8`` view (it keeps the dispatcher alive) and their
    /// width. Not API: what ``initret.dask`` places once per host.
    fn _counts<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, usize)> {
        let this = slf.get();
        this.check_process()?;
        let cpu = pickled_cpu(&this.inner)?;
        let view = counts_view(slf.py(), cpu, slf.clone().into_any())?;
        Ok((view.into_any(), cpu.counts().bytes_per_count()))
    }

    /// Whether the counts are read in place from memory this dispatcher
    /// does not own (an unpickled dispatcher's shared memory).
    #[getter]
    fn counts_shared(&self) -> bool {
        self.inner
            .cpu()
            .is_some_and(|cpu| cpu.counts().is_borrowed())
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
        self.inner.auto_decision()
    }

    /// The GPU adapter's name when a GPU is in use, else ``None``.
    #[getter]
    fn adapter(&self) -> Option<String> {
        self.inner.gpu().map(|gpu| gpu.adapter().name.clone())
    }

    /// The dtype ``popcount`` returns by default: the smallest of
    /// ``uint8``, ``uint16`` and ``uint32`` that holds the table's largest
    /// row count (``uint8`` for rows of up to 7 words), as numpy's
    /// ``counts[q]`` returns the counts' own dtype. The same on every
    /// backend.
    #[getter]
    fn result_dtype<'py>(&self, py: Python<'py>) -> Bound<'py, PyArrayDescr> {
        self.result_type().dtype(py)
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

/// `builder` asked for the kernel or ISA of `request` and the inline
/// limit `inline_max_queries`, where given.
fn with_requests(
    builder: DispatcherBuilder,
    request: Option<KernelRequest>,
    inline_max_queries: Option<usize>,
) -> DispatcherBuilder {
    let builder = match request {
        Some(KernelRequest::Fixed(kernel)) => builder.kernel(kernel),
        Some(KernelRequest::Measure { isa: Some(isa) }) => builder.isa(isa),
        _ => builder,
    };
    match inline_max_queries {
        Some(queries) => builder.inline_max_queries(queries),
        None => builder,
    }
}
