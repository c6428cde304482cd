//! The one error type of the config module.
//!
//! An operator reading a log line must be able to go straight to the culprit, so a
//! `ConfigError` carries whatever is known of file, line and key next to the reason,
//! and prints them in the usual `file:line:` compiler style.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration problem that stops a load (or refuses a `SET`).
///
/// Displays as `/etc/pgbouncer.ini:12: key 'max_client_conn': invalid integer 'abc'`;
/// the parts that are not known are left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ConfigError {
    /// The file the problem is in, when it comes from a file.
    pub file: Option<PathBuf>,
    /// 1-based line number inside `file`.
    pub line: Option<usize>,
    /// The setting, database, user or peer name the problem is about.
    pub key: Option<String>,
    /// What is wrong, in words.
    pub reason: String,
}

impl ConfigError {
    /// An error with a reason only; add the location with the builder methods.
    pub fn new(reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            line: None,
            key: None,
            reason: reason.into(),
        }
    }

    /// A file that could not be read: names the file and the OS error.
    pub fn io(path: &Path, err: &std::io::Error) -> ConfigError {
        ConfigError::new(format!("could not read file: {err}")).in_file(path)
    }

    /// The same error, located at `file:line`.
    pub fn at(mut self, file: &Path, line: usize) -> ConfigError {
        self.file = Some(file.to_path_buf());
        self.line = Some(line);
        self
    }

    /// The same error, located in `file` (line unknown).
    pub fn in_file(mut self, file: &Path) -> ConfigError {
        self.file = Some(file.to_path_buf());
        self
    }

    /// The same error, about `key`.
    pub fn with_key(mut self, key: impl Into<String>) -> ConfigError {
        self.key = Some(key.into());
        self
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(file) = &self.file {
            out.push_str(&file.display().to_string());
            if let Some(line) = self.line {
                out.push_str(&format!(":{line}"));
            }
            out.push_str(": ");
        }
        if let Some(key) = &self.key {
            out.push_str(&format!("key '{key}': "));
        }
        out.push_str(&self.reason);
        out
    }
}

/// Where a line of configuration came from; used for errors and warnings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

impl Origin {
    /// `err`, located at this origin.
    pub fn error(&self, err: ConfigError) -> ConfigError {
        err.at(&self.file, self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_every_part() {
        let e = ConfigError::new("invalid integer 'abc'")
            .at(Path::new("/etc/pgbouncer.ini"), 12)
            .with_key("max_client_conn");
        assert_eq!(
            e.to_string(),
            "/etc/pgbouncer.ini:12: key 'max_client_conn': invalid integer 'abc'"
        );
    }

    #[test]
    fn display_leaves_out_unknown_parts() {
        assert_eq!(ConfigError::new("boom").to_string(), "boom");
        assert_eq!(
            ConfigError::new("boom").with_key("k").to_string(),
            "key 'k': boom"
        );
        assert_eq!(
            ConfigError::new("boom")
                .in_file(Path::new("/x.ini"))
                .to_string(),
            "/x.ini: boom"
        );
    }

    #[test]
    fn io_error_names_file_and_os_error() {
        let err = std::fs::read_to_string("/nonexistent/pgsluice/x.ini").unwrap_err();
        let e = ConfigError::io(Path::new("/nonexistent/pgsluice/x.ini"), &err);
        let text = e.to_string();
        assert!(text.starts_with("/nonexistent/pgsluice/x.ini: could not read file: "));
        assert!(text.contains("No such file or directory"), "{text}");
    }
}
