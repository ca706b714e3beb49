//! One measured row of the sweep ([`BenchRow`]), its references, and the
//! text table they print as.

use std::fmt::Write as _;

/// The shape of one sweep point: queries per call, and the table's rows and
/// words per row.
///
/// ```
/// let shape = initret_cli::bench::Shape { queries: 1024, rows: 1 << 16, words_per_row: 4 };
/// assert_eq!(shape.queries, 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Queries per call.
    pub queries: usize,
    /// Rows of the table.
    pub rows: usize,
    /// Words per table row.
    pub words_per_row: usize,
}

/// Bytes a lookup moves unless a row says otherwise: a 4-byte query read
/// and a 4-byte count written.
pub const DEFAULT_BYTES_PER_LOOKUP: usize = 8;

/// The `kernel` field of rows that run no initret kernel (the references
/// and the baselines).
pub const NO_KERNEL: &str = "-";

/// One measured strategy at one point of the sweep; one JSON object per
/// row with `bench --json`.
///
/// ```
/// use initret_cli::bench::{BenchRow, Shape};
///
/// let shape = Shape { queries: 1024, rows: 1 << 16, words_per_row: 1 };
/// let row = BenchRow::new("x", "cpu", "avx2", shape, 0.001);
/// assert_eq!(row.lookups_per_s, 1024.0 / 0.001);
/// let json = serde_json::to_value(&row)?;
/// assert_eq!(json["strategy"], "x");
/// assert_eq!(json["kernel"], "avx2");
/// assert_eq!(json["rows"], 65536);
/// assert!(json["ratio_to_memcpy"].is_null()); // NaN until the references are set
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BenchRow {
    /// What was measured (`initret-cpu`, `naive-rayon`, `memcpy`, ...).
    pub strategy: String,
    /// Where it ran (`cpu`, or the GPU adapter's name).
    pub backend: String,
    /// The kernel that ran: the CPU kernel's name for `initret-cpu`, `gpu`
    /// for the GPU rows, [`NO_KERNEL`] for the references and baselines.
    pub kernel: String,
    /// Queries per call.
    pub queries: usize,
    /// Rows of the table.
    pub rows: usize,
    /// Words per table row.
    pub words_per_row: usize,
    /// CPU worker threads of the CPU rows (`None` for the GPU rows).
    pub threads: Option<usize>,
    /// How the CPU backend placed its counts (`per-domain`, `shared`,
    /// `per-worker`), for `initret-cpu` rows.
    pub placement: Option<String>,
    /// Resident memory the CPU backend added when it was built (its count
    /// tables, threads and calibration buffers), in bytes, for
    /// `initret-cpu` rows on systems that report it. The allocator may
    /// reuse memory freed by earlier points, so this can be less than
    /// [`BenchRow::count_bytes_placed`].
    pub resident_bytes_added: Option<u64>,
    /// Bytes of count tables the CPU backend placed (copies × one copy's
    /// size), for `initret-cpu` rows.
    pub count_bytes_placed: Option<u64>,
    /// Bytes one lookup moves: the query read plus the result written (8
    /// for `u32` queries and `u32` results, 5 for `u8` results). The
    /// row's `ratio_to_memcpy` is against a memcpy moving as many bytes.
    pub bytes_per_lookup: usize,
    /// Best time for one call, in seconds.
    pub seconds: f64,
    /// `queries / seconds`.
    pub lookups_per_s: f64,
    /// Parallel memcpy time of the same bytes ([`BenchRow::bytes_per_lookup`]
    /// × queries, read plus written) divided by `seconds`.
    pub ratio_to_memcpy: f64,
    /// Naive rayon loop time divided by `seconds`.
    pub ratio_to_naive_rayon: f64,
    /// For GPU resident rows: device buffer copy time of the queries' bytes divided by `seconds`.
    pub ratio_to_device_copy: Option<f64>,
    /// For GPU end-to-end rows: the time of a host→device copy of the
    /// queries plus a device→host copy of the counts in the table's count
    /// type (as the device packs them) divided by `seconds`.
    pub ratio_to_transfer: Option<f64>,
}

impl BenchRow {
    /// A row with its ratios still unset (NaN); see [`BenchRow::with_references`].
    ///
    /// ```
    /// let shape = initret_cli::bench::Shape { queries: 10, rows: 4, words_per_row: 1 };
    /// let row = initret_cli::bench::BenchRow::new("memcpy", "cpu", "-", shape, 1e-6);
    /// assert!(row.ratio_to_memcpy.is_nan());
    /// assert_eq!((row.queries, row.rows, row.words_per_row), (10, 4, 1));
    /// ```
    pub fn new(
        strategy: impl Into<String>,
        backend: impl Into<String>,
        kernel: impl Into<String>,
        shape: Shape,
        seconds: f64,
    ) -> BenchRow {
        BenchRow {
            strategy: strategy.into(),
            backend: backend.into(),
            kernel: kernel.into(),
            queries: shape.queries,
            rows: shape.rows,
            words_per_row: shape.words_per_row,
            threads: None,
            placement: None,
            resident_bytes_added: None,
            count_bytes_placed: None,
            bytes_per_lookup: DEFAULT_BYTES_PER_LOOKUP,
            seconds,
            lookups_per_s: shape.queries as f64 / seconds,
            ratio_to_memcpy: f64::NAN,
            ratio_to_naive_rayon: f64::NAN,
            ratio_to_device_copy: None,
            ratio_to_transfer: None,
        }
    }

    /// Sets the ratios against this run's references.
    ///
    /// ```
    /// use initret_cli::bench::{BenchRow, References, Shape};
    ///
    /// let shape = Shape { queries: 10, rows: 4, words_per_row: 1 };
    /// let references = References { memcpy_seconds: 1.0, naive_rayon_seconds: 4.0 };
    /// let row = BenchRow::new("x", "cpu", "-", shape, 2.0).with_references(references);
    /// assert_eq!((row.ratio_to_memcpy, row.ratio_to_naive_rayon), (0.5, 2.0));
    /// ```
    pub fn with_references(mut self, references: References) -> BenchRow {
        self.ratio_to_memcpy = references.memcpy_seconds / self.seconds;
        self.ratio_to_naive_rayon = references.naive_rayon_seconds / self.seconds;
        self
    }

    /// The row's shape.
    ///
    /// ```
    /// use initret_cli::bench::{BenchRow, Shape};
    ///
    /// let shape = Shape { queries: 10, rows: 4, words_per_row: 2 };
    /// assert_eq!(BenchRow::new("x", "cpu", "-", shape, 1.0).shape(), shape);
    /// ```
    pub fn shape(&self) -> Shape {
        Shape {
            queries: self.queries,
            rows: self.rows,
            words_per_row: self.words_per_row,
        }
    }
}

/// The two CPU references of one sweep point, measured in the same run as
/// the rows they are compared with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct References {
    /// Best time of a parallel memcpy of the same bytes.
    pub memcpy_seconds: f64,
    /// Best time of the naive rayon loop.
    pub naive_rayon_seconds: f64,
}

/// Renders rows as an aligned text table.
///
/// ```
/// use initret_cli::bench::{BenchRow, References, Shape, format_table};
///
/// let shape = Shape { queries: 10, rows: 4, words_per_row: 1 };
/// let refs = References { memcpy_seconds: 1.0, naive_rayon_seconds: 1.0 };
/// let table = format_table(&[BenchRow::new("x", "cpu", "avx2", shape, 2.0).with_references(refs)]);
/// assert!(table.contains("ratio_to_memcpy") && table.contains("avx2"));
/// ```
pub fn format_table(rows: &[BenchRow]) -> String {
    fn ratio(x: Option<f64>) -> String {
        match x {
            Some(x) if x.is_finite() => format!("{x:.3}"),
            _ => "-".into(),
        }
    }
    let mut out = format!(
        "{:<24} {:<24} {:<18} {:>10} {:>10} {:>5} {:>7} {:>12} {:>14} {:>15} {:>20} {:>20} {:>17}\n",
        "strategy",
        "backend",
        "kernel",
        "queries",
        "rows",
        "words",
        "threads",
        "seconds",
        "lookups/s",
        "ratio_to_memcpy",
        "ratio_to_naive_rayon",
        "ratio_to_device_copy",
        "ratio_to_transfer"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<24} {:<24} {:<18} {:>10} {:>10} {:>5} {:>7} {:>12.3e} {:>14.3e} {:>15} {:>20} {:>20} {:>17}",
            r.strategy,
            truncate(&r.backend, 24),
            truncate(&r.kernel, 18),
            r.queries,
            r.rows,
            r.words_per_row,
            r.threads.map_or_else(|| "-".into(), |t| t.to_string()),
            r.seconds,
            r.lookups_per_s,
            ratio(Some(r.ratio_to_memcpy)),
            ratio(Some(r.ratio_to_naive_rayon)),
            ratio(r.ratio_to_device_copy),
            ratio(r.ratio_to_transfer),
        );
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
