//! The D-Bus front door: interface `org.pgsluice.Pooler1` at object
//! `/org/pgsluice/Pooler1`, under the well-known name `dbus_name` (default
//! `org.pgsluice.Pooler1`) on the bus `dbus` names (`system`, `session` or
//! `off`). A thin adapter: every method is one call into [`crate::control`], the
//! reads are the SHOW snapshots, and the signals follow the control core's
//! events. `docs/dbus.md` is the user's reference.
//!
//! zbus runs on the daemon's tokio runtime (its `tokio` feature; no executor
//! thread of its own). The connection is made by [`spawn`] inside the running
//! daemon, after `main` has dropped privileges, so the bus sees the service user
//! (`postgres`), whom the shipped policy file lets own the name. A bus that is
//! missing, or that refuses the name, costs one warning and nothing else: the
//! pooler serves without D-Bus.
//!
//! - [`interface`]: the methods and properties.
//! - [`rows`]: the SHOW rows as `a{sv}` dictionaries.
//! - [`signals`]: `Reloaded`, `StateChanged` and `PropertiesChanged` from the
//!   control core's events.
//! - [`error`]: the D-Bus error names.

pub mod error;
pub mod interface;
pub mod rows;
pub mod signals;

use std::sync::Arc;
use std::time::Duration;

use zbus::connection::Builder;
use zbus::Connection;

use crate::config::general::DbusBus;
use crate::shared::Shared;

pub use interface::Pooler1;

/// The object path the interface is served at.
pub const PATH: &str = "/org/pgsluice/Pooler1";
/// The interface name.
pub const INTERFACE: &str = "org.pgsluice.Pooler1";

/// How long connecting and taking the name may take before we give up: a bus
/// that accepts but never answers must not leave us waiting silently.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Offer the interface on the configured bus, in the background. Must be called
/// inside the runtime, after privileges are dropped. Never fails: problems are
/// logged once.
pub fn spawn(shared: Arc<Shared>) {
    let (bus, name) = {
        let config = shared.config.load();
        (config.general.dbus, config.general.dbus_name.clone())
    };
    if bus == DbusBus::Off {
        log::debug!("D-Bus interface off (dbus = off)");
        return;
    }
    // Subscribed before connecting, so that no event between now and the name
    // being taken goes unannounced (the channel holds them meanwhile).
    let events = shared.events.subscribe();
    tokio::spawn(async move {
        match connect(shared, bus, &name).await {
            Ok(connection) => {
                log::info!("D-Bus: serving {name} on the {bus} bus");
                signals::forward(&connection, events).await;
            }
            Err(e) => log::warn!(
                "D-Bus: not serving {name} on the {bus} bus, carrying on without it: {e}"
            ),
        }
    });
}

/// Connect to the bus, serve the object and take the name, bounded.
async fn connect(shared: Arc<Shared>, bus: DbusBus, name: &str) -> Result<Connection, String> {
    let build = async {
        let builder = match bus {
            DbusBus::System => Builder::system()?,
            DbusBus::Session => Builder::session()?,
            DbusBus::Off => return Err(zbus::Error::Unsupported),
        };
        builder
            .serve_at(PATH, Pooler1::new(shared))?
            .name(name)?
            .build()
            .await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, build).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(describe(&e, name)),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// zbus's error text, with a hint for the usual refusal.
fn describe(e: &zbus::Error, name: &str) -> String {
    match e {
        zbus::Error::MethodError(error, _, _)
            if error.as_str() == "org.freedesktop.DBus.Error.AccessDenied" =>
        {
            format!(
                "{e} (a policy file in /usr/share/dbus-1/system.d must let this user own \
                 {name}, as the shipped org.pgsluice.Pooler1.conf does; or set dbus = off)"
            )
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::object_server::Interface;

    #[test]
    fn names() {
        assert_eq!(Pooler1::name().as_str(), INTERFACE);
        assert_eq!(
            crate::config::settings::DEFAULT_DBUS_NAME,
            INTERFACE,
            "the default bus name is the interface name, as the policy file has it"
        );
        zbus::zvariant::ObjectPath::try_from(PATH).expect("a valid object path");
    }
}
