//! The errors the D-Bus methods answer with: one name per kind of failure under
//! `org.pgsluice.Pooler1.Error.`, so that a caller can tell them apart, and the
//! control core's own text (PgBouncer's wording, or `file:line: …` for a config
//! that does not load) as the message.

use crate::config::ConfigError;
use crate::control::{ControlError, ReloadError};

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.pgsluice.Pooler1.Error")]
pub enum Error {
    /// Failures of the bus connection itself.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// Reload: the new config (or auth file, or log file) did not load; the
    /// running config stays in force.
    ReloadFailed(String),
    NoSuchDatabase(String),
    NoSuchClient(String),
    AlreadyPaused(String),
    NotPaused(String),
    ShuttingDown(String),
    /// Set: an unknown setting, a malformed value, or one that needs a restart.
    SetFailed(String),
    /// An argument outside its domain: an unknown shutdown mode, an empty
    /// database name where one is required.
    InvalidArgs(String),
}

impl From<ControlError> for Error {
    fn from(e: ControlError) -> Error {
        let text = e.to_string();
        match e {
            ControlError::NoSuchDatabase(_) => Error::NoSuchDatabase(text),
            ControlError::NoSuchClient(id) => Error::NoSuchClient(format!("{text}: {id}")),
            ControlError::AlreadyPaused => Error::AlreadyPaused(text),
            ControlError::NotPaused | ControlError::DatabaseNotPaused(_) => Error::NotPaused(text),
            ControlError::ShuttingDown => Error::ShuttingDown(text),
        }
    }
}

impl From<ReloadError> for Error {
    fn from(e: ReloadError) -> Error {
        Error::ReloadFailed(e.to_string())
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::SetFailed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn names_and_messages() {
        let e = Error::from(ControlError::NoSuchDatabase("nope".into()));
        assert_eq!(
            e.name().as_str(),
            "org.pgsluice.Pooler1.Error.NoSuchDatabase"
        );
        assert_eq!(e.description(), Some("no such database: nope"));
        let e = Error::from(ControlError::NoSuchClient(42));
        assert_eq!(e.name().as_str(), "org.pgsluice.Pooler1.Error.NoSuchClient");
        assert_eq!(e.description(), Some("client not found: 42"));
        let e = Error::from(ControlError::DatabaseNotPaused("db".into()));
        assert_eq!(e.name().as_str(), "org.pgsluice.Pooler1.Error.NotPaused");
        assert_eq!(e.description(), Some("database db is not paused"));
        let bad = ConfigError::new("invalid integer 'x'")
            .with_key("listen_port")
            .at(std::path::Path::new("/etc/pgbouncer.ini"), 3);
        let e = Error::from(ReloadError::from(bad.clone()));
        assert_eq!(e.name().as_str(), "org.pgsluice.Pooler1.Error.ReloadFailed");
        assert_eq!(
            e.description(),
            Some("/etc/pgbouncer.ini:3: key 'listen_port': invalid integer 'x'")
        );
        let e = Error::from(bad);
        assert_eq!(e.name().as_str(), "org.pgsluice.Pooler1.Error.SetFailed");
    }
}
