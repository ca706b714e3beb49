//! The command-line tool's error: the library's [`initret::Error`], plus
//! what only a command line has (arguments, requests too large to allocate,
//! output files and pipes, the plot).

use std::io;

/// Every fallible call of the harness and the CLI returns
/// `Result<T, CliError>`; `main` prints it on one line and exits non-zero
/// (a closed stdout excepted, see [`CliError::is_broken_pipe`]).
///
/// ```
/// use initret_cli::error::CliError;
///
/// let lib: CliError = initret::Error::Internal("x".into()).into();
/// assert!(matches!(lib, CliError::Initret(_)));
/// assert_eq!(
///     CliError::Argument("--plot needs a .svg file".into()).to_string(),
///     "invalid argument: --plot needs a .svg file"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// An error of the library (a bad table, a GPU failure, ...).
    #[error(transparent)]
    Initret(#[from] initret::Error),

    /// A command-line argument that parses but cannot be used.
    #[error("invalid argument: {0}")]
    Argument(String),

    /// A request whose buffers cannot be allocated: the size overflows, or
    /// the allocator (or `ulimit -v`) refuses it. Checked before anything is
    /// built, so it is an error instead of an abort.
    #[error("cannot allocate {what}: {reason}")]
    Allocation {
        /// What was asked for, with its size.
        what: String,
        /// Why it cannot be had.
        reason: String,
    },

    /// Reading or writing a file or a standard stream failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Serialising a row to JSON failed.
    #[error("JSON output: {0}")]
    Json(#[from] serde_json::Error),

    /// Drawing the plot failed.
    #[error("plot: {0}")]
    Plot(String),
}

impl CliError {
    /// An [`CliError::Io`] for a failed write to standard output.
    ///
    /// ```
    /// let e = initret_cli::error::CliError::stdout(std::io::ErrorKind::BrokenPipe.into());
    /// assert!(e.is_broken_pipe());
    /// ```
    pub fn stdout(source: io::Error) -> CliError {
        CliError::Io {
            what: "writing to standard output".into(),
            source,
        }
    }

    /// Whether this is a write to a closed pipe (`initret info | head -2`):
    /// the reader has all it wanted, so the CLI ends normally (exit 0, no
    /// message), as ripgrep does, instead of reporting an error.
    ///
    /// ```
    /// use initret_cli::error::CliError;
    ///
    /// assert!(!CliError::Argument("x".into()).is_broken_pipe());
    /// assert!(!CliError::stdout(std::io::ErrorKind::Other.into()).is_broken_pipe());
    /// ```
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}
