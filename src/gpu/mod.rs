//! GPU backend (placeholder until the wgpu backend lands).

/// Summary of a GPU adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary;

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("adapter")
    }
}

/// Every adapter (none: the backend is not implemented yet).
pub fn adapters() -> Vec<AdapterSummary> {
    Vec::new()
}
