//! `initret.SharedDict`, `initret.SharedList` and `freeze`: Python dicts
//! and lists in one frozen buffer ([`initret::frozen`]), read in place.
//!
//! A `SharedDict` / `SharedList` holds the Python object that exports the
//! buffer (`bytes`, or a read-only `uint8` array over shared memory), the
//! buffer's address and validated length, and a handle to its container.
//! Nested containers are views of the same buffer. Values are built when
//! read: a `str` is decoded from the buffer on every read.
//!
//! The classes are complete in Rust (every `Mapping` / `Sequence` method
//! is a method or a slot here, so `d[k]` runs no Python frame);
//! `initret/_containers.py` registers them with `collections.abc` and
//! holds the few helpers that are easier in Python (the bounded `repr`,
//! array views, numeric keys of other types).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use initret::frozen::{
    ArrayInput, Container, ContainerRef, Frozen, FrozenBuilder, FrozenList, FrozenMap, Input, Key,
    ListHandle, MAX_DEPTH, MapHandle, Value, freeze_copy,
};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::{PyIndexError, PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PySlice, PySliceMethods, PyString, PyTuple,
    PyType,
};

use crate::numpy;

// --- Python helpers ---------------------------------------------------------

/// The helpers `initret/_containers.py` registered (name -> callable).
static HELPERS: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// `_set_container_helpers(helpers)`: called once by
/// ``initret._containers`` when it is imported, with a dict of the Python
/// helpers this module calls (Python imports the extension, never the
/// other way round). Not API.
#[pyfunction]
fn _set_container_helpers(py: Python<'_>, helpers: Py<PyDict>) {
    // The first registration stays (a reloaded package keeps the first).
    HELPERS.get_or_init(py, || helpers);
}

/// The registered helper `name`.
fn helper<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let helpers = HELPERS.get(py).ok_or_else(|| {
        PyRuntimeError::new_err(
            "initret's container helpers are not registered: import the initret package, \
             not initret._initret alone",
        )
    })?;
    helpers.bind(py).get_item(name)?.ok_or_else(|| {
        PyRuntimeError::new_err(format!("container helper {name} is not registered"))
    })
}

fn not_freezable(py: Python<'_>, message: impl Into<String>) -> PyErr {
    library_error(py, initret::Error::NotFreezable(message.into()))
}

/// A library error as its Python exception: `NotFreezable` (a
/// `TypeError`) and `CorruptBuffer` (a `ValueError`) by the registered
/// factory, like every other variant.
fn library_error(py: Python<'_>, error: initret::Error) -> PyErr {
    let fields = PyDict::new(py);
    let variant = match &error {
        initret::Error::NotFreezable(reason) => {
            if let Err(err) = fields.set_item("reason", reason) {
                return err;
            }
            "NotFreezable"
        }
        initret::Error::FrozenCorrupt { offset, reason } => {
            if let Err(err) = fields
                .set_item("offset", offset)
                .and_then(|()| fields.set_item("reason", reason))
            {
                return err;
            }
            "FrozenCorrupt"
        }
        _ => return crate::errors::to_pyerr(py, error),
    };
    crate::errors::library_exception(py, variant, &error.to_string(), fields)
}

// --- The buffer -------------------------------------------------------------

/// A validated frozen buffer and the Python object that owns its memory.
struct SharedBytes {
    /// Keeps the memory alive: a `bytes` object or a numpy array.
    owner: Py<PyAny>,
    ptr: *const u8,
    /// The buffer's validated length (its header's total length).
    len: usize,
    /// The root container's offset (a view of the root pickles the whole
    /// buffer; a nested view pickles a copy of its own subtree).
    root_offset: usize,
}

// SAFETY: the memory `ptr` points to is only ever read (through `bytes`),
// and `owner` keeps it alive for as long as this value exists; `Py` is
// itself `Send + Sync`.
unsafe impl Send for SharedBytes {}
// SAFETY: as above: every access is a shared read.
unsafe impl Sync for SharedBytes {}

impl SharedBytes {
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` and `len` describe memory owned by `owner` (a
        // `bytes` object, immutable; or a read-only numpy array, which
        // `open_buffer` accepts only when it is C-contiguous and not
        // writeable), which this value keeps alive, and `len` is at most
        // the owner's length. Should a process that shares the memory
        // write to it anyway, every read of the frozen reader is
        // bounds-checked, so answers may be wrong but stay in bounds.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Validates `buffer` (`bytes`, a read-only 1-D C-contiguous `uint8`
/// array, or any object with a read-only buffer; writable buffers are
/// copied) and returns it with its root container.
fn open_buffer<'py>(
    py: Python<'py>,
    buffer: &Bound<'py, PyAny>,
) -> PyResult<(Arc<SharedBytes>, Container<'static>)> {
    let (owner, ptr, available): (Bound<'py, PyAny>, *const u8, usize) = if let Ok(bytes) =
        buffer.cast::<PyBytes>()
    {
        let slice = bytes.as_bytes();
        (buffer.clone(), slice.as_ptr(), slice.len())
    } else {
        let ndarray = numpy(py)?.getattr("ndarray")?;
        let array = if buffer.is_instance(&ndarray)? {
            buffer.clone()
        } else {
            let view = pyo3::types::PyMemoryView::from(buffer)?;
            if view.getattr("readonly")?.is_truthy()? {
                numpy(py)?.call_method1("frombuffer", (buffer, "uint8"))?
            } else {
                // Something may write to it later: read a copy.
                view.call_method0("tobytes")?
            }
        };
        if let Ok(bytes) = array.cast::<PyBytes>() {
            let slice = bytes.as_bytes();
            (array.clone(), slice.as_ptr(), slice.len())
        } else {
            let Ok(typed) = array.cast::<PyArray1<u8>>() else {
                return Err(PyTypeError::new_err(
                    "a frozen buffer must be bytes or a 1-D uint8 array (or a read-only buffer object)",
                ));
            };
            if !typed.is_c_contiguous() {
                return Err(PyValueError::new_err(
                    "a frozen buffer array must be C-contiguous",
                ));
            }
            if array.getattr("flags")?.getattr("writeable")?.is_truthy()? {
                // Writable memory could change after validation: copy it.
                let copy = PyBytes::new(py, typed.readonly().as_slice()?);
                let slice = copy.as_bytes();
                let ptr = slice.as_ptr();
                let len = slice.len();
                (copy.into_any(), ptr, len)
            } else {
                let len = typed.len();
                let ptr = if len == 0 {
                    std::ptr::NonNull::<u8>::dangling().as_ptr().cast_const()
                } else {
                    typed.data().cast_const()
                };
                (array.clone(), ptr, len)
            }
        }
    };
    let mut shared = SharedBytes {
        owner: owner.unbind(),
        ptr,
        len: available,
        root_offset: 0,
    };
    let (len, root) = {
        let frozen = Frozen::open(shared.bytes()).map_err(|e| library_error(py, e))?;
        let root = match frozen.root() {
            Container::Map(map) => RootHandle::Map(map.handle()),
            Container::List(list) => RootHandle::List(list.handle()),
        };
        (frozen.bytes().len(), root)
    };
    shared.len = len;
    shared.root_offset = match root {
        RootHandle::Map(handle) => handle.offset(),
        RootHandle::List(handle) => handle.offset(),
    };
    let shared = Arc::new(shared);
    let container = match root {
        RootHandle::Map(handle) => Container::Map(handle.attach(EMPTY)),
        RootHandle::List(handle) => Container::List(handle.attach(EMPTY)),
    };
    Ok((shared, container))
}

/// Attached to no bytes: only the handle of a container is kept from it.
const EMPTY: &[u8] = &[];

enum RootHandle {
    Map(MapHandle),
    List(ListHandle),
}

// --- Keys -------------------------------------------------------------------

/// A Python key as the frozen map looks it up.
enum PyKey<'a> {
    Int(i64),
    Str(Cow<'a, str>),
    Bytes(&'a [u8]),
    /// A key no frozen map can hold (a non-integral float, a tuple, an
    /// int past 64 bits...): every lookup misses.
    Miss,
}

impl PyKey<'_> {
    #[inline(always)]
    fn key(&self) -> Option<Key<'_>> {
        match self {
            PyKey::Int(value) => Some(Key::Int(*value)),
            PyKey::Str(text) => Some(Key::Str(text)),
            PyKey::Bytes(bytes) => Some(Key::Bytes(bytes)),
            PyKey::Miss => None,
        }
    }
}

/// 2^63, exact as an `f64`.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// The integer an integral float stands for (`1.0` is the key `1`).
fn integral(value: f64) -> Option<i64> {
    // -2^63 and 2^63 are exact as f64; the range is half-open.
    (value.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&value)).then_some(value as i64)
}

/// `key` as a lookup: Python's equality for ints, bools, integral floats,
/// str and bytes; other numbers through `_containers._integral_key`.
#[inline]
fn py_key<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<PyKey<'a>> {
    if let Ok(int) = key.cast::<PyInt>() {
        return Ok(int.extract::<i64>().map_or(PyKey::Miss, PyKey::Int));
    }
    if let Ok(text) = key.cast::<PyString>() {
        return Ok(text.to_cow().map_or(PyKey::Miss, PyKey::Str));
    }
    if let Ok(bytes) = key.cast::<PyBytes>() {
        return Ok(PyKey::Bytes(bytes.as_bytes()));
    }
    if let Ok(float) = key.cast::<PyFloat>() {
        return Ok(integral(float.value()).map_or(PyKey::Miss, PyKey::Int));
    }
    let as_int = helper(key.py(), "_integral_key")?.call1((key,))?;
    if as_int.is_none() {
        return Ok(PyKey::Miss);
    }
    Ok(as_int.extract::<i64>().map_or(PyKey::Miss, PyKey::Int))
}

fn key_to_py(py: Python<'_>, key: Key<'_>) -> PyResult<Py<PyAny>> {
    Ok(match key {
        Key::Int(value) => value.into_pyobject(py)?.into_any().unbind(),
        Key::Bool(value) => PyBool::new(py, value).to_owned().into_any().unbind(),
        Key::Str(text) => PyString::new(py, text).into_any().unbind(),
        Key::Bytes(bytes) => PyBytes::new(py, bytes).into_any().unbind(),
    })
}

// --- Values -----------------------------------------------------------------

/// `value`, read from `buffer`, as a Python object: built now.
#[inline]
fn value_to_py(py: Python<'_>, buffer: &Arc<SharedBytes>, value: Value<'_>) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::Str(text) => PyString::new(py, text).into_any().unbind(),
        Value::Int(value) => value.into_pyobject(py)?.into_any().unbind(),
        Value::Float(value) => PyFloat::new(py, value).into_any().unbind(),
        Value::Bool(value) => PyBool::new(py, value).to_owned().into_any().unbind(),
        Value::None => py.None(),
        Value::Bytes(bytes) => PyBytes::new(py, bytes).into_any().unbind(),
        Value::BigInt(bytes) => helper(py, "_big_int")?
            .call1((PyBytes::new(py, bytes),))?
            .unbind(),
        Value::Array(array) => {
            let shape = PyTuple::new(py, array.shape())?;
            helper(py, "_array_view")?
                .call1((
                    buffer.owner.bind(py),
                    array.dtype(),
                    array.itemsize(),
                    shape,
                    array.data_offset(),
                ))?
                .unbind()
        }
        Value::Map(map) => Py::new(py, SharedDict::view(buffer.clone(), map.handle()))?.into_any(),
        Value::List(list) => {
            Py::new(py, SharedList::view(buffer.clone(), list.handle()))?.into_any()
        }
    })
}

/// Whether our `value` equals the Python object `other`, by Python's `==`
/// except that a NaN equals a NaN (as the object it was frozen from equals
/// itself inside a container) and arrays compare by `_array_equal`.
fn value_equals_py(
    py: Python<'_>,
    buffer: &Arc<SharedBytes>,
    value: Value<'_>,
    other: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    match value {
        Value::Float(ours) if ours.is_nan() => Ok(other
            .cast::<PyFloat>()
            .is_ok_and(|theirs| theirs.value().is_nan())),
        Value::Str(ours) => match other.cast::<PyString>() {
            Ok(theirs) => Ok(theirs.to_cow().is_ok_and(|theirs| theirs == ours)),
            Err(_) => value_to_py(py, buffer, value)?.bind(py).eq(other),
        },
        Value::Int(ours) if other.is_exact_instance_of::<PyInt>() => {
            Ok(other.extract::<i64>().is_ok_and(|theirs| theirs == ours))
        }
        Value::Array(_) => helper(py, "_array_equal")?
            .call1((value_to_py(py, buffer, value)?, other))?
            .is_truthy(),
        _ => value_to_py(py, buffer, value)?.bind(py).eq(other),
    }
}

/// Whether two frozen values are equal (Python's `==`, NaN equal to NaN),
/// compared in place where the types allow.
fn values_equal(
    py: Python<'_>,
    (a_buffer, a): (&Arc<SharedBytes>, Value<'_>),
    (b_buffer, b): (&Arc<SharedBytes>, Value<'_>),
) -> PyResult<bool> {
    Ok(match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Map(x), Value::Map(y)) => maps_equal(py, (a_buffer, x), (b_buffer, y))?,
        (Value::List(x), Value::List(y)) => lists_equal(py, (a_buffer, x), (b_buffer, y))?,
        (Value::Str(_) | Value::Bytes(_) | Value::None | Value::Map(_) | Value::List(_), _)
        | (_, Value::Str(_) | Value::Bytes(_) | Value::None | Value::Map(_) | Value::List(_)) => {
            false
        }
        // Numbers of different types, big ints, arrays: as Python compares them.
        _ => {
            let theirs = value_to_py(py, b_buffer, b)?;
            value_equals_py(py, a_buffer, a, theirs.bind(py))?
        }
    })
}

fn maps_equal(
    py: Python<'_>,
    (a_buffer, a): (&Arc<SharedBytes>, FrozenMap<'_>),
    (b_buffer, b): (&Arc<SharedBytes>, FrozenMap<'_>),
) -> PyResult<bool> {
    if a.len() != b.len() {
        return Ok(false);
    }
    if Arc::ptr_eq(a_buffer, b_buffer) && a.handle() == b.handle() {
        return Ok(true);
    }
    for (key, value) in a.iter() {
        let Some(other) = b.get(key) else {
            return Ok(false);
        };
        if !values_equal(py, (a_buffer, value), (b_buffer, other))? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn lists_equal(
    py: Python<'_>,
    (a_buffer, a): (&Arc<SharedBytes>, FrozenList<'_>),
    (b_buffer, b): (&Arc<SharedBytes>, FrozenList<'_>),
) -> PyResult<bool> {
    if a.len() != b.len() {
        return Ok(false);
    }
    if Arc::ptr_eq(a_buffer, b_buffer) && a.handle() == b.handle() {
        return Ok(true);
    }
    for (x, y) in a.iter().zip(b.iter()) {
        if !values_equal(py, (a_buffer, x), (b_buffer, y))? {
            return Ok(false);
        }
    }
    Ok(true)
}

// --- get_many ---------------------------------------------------------------

/// `get_many`'s `default`: absent (a missing key raises) or any object,
/// `None` included.
enum DefaultArg<'py> {
    Missing,
    Given(Bound<'py, PyAny>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for DefaultArg<'py> {
    type Error = PyErr;

    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(DefaultArg::Given(obj.to_owned()))
    }
}

impl<'py> DefaultArg<'py> {
    fn as_option(&self) -> Option<&Bound<'py, PyAny>> {
        match self {
            DefaultArg::Missing => None,
            DefaultArg::Given(object) => Some(object),
        }
    }
}

/// What `get_many` found for one key.
enum Found<'a> {
    Value(Value<'a>),
    Default,
}

/// The numeric kind of everything found so far.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Numeric {
    Bool,
    Int,
    Float,
    /// Not all numbers: a list.
    Objects,
}

fn numeric_kind(value: &Value<'_>) -> Numeric {
    match value {
        Value::Bool(_) => Numeric::Bool,
        Value::Int(_) => Numeric::Int,
        Value::Float(_) => Numeric::Float,
        _ => Numeric::Objects,
    }
}

/// The keys of a `get_many` call: an int64 array's values, or objects.
enum ManyKeys<'py> {
    Ints(Vec<i64>),
    /// uint64 values (those past `i64::MAX` miss).
    Unsigned(Vec<u64>),
    Objects(Vec<Bound<'py, PyAny>>),
}

fn many_keys<'py>(py: Python<'py>, keys: &Bound<'py, PyAny>) -> PyResult<ManyKeys<'py>> {
    let np = numpy(py)?;
    if keys.is_instance(&np.getattr("ndarray")?)? {
        let kind: String = keys.getattr("dtype")?.getattr("kind")?.extract()?;
        if kind == "u"
            && keys
                .getattr("dtype")?
                .getattr("itemsize")?
                .extract::<usize>()?
                == 8
        {
            let flat = keys.call_method1("reshape", (-1,))?;
            let array = flat.cast::<PyArray1<u64>>()?.readonly();
            return Ok(ManyKeys::Unsigned(
                array.as_array().iter().copied().collect(),
            ));
        }
        if matches!(kind.as_str(), "i" | "u" | "b") {
            let flat = keys
                .call_method1("reshape", (-1,))?
                .call_method1("astype", ("int64",))?;
            let array = flat.cast::<PyArray1<i64>>()?.readonly();
            return Ok(ManyKeys::Ints(
                array
                    .as_slice()
                    .map(<[i64]>::to_vec)
                    .unwrap_or_else(|_| array.as_array().to_vec()),
            ));
        }
        let objects = keys.call_method0("tolist")?;
        return Ok(ManyKeys::Objects(
            objects.try_iter()?.collect::<PyResult<_>>()?,
        ));
    }
    if let Ok(list) = keys.cast::<PyList>() {
        return Ok(ManyKeys::Objects(list.iter().collect()));
    }
    Ok(ManyKeys::Objects(
        keys.try_iter()?.collect::<PyResult<_>>()?,
    ))
}

/// The result of `get_many`: a numpy array when every value is a bool, an
/// int or a float (bools only: `bool`; ints and bools: `int64`; any float:
/// `float64`), else a list.
fn many_result<'py, 'a>(
    py: Python<'py>,
    buffer: &Arc<SharedBytes>,
    found: Vec<Found<'a>>,
    mut kind: Numeric,
    default: Option<&Bound<'py, PyAny>>,
) -> PyResult<Py<PyAny>> {
    if found.is_empty() {
        kind = Numeric::Objects;
    }
    let default_value = default.and_then(|d| {
        if d.is_exact_instance_of::<PyBool>() {
            d.extract::<bool>().ok().map(Value::Bool)
        } else if d.is_exact_instance_of::<PyInt>() {
            d.extract::<i64>().ok().map(Value::Int)
        } else if d.is_exact_instance_of::<PyFloat>() {
            d.extract::<f64>().ok().map(Value::Float)
        } else {
            None
        }
    });
    let resolved = |f: &Found<'a>| -> Value<'a> {
        match f {
            Found::Value(v) => *v,
            Found::Default => default_value.unwrap_or(Value::None),
        }
    };
    match kind {
        Numeric::Bool => {
            let values: Vec<bool> = found
                .iter()
                .map(|f| matches!(resolved(f), Value::Bool(true)))
                .collect();
            Ok(PyArray1::from_vec(py, values).into_any().unbind())
        }
        Numeric::Int => {
            let values: Vec<i64> = found
                .iter()
                .map(|f| match resolved(f) {
                    Value::Int(v) => v,
                    Value::Bool(v) => i64::from(v),
                    _ => 0,
                })
                .collect();
            Ok(PyArray1::from_vec(py, values).into_any().unbind())
        }
        Numeric::Float => {
            let values: Vec<f64> = found
                .iter()
                .map(|f| match resolved(f) {
                    Value::Int(v) => v as f64,
                    Value::Bool(v) => f64::from(u8::from(v)),
                    Value::Float(v) => v,
                    _ => 0.0,
                })
                .collect();
            Ok(PyArray1::from_vec(py, values).into_any().unbind())
        }
        Numeric::Objects => {
            let mut items = Vec::with_capacity(found.len());
            for f in &found {
                items.push(match f {
                    Found::Value(v) => value_to_py(py, buffer, *v)?,
                    Found::Default => default.map_or_else(|| py.None(), |d| d.clone().unbind()),
                });
            }
            Ok(PyList::new(py, items)?.into_any().unbind())
        }
    }
}

/// Folds the kind of one more found value into `kind`.
fn fold_kind(kind: Numeric, found: &Found<'_>, default_kind: Numeric) -> Numeric {
    let this = match found {
        Found::Value(v) => numeric_kind(v),
        Found::Default => default_kind,
    };
    kind.max(this)
}

fn default_kind(default: Option<&Bound<'_, PyAny>>) -> Numeric {
    match default {
        Some(d) if d.is_exact_instance_of::<PyBool>() => Numeric::Bool,
        Some(d) if d.is_exact_instance_of::<PyInt>() && d.extract::<i64>().is_ok() => Numeric::Int,
        Some(d) if d.is_exact_instance_of::<PyFloat>() => Numeric::Float,
        _ => Numeric::Objects,
    }
}

/// `get_many`'s fast path for int keys: the values as a numpy array if
/// every one found is a bool, an int or a float (and a missing key has a
/// numeric default), without holding the values in between; `None` as
/// soon as one is not (the caller then takes the general path).
fn numbers_only(
    py: Python<'_>,
    map: &FrozenMap<'_>,
    keys: &[i64],
    default: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Py<PyAny>>> {
    if default.is_some() {
        // Missing keys take the default: the general path handles it.
        return Ok(None);
    }
    numbers_only_strict(py, map, keys)
}

/// [`numbers_only`] without a default: any missing key ends the fast path.
fn numbers_only_strict(
    py: Python<'_>,
    map: &FrozenMap<'_>,
    keys: &[i64],
) -> PyResult<Option<Py<PyAny>>> {
    let mut ints: Vec<i64> = Vec::with_capacity(keys.len());
    let mut floats: Option<Vec<f64>> = None;
    let mut all_bool = true;
    let mut ok = true;
    map.get_each(keys, |_, value| {
        if !ok {
            return;
        }
        match value {
            Some(Value::Int(v)) => {
                all_bool = false;
                match &mut floats {
                    Some(f) => f.push(v as f64),
                    None => ints.push(v),
                }
            }
            Some(Value::Bool(v)) => match &mut floats {
                Some(f) => f.push(f64::from(u8::from(v))),
                None => ints.push(i64::from(v)),
            },
            Some(Value::Float(v)) => {
                all_bool = false;
                let f = floats.get_or_insert_with(|| {
                    let mut f = Vec::with_capacity(keys.len());
                    f.extend(ints.drain(..).map(|i| i as f64));
                    f
                });
                f.push(v);
            }
            _ => ok = false,
        }
    });
    if !ok || keys.is_empty() {
        return Ok(None);
    }
    Ok(Some(match floats {
        Some(f) => PyArray1::from_vec(py, f).into_any().unbind(),
        None if all_bool => {
            PyArray1::from_vec(py, ints.into_iter().map(|i| i != 0).collect::<Vec<bool>>())
                .into_any()
                .unbind()
        }
        None => PyArray1::from_vec(py, ints).into_any().unbind(),
    }))
}

// --- SharedDict -------------------------------------------------------------

/// A read-only dict in a frozen buffer (see `initret.SharedDict`).
#[pyclass(frozen, weakref, name = "SharedDict", module = "initret")]
pub struct SharedDict {
    buffer: Arc<SharedBytes>,
    handle: MapHandle,
    reduce_to: ReduceTo,
}

impl SharedDict {
    fn view(buffer: Arc<SharedBytes>, handle: MapHandle) -> SharedDict {
        SharedDict {
            buffer,
            handle,
            reduce_to: ReduceTo::default(),
        }
    }

    #[inline(always)]
    fn map(&self) -> FrozenMap<'_> {
        self.handle.attach(self.buffer.bytes())
    }

    fn open(py: Python<'_>, buffer: &Bound<'_, PyAny>) -> PyResult<SharedDict> {
        match open_buffer(py, buffer)? {
            (shared, Container::Map(map)) => Ok(SharedDict::view(shared, map.handle())),
            (_, Container::List(_)) => Err(PyTypeError::new_err(
                "this frozen buffer holds a list: open it with SharedList._open",
            )),
        }
    }

    fn lookup<'a>(&'a self, key: &Bound<'_, PyAny>) -> PyResult<Option<Value<'a>>> {
        let key = py_key(key)?;
        Ok(key.key().and_then(|key| self.map().get(key)))
    }
}

#[pymethods]
impl SharedDict {
    /// `SharedDict(mapping)`: freezes `mapping` (a dict, or anything
    /// `dict()` takes) into a private `bytes` buffer.
    #[new]
    #[pyo3(signature = (mapping = None, /))]
    fn new(py: Python<'_>, mapping: Option<&Bound<'_, PyAny>>) -> PyResult<SharedDict> {
        let Some(mapping) = mapping else {
            return SharedDict::open(py, freeze(py, &PyDict::new(py))?.bind(py));
        };
        if let Ok(shared) = mapping.cast::<SharedDict>() {
            let shared = shared.get();
            return Ok(SharedDict::view(shared.buffer.clone(), shared.handle));
        }
        let dict = if mapping.cast::<PyDict>().is_ok() {
            mapping.clone()
        } else {
            py.get_type::<PyDict>().call1((mapping,))?
        };
        SharedDict::open(py, freeze(py, &dict)?.bind(py))
    }

    /// Opens a frozen buffer whose root is a dict: `bytes`, or a read-only
    /// 1-D `uint8` numpy array (kept alive, read in place), or another
    /// read-only buffer. Validates it first.
    #[classmethod]
    fn _open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
    ) -> PyResult<SharedDict> {
        SharedDict::open(py, buffer)
    }

    /// What `__reduce__` returns when set (the sharing layer's small handle).
    #[getter(_reduce_to)]
    fn get_reduce_to(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.reduce_to.get(py)
    }

    #[setter(_reduce_to)]
    fn set_reduce_to(&self, value: Option<Py<PyAny>>) {
        self.reduce_to.set(value);
    }

    fn __len__(&self) -> usize {
        self.handle_len()
    }

    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.lookup(key)? {
            Some(value) => value_to_py(py, &self.buffer, value),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.lookup(key)?.is_some())
    }

    /// `d.get(key, default=None)`.
    #[pyo3(signature = (key, default = None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match self.lookup(key)? {
            Some(value) => value_to_py(py, &self.buffer, value),
            None => Ok(default.unwrap_or_else(|| py.None())),
        }
    }

    /// The values of many keys at once: `keys` is a numpy integer array or
    /// any iterable of keys. Returns a numpy array (`bool`, `int64` or
    /// `float64`) when every value read is a bool, int or float, else a
    /// list. A missing key raises `KeyError`, unless `default` is given.
    #[pyo3(signature = (keys, default = DefaultArg::Missing))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        default: DefaultArg<'py>,
    ) -> PyResult<Py<PyAny>> {
        let default = default.as_option();
        let map = self.map();
        let default_kind = default_kind(default);
        let mut kind = Numeric::Bool;
        let missing = |key: &dyn Fn() -> PyResult<Py<PyAny>>| -> PyResult<Found<'_>> {
            if default.is_some() {
                Ok(Found::Default)
            } else {
                Err(PyKeyError::new_err(key()?))
            }
        };
        let found: Vec<Found<'_>> = match many_keys(py, keys)? {
            ManyKeys::Ints(ints) => {
                if let Some(numbers) = numbers_only(py, &map, &ints, default)? {
                    return Ok(numbers);
                }
                let mut found = Vec::with_capacity(ints.len());
                let mut first_missing = None;
                map.get_each(&ints, |i, value| {
                    let f = match value {
                        Some(value) => Found::Value(value),
                        None => {
                            first_missing.get_or_insert(i);
                            Found::Default
                        }
                    };
                    kind = fold_kind(kind, &f, default_kind);
                    found.push(f);
                });
                if let (Some(i), None) = (first_missing, default) {
                    return Err(PyKeyError::new_err(ints[i]));
                }
                found
            }
            ManyKeys::Unsigned(ints) => {
                let mut found = Vec::with_capacity(ints.len());
                for &key in &ints {
                    let f = match i64::try_from(key).ok().and_then(|k| map.get(k)) {
                        Some(value) => Found::Value(value),
                        None => missing(&|| Ok(key.into_pyobject(py)?.into_any().unbind()))?,
                    };
                    kind = fold_kind(kind, &f, default_kind);
                    found.push(f);
                }
                found
            }
            ManyKeys::Objects(objects) => {
                let mut found = Vec::with_capacity(objects.len());
                for key in &objects {
                    let lookup = py_key(key)?;
                    let f = match lookup.key().and_then(|k| map.get(k)) {
                        Some(value) => Found::Value(value),
                        None => missing(&|| Ok(key.clone().unbind()))?,
                    };
                    kind = fold_kind(kind, &f, default_kind);
                    found.push(f);
                }
                found
            }
        };
        many_result(py, &self.buffer, found, kind, default)
    }

    fn __iter__(&self) -> SharedIterator {
        SharedIterator::new(self.buffer.clone(), Walk::MapKeys(self.handle))
    }

    /// A `KeysView` of this dict.
    fn keys(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Ok(helper(slf.py(), "SharedKeysView")?.call1((slf,))?.unbind())
    }

    /// A `ValuesView` of this dict.
    fn values(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Ok(helper(slf.py(), "SharedValuesView")?
            .call1((slf,))?
            .unbind())
    }

    /// An `ItemsView` of this dict.
    fn items(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Ok(helper(slf.py(), "SharedItemsView")?.call1((slf,))?.unbind())
    }

    /// The values in insertion order (what `values()` iterates).
    fn _iter_values(&self) -> SharedIterator {
        SharedIterator::new(self.buffer.clone(), Walk::MapValues(self.handle))
    }

    /// The `(key, value)` pairs in insertion order (what `items()` iterates).
    fn _iter_items(&self) -> SharedIterator {
        SharedIterator::new(self.buffer.clone(), Walk::MapItems(self.handle))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let equal = if let Ok(theirs) = other.cast::<SharedDict>() {
            let theirs = theirs.get();
            maps_equal(
                py,
                (&self.buffer, self.map()),
                (&theirs.buffer, theirs.map()),
            )?
        } else if let Ok(dict) = other.cast::<PyDict>() {
            self.equals_items(py, dict.len(), dict.iter().map(Ok))?
        } else if other.is_instance(&helper(py, "Mapping")?)? {
            let len = other.len()?;
            let items = other.call_method0("items")?;
            let pairs = items.try_iter()?.map(|pair| {
                let pair = pair?;
                Ok((pair.get_item(0)?, pair.get_item(1)?))
            });
            self.equals_items(py, len, pairs)?
        } else {
            return Ok(py.NotImplemented());
        };
        Ok(PyBool::new(py, equal).to_owned().into_any().unbind())
    }

    fn __ne__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        not_equal(py, self.__eq__(py, other)?)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        helper(slf.py(), "_repr")?.call1((slf,))?.extract()
    }

    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        reduce_view(
            slf.as_any(),
            &this.reduce_to,
            &this.buffer,
            this.handle.offset(),
            Container::Map(this.map()),
        )
    }

    /// The frozen buffer this dict reads (the object that owns it) and the
    /// offset of its container in it.
    fn _buffer(&self, py: Python<'_>) -> (Py<PyAny>, usize) {
        (self.buffer.owner.clone_ref(py), self.handle.offset())
    }
}

impl SharedDict {
    fn handle_len(&self) -> usize {
        self.map().len()
    }

    /// Whether this dict has exactly the `len` entries `pairs`.
    fn equals_items<'py>(
        &self,
        py: Python<'py>,
        len: usize,
        pairs: impl Iterator<Item = PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)>>,
    ) -> PyResult<bool> {
        let map = self.map();
        if len != map.len() {
            return Ok(false);
        }
        for pair in pairs {
            let (key, theirs) = pair?;
            let Some(ours) = self.lookup(&key)? else {
                return Ok(false);
            };
            if !value_equals_py(py, &self.buffer, ours, &theirs)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The bytes a view pickles: the whole buffer for the root (the owner
/// itself when it is exactly that `bytes`), else a buffer of its own
/// holding a copy of the subtree.
fn own_bytes(
    py: Python<'_>,
    buffer: &Arc<SharedBytes>,
    offset: usize,
    container: Container<'_>,
) -> PyResult<Py<PyAny>> {
    if offset == buffer.root_offset {
        let owner = buffer.owner.bind(py);
        if let Ok(bytes) = owner.cast::<PyBytes>()
            && bytes.as_bytes().len() == buffer.len
        {
            return Ok(owner.clone().unbind());
        }
        return Ok(PyBytes::new(py, buffer.bytes()).into_any().unbind());
    }
    let copy = freeze_copy(container).map_err(|e| library_error(py, e))?;
    Ok(PyBytes::new(py, &copy).into_any().unbind())
}

/// What a view's `__reduce__` returns when the sharing layer has set it
/// (a small handle to shared memory): `SharedDict._reduce_to` and
/// `SharedList._reduce_to`.
#[derive(Default)]
struct ReduceTo(Mutex<Option<Py<PyAny>>>);

impl ReduceTo {
    fn get(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|r| r.clone_ref(py))
    }

    fn set(&self, value: Option<Py<PyAny>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

/// A view's `__reduce__`: the handle the sharing layer set, else
/// `(type(view)._open, (bytes,))` with the bytes [`own_bytes`] gives.
fn reduce_view(
    view: &Bound<'_, PyAny>,
    reduce_to: &ReduceTo,
    buffer: &Arc<SharedBytes>,
    offset: usize,
    container: Container<'_>,
) -> PyResult<Py<PyAny>> {
    let py = view.py();
    if let Some(reduce_to) = reduce_to.get(py) {
        return Ok(reduce_to);
    }
    let bytes = own_bytes(py, buffer, offset, container)?;
    let open = view.get_type().getattr("_open")?;
    Ok((open, (bytes,)).into_pyobject(py)?.into_any().unbind())
}

/// `__ne__` from `__eq__`'s answer: `NotImplemented` stays as it is.
fn not_equal(py: Python<'_>, equal: Py<PyAny>) -> PyResult<Py<PyAny>> {
    if equal.is(py.NotImplemented()) {
        return Ok(equal);
    }
    Ok(PyBool::new(py, !equal.bind(py).is_truthy()?)
        .to_owned()
        .into_any()
        .unbind())
}

// --- SharedList -------------------------------------------------------------

/// A read-only list in a frozen buffer (see `initret.SharedList`).
#[pyclass(frozen, weakref, name = "SharedList", module = "initret")]
pub struct SharedList {
    buffer: Arc<SharedBytes>,
    handle: ListHandle,
    reduce_to: ReduceTo,
}

impl SharedList {
    fn view(buffer: Arc<SharedBytes>, handle: ListHandle) -> SharedList {
        SharedList {
            buffer,
            handle,
            reduce_to: ReduceTo::default(),
        }
    }

    #[inline(always)]
    fn list(&self) -> FrozenList<'_> {
        self.handle.attach(self.buffer.bytes())
    }

    fn open(py: Python<'_>, buffer: &Bound<'_, PyAny>) -> PyResult<SharedList> {
        match open_buffer(py, buffer)? {
            (shared, Container::List(list)) => Ok(SharedList::view(shared, list.handle())),
            (_, Container::Map(_)) => Err(PyTypeError::new_err(
                "this frozen buffer holds a dict: open it with SharedDict._open",
            )),
        }
    }

    /// The position `index` names (negative from the end), if in range.
    fn position(&self, index: isize) -> Option<usize> {
        let len = self.list().len();
        let position = if index < 0 {
            index.checked_add_unsigned(len)?
        } else {
            index
        };
        usize::try_from(position).ok().filter(|&p| p < len)
    }
}

#[pymethods]
impl SharedList {
    /// `SharedList(iterable)`: freezes the items into a private `bytes` buffer.
    #[new]
    #[pyo3(signature = (iterable = None, /))]
    fn new(py: Python<'_>, iterable: Option<&Bound<'_, PyAny>>) -> PyResult<SharedList> {
        let Some(iterable) = iterable else {
            return SharedList::open(py, freeze(py, &PyList::empty(py))?.bind(py));
        };
        if let Ok(shared) = iterable.cast::<SharedList>() {
            let shared = shared.get();
            return Ok(SharedList::view(shared.buffer.clone(), shared.handle));
        }
        let list = if iterable.cast::<PyList>().is_ok() {
            iterable.clone()
        } else {
            py.get_type::<PyList>().call1((iterable,))?
        };
        SharedList::open(py, freeze(py, &list)?.bind(py))
    }

    /// Opens a frozen buffer whose root is a list (see `SharedDict._open`).
    #[classmethod]
    fn _open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
    ) -> PyResult<SharedList> {
        SharedList::open(py, buffer)
    }

    /// What `__reduce__` returns when set (the sharing layer's small handle).
    #[getter(_reduce_to)]
    fn get_reduce_to(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.reduce_to.get(py)
    }

    #[setter(_reduce_to)]
    fn set_reduce_to(&self, value: Option<Py<PyAny>>) {
        self.reduce_to.set(value);
    }

    fn __len__(&self) -> usize {
        self.list().len()
    }

    fn __getitem__(&self, py: Python<'_>, index: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if let Ok(slice) = index.cast::<PySlice>() {
            let list = self.list();
            let indices = slice.indices(list.len() as isize)?;
            let mut items = Vec::with_capacity(indices.slicelength);
            let mut at = indices.start;
            for _ in 0..indices.slicelength {
                items.push(value_to_py(
                    py,
                    &self.buffer,
                    list.get(at as usize).unwrap_or(Value::None),
                )?);
                at += indices.step;
            }
            return Ok(PyList::new(py, items)?.into_any().unbind());
        }
        let Ok(index) = index.extract::<isize>() else {
            if index.cast::<PyInt>().is_ok() || index.hasattr("__index__")? {
                return Err(PyIndexError::new_err("list index out of range"));
            }
            return Err(PyTypeError::new_err(format!(
                "list indices must be integers or slices, not {}",
                index.get_type().name()?
            )));
        };
        match self.position(index) {
            Some(position) => value_to_py(
                py,
                &self.buffer,
                self.list().get(position).unwrap_or(Value::None),
            ),
            None => Err(PyIndexError::new_err("list index out of range")),
        }
    }

    fn __contains__(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        for item in self.list().iter() {
            if value_equals_py(py, &self.buffer, item, value)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn __iter__(&self) -> SharedIterator {
        SharedIterator::new(self.buffer.clone(), Walk::List(self.handle))
    }

    fn __reversed__(&self) -> SharedIterator {
        SharedIterator::new(self.buffer.clone(), Walk::ListReversed(self.handle))
    }

    /// The first position of `value` in `[start, stop)`; `ValueError` if absent.
    #[pyo3(signature = (value, start = 0, stop = isize::MAX))]
    fn index(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        start: isize,
        stop: isize,
    ) -> PyResult<usize> {
        let list = self.list();
        let len = list.len() as isize;
        let clamp = |i: isize| if i < 0 { (i + len).max(0) } else { i.min(len) } as usize;
        for position in clamp(start)..clamp(stop) {
            if value_equals_py(
                py,
                &self.buffer,
                list.get(position).unwrap_or(Value::None),
                value,
            )? {
                return Ok(position);
            }
        }
        Err(PyValueError::new_err("value is not in list"))
    }

    /// How many items equal `value`.
    fn count(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut count = 0;
        for item in self.list().iter() {
            count += usize::from(value_equals_py(py, &self.buffer, item, value)?);
        }
        Ok(count)
    }

    /// The items at many positions at once (negative from the end):
    /// `positions` is a numpy integer array or any iterable of ints.
    /// Returns as `SharedDict.get_many`; a position out of range raises
    /// `IndexError`, unless `default` is given.
    #[pyo3(signature = (positions, default = DefaultArg::Missing))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        positions: &Bound<'py, PyAny>,
        default: DefaultArg<'py>,
    ) -> PyResult<Py<PyAny>> {
        let default = default.as_option();
        let list = self.list();
        let default_kind = default_kind(default);
        let mut kind = Numeric::Bool;
        let positions: Vec<Option<usize>> = match many_keys(py, positions)? {
            ManyKeys::Ints(ints) => ints
                .into_iter()
                .map(|i| isize::try_from(i).ok().and_then(|i| self.position(i)))
                .collect(),
            ManyKeys::Unsigned(ints) => ints
                .into_iter()
                .map(|i| isize::try_from(i).ok().and_then(|i| self.position(i)))
                .collect(),
            ManyKeys::Objects(objects) => objects
                .iter()
                .map(|i| Ok(self.position(i.extract::<isize>()?)))
                .collect::<PyResult<_>>()?,
        };
        let mut found = Vec::with_capacity(positions.len());
        for position in positions {
            let f = match position.and_then(|p| list.get(p)) {
                Some(value) => Found::Value(value),
                None if default.is_some() => Found::Default,
                None => return Err(PyIndexError::new_err("list index out of range")),
            };
            kind = fold_kind(kind, &f, default_kind);
            found.push(f);
        }
        many_result(py, &self.buffer, found, kind, default)
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let equal = if let Ok(theirs) = other.cast::<SharedList>() {
            let theirs = theirs.get();
            lists_equal(
                py,
                (&self.buffer, self.list()),
                (&theirs.buffer, theirs.list()),
            )?
        } else if let Ok(list) = other.cast::<PyList>() {
            let ours = self.list();
            if ours.len() != list.len() {
                false
            } else {
                let mut equal = true;
                for (position, theirs) in list.iter().enumerate() {
                    let value = ours.get(position).unwrap_or(Value::None);
                    if !value_equals_py(py, &self.buffer, value, &theirs)? {
                        equal = false;
                        break;
                    }
                }
                equal
            }
        } else {
            return Ok(py.NotImplemented());
        };
        Ok(PyBool::new(py, equal).to_owned().into_any().unbind())
    }

    fn __ne__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        not_equal(py, self.__eq__(py, other)?)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        helper(slf.py(), "_repr")?.call1((slf,))?.extract()
    }

    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        reduce_view(
            slf.as_any(),
            &this.reduce_to,
            &this.buffer,
            this.handle.offset(),
            Container::List(this.list()),
        )
    }

    /// The frozen buffer this list reads (the object that owns it) and the
    /// offset of its container in it.
    fn _buffer(&self, py: Python<'_>) -> (Py<PyAny>, usize) {
        (self.buffer.owner.clone_ref(py), self.handle.offset())
    }
}

// --- Iteration --------------------------------------------------------------

#[derive(Clone, Copy)]
enum Walk {
    MapKeys(MapHandle),
    MapValues(MapHandle),
    MapItems(MapHandle),
    List(ListHandle),
    ListReversed(ListHandle),
}

/// An iterator over a `SharedDict`'s keys, values or items, or a
/// `SharedList`'s items.
#[pyclass(frozen, name = "SharedIterator", module = "initret")]
pub struct SharedIterator {
    buffer: Arc<SharedBytes>,
    walk: Walk,
    next: AtomicUsize,
}

impl SharedIterator {
    fn new(buffer: Arc<SharedBytes>, walk: Walk) -> SharedIterator {
        SharedIterator {
            buffer,
            walk,
            next: AtomicUsize::new(0),
        }
    }
}

#[pymethods]
impl SharedIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let position = self.next.fetch_add(1, Ordering::Relaxed);
        let bytes = self.buffer.bytes();
        Ok(match self.walk {
            Walk::MapKeys(handle) => match handle.attach(bytes).key_at(position) {
                Some(key) => Some(key_to_py(py, key)?),
                None => None,
            },
            Walk::MapValues(handle) => match handle.attach(bytes).value_at(position) {
                Some(value) => Some(value_to_py(py, &self.buffer, value)?),
                None => None,
            },
            Walk::MapItems(handle) => match handle.attach(bytes).entry(position) {
                Some((key, value)) => {
                    let pair = (key_to_py(py, key)?, value_to_py(py, &self.buffer, value)?);
                    Some(pair.into_pyobject(py)?.into_any().unbind())
                }
                None => None,
            },
            Walk::List(handle) => match handle.attach(bytes).get(position) {
                Some(value) => Some(value_to_py(py, &self.buffer, value)?),
                None => None,
            },
            Walk::ListReversed(handle) => {
                let list = handle.attach(bytes);
                match list
                    .len()
                    .checked_sub(position + 1)
                    .and_then(|p| list.get(p))
                {
                    Some(value) => Some(value_to_py(py, &self.buffer, value)?),
                    None => None,
                }
            }
        })
    }

    fn __length_hint__(&self) -> usize {
        let len = match self.walk {
            Walk::MapKeys(h) | Walk::MapValues(h) | Walk::MapItems(h) => {
                h.attach(self.buffer.bytes()).len()
            }
            Walk::List(h) | Walk::ListReversed(h) => h.attach(self.buffer.bytes()).len(),
        };
        len.saturating_sub(self.next.load(Ordering::Relaxed))
    }
}

// --- freeze -----------------------------------------------------------------

/// Writes Python dicts and lists into a [`FrozenBuilder`].
struct Freezer<'py> {
    py: Python<'py>,
    builder: FrozenBuilder,
    /// The containers being written, outermost first (a cycle check).
    path: Vec<usize>,
    /// Containers already written, by identity: a dict or list that
    /// appears twice is written once.
    written: HashMap<usize, ContainerRef>,
}

/// A value converted for the builder, owning what the `Input` borrows.
enum Held<'a> {
    Input(Input<'static>),
    Str(Cow<'a, str>),
    Bytes(&'a [u8]),
    BigInt(Vec<u8>),
    Array {
        dtype: String,
        itemsize: usize,
        shape: Vec<u64>,
        data: PyReadonlyArray1<'a, u8>,
    },
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

impl<'py> Freezer<'py> {
    fn container(&mut self, object: &Bound<'py, PyAny>) -> PyResult<ContainerRef> {
        let id = object.as_ptr() as usize;
        if let Some(&written) = self.written.get(&id) {
            return Ok(written);
        }
        if self.path.contains(&id) {
            return Err(not_freezable(
                self.py,
                format!("a {} that contains itself (a cycle)", type_name(object)),
            ));
        }
        if self.path.len() >= MAX_DEPTH {
            return Err(not_freezable(
                self.py,
                format!("containers nested deeper than {MAX_DEPTH}"),
            ));
        }
        self.path.push(id);
        let written = if let Ok(dict) = object.cast::<PyDict>() {
            self.dict(dict)
        } else {
            self.list(object)
        };
        self.path.pop();
        let written = written?;
        self.written.insert(id, written);
        Ok(written)
    }

    fn dict(&mut self, dict: &Bound<'py, PyDict>) -> PyResult<ContainerRef> {
        let mut map = self.builder.begin_map_with_capacity(dict.len());
        if dict.is_exact_instance_of::<PyDict>() {
            for (key, value) in dict.iter() {
                self.entry(&mut map, &key, &value)?;
            }
        } else {
            // A subclass (OrderedDict...) iterates in its own order.
            for pair in dict.call_method0("items")?.try_iter()? {
                let pair = pair?;
                self.entry(&mut map, &pair.get_item(0)?, &pair.get_item(1)?)?;
            }
        }
        self.builder
            .end_map(map)
            .map_err(|e| library_error(self.py, e))
    }

    fn entry(
        &mut self,
        map: &mut initret::frozen::MapInProgress,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        // A bool key is stored as a bool (iteration gives `True` back); it
        // equals the int 1 all the same.
        let bool_key = key.cast::<PyBool>().ok().map(|flag| flag.is_true());
        let held_key = match bool_key {
            Some(_) => PyKey::Miss,
            None => self.key(key)?,
        };
        let held = self.value(value)?;
        let input = held_input(&held)?;
        let key = match bool_key {
            Some(flag) => Key::Bool(flag),
            None => held_key.key().unwrap_or(Key::Int(0)),
        };
        self.builder
            .push_entry(map, key, input)
            .map_err(|e| library_error(self.py, e))
    }

    fn list(&mut self, list: &Bound<'py, PyAny>) -> PyResult<ContainerRef> {
        let mut frozen = self
            .builder
            .begin_list_with_capacity(list.len().unwrap_or(0));
        if let Ok(exact) = list.cast_exact::<PyList>() {
            for item in exact.iter() {
                self.item(&mut frozen, &item)?;
            }
        } else {
            for item in list.try_iter()? {
                self.item(&mut frozen, &item?)?;
            }
        }
        self.builder
            .end_list(frozen)
            .map_err(|e| library_error(self.py, e))
    }

    fn item(
        &mut self,
        list: &mut initret::frozen::ListInProgress,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let held = self.value(item)?;
        let input = held_input(&held)?;
        self.builder
            .push_item(list, input)
            .map_err(|e| library_error(self.py, e))
    }

    fn key<'a>(&self, key: &'a Bound<'py, PyAny>) -> PyResult<PyKey<'a>> {
        if let Ok(text) = key.cast::<PyString>() {
            return match text.to_cow() {
                Ok(text) => Ok(PyKey::Str(text)),
                Err(_) => Err(not_freezable(
                    self.py,
                    "a str key that is not valid UTF-8 (a lone surrogate)",
                )),
            };
        }
        if let Ok(int) = key.cast::<PyInt>() {
            return int.extract::<i64>().map(PyKey::Int).map_err(|_| {
                not_freezable(
                    self.py,
                    format!("the int key {int} does not fit in 64 signed bits"),
                )
            });
        }
        if let Ok(bytes) = key.cast::<PyBytes>() {
            return Ok(PyKey::Bytes(bytes.as_bytes()));
        }
        Err(not_freezable(
            self.py,
            format!("keys must be int, str or bytes, not {}", type_name(key)),
        ))
    }

    fn value<'a>(&mut self, value: &'a Bound<'py, PyAny>) -> PyResult<Held<'a>> {
        if let Ok(text) = value.cast::<PyString>() {
            return match text.to_cow() {
                Ok(text) => Ok(Held::Str(text)),
                Err(_) => Err(not_freezable(
                    self.py,
                    "a str that is not valid UTF-8 (a lone surrogate)",
                )),
            };
        }
        if let Ok(flag) = value.cast::<PyBool>() {
            return Ok(Held::Input(Input::Bool(flag.is_true())));
        }
        if let Ok(int) = value.cast::<PyInt>() {
            return Ok(match int.extract::<i64>() {
                Ok(small) => Held::Input(Input::Int(small)),
                Err(_) => Held::BigInt(
                    helper(self.py, "_big_int_bytes")?
                        .call1((int,))?
                        .extract()?,
                ),
            });
        }
        if let Ok(float) = value.cast::<PyFloat>() {
            return Ok(Held::Input(Input::Float(float.value())));
        }
        if value.is_none() {
            return Ok(Held::Input(Input::None));
        }
        if let Ok(bytes) = value.cast::<PyBytes>() {
            return Ok(Held::Bytes(bytes.as_bytes()));
        }
        if value.cast::<PyDict>().is_ok() || value.cast::<PyList>().is_ok() {
            return Ok(Held::Input(Input::Container(self.container(value)?)));
        }
        if let Ok(dict) = value.cast::<SharedDict>() {
            let dict = dict.get();
            let copied = self.builder.copy_container(Container::Map(dict.map()));
            return Ok(Held::Input(Input::Container(
                copied.map_err(|e| library_error(self.py, e))?,
            )));
        }
        if let Ok(list) = value.cast::<SharedList>() {
            let list = list.get();
            let copied = self.builder.copy_container(Container::List(list.list()));
            return Ok(Held::Input(Input::Container(
                copied.map_err(|e| library_error(self.py, e))?,
            )));
        }
        // numpy arrays and scalars, or NotFreezable.
        let parts = helper(self.py, "_freeze_other")?.call1((value,))?;
        if parts.cast::<PyTuple>().is_ok() {
            let (dtype, itemsize, shape, data): (String, usize, Vec<u64>, Bound<'py, PyAny>) =
                parts.extract()?;
            let data = data.cast_into::<PyArray1<u8>>()?.readonly();
            return Ok(Held::Array {
                dtype,
                itemsize,
                shape,
                data,
            });
        }
        // A numpy scalar, converted to a Python bool, int or float.
        if let Ok(flag) = parts.cast::<PyBool>() {
            return Ok(Held::Input(Input::Bool(flag.is_true())));
        }
        if let Ok(int) = parts.cast::<PyInt>() {
            return Ok(match int.extract::<i64>() {
                Ok(small) => Held::Input(Input::Int(small)),
                Err(_) => Held::BigInt(
                    helper(self.py, "_big_int_bytes")?
                        .call1((int,))?
                        .extract()?,
                ),
            });
        }
        Ok(Held::Input(Input::Float(parts.extract::<f64>()?)))
    }
}

/// The builder input `held` stands for.
fn held_input<'a>(held: &'a Held<'_>) -> PyResult<Input<'a>> {
    Ok(match held {
        Held::Input(input) => *input,
        Held::Str(text) => Input::Str(text),
        Held::Bytes(bytes) => Input::Bytes(bytes),
        Held::BigInt(bytes) => Input::BigInt(bytes),
        Held::Array {
            dtype,
            itemsize,
            shape,
            data,
        } => {
            let slice = data
                .as_slice()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            Input::Array(ArrayInput {
                dtype,
                itemsize: *itemsize,
                shape,
                data: slice,
            })
        }
    })
}

/// `freeze(obj) -> bytes`: `obj` (a dict or a list) and everything in it
/// as one frozen buffer. Raises `initret.NotFreezable` (a `TypeError`)
/// when something in it cannot be frozen.
#[pyfunction]
pub(crate) fn freeze(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
    if obj.cast::<PyDict>().is_err() && obj.cast::<PyList>().is_err() {
        return Err(not_freezable(
            py,
            format!(
                "only a dict or a list can be frozen, not {}",
                type_name(obj)
            ),
        ));
    }
    let mut freezer = Freezer {
        py,
        builder: FrozenBuilder::new(),
        path: Vec::new(),
        written: HashMap::new(),
    };
    let root = freezer.container(obj)?;
    let bytes = freezer
        .builder
        .finish(root)
        .map_err(|e| library_error(py, e))?;
    Ok(PyBytes::new(py, &bytes).unbind())
}

/// Registers the classes and `freeze` in the compiled module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SharedDict>()?;
    m.add_class::<SharedList>()?;
    m.add_class::<SharedIterator>()?;
    m.add_function(wrap_pyfunction!(freeze, m)?)?;
    m.add_function(wrap_pyfunction!(_set_container_helpers, m)?)?;
    Ok(())
}
