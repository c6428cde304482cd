//! The `org.pgsluice.Pooler1` interface: every method is one call into the
//! control core and answers when that call has finished. The doc comments below
//! go into the introspection data (`busctl introspect`).

use std::sync::Arc;

use zbus::interface;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::Connection;

use super::error::Error;
use super::rows::{self, Row};
use crate::control::{self, ShutdownMode};
use crate::shared::Shared;

/// The object served at [`super::PATH`].
pub struct Pooler1 {
    shared: Arc<Shared>,
}

impl Pooler1 {
    pub fn new(shared: Arc<Shared>) -> Pooler1 {
        Pooler1 { shared }
    }
}

/// `""` names every database.
fn database_or_all(database: &str) -> Option<&str> {
    (!database.is_empty()).then_some(database)
}

/// DISABLE and ENABLE act on one database: `""` is refused.
fn one_database<'a>(method: &str, database: &'a str) -> Result<&'a str, Error> {
    if database.is_empty() {
        Err(Error::InvalidArgs(format!(
            "{method} needs a database name"
        )))
    } else {
        Ok(database)
    }
}

/// The SHUTDOWN modes by their D-Bus names.
pub fn shutdown_mode(mode: &str) -> Result<ShutdownMode, Error> {
    match mode {
        "now" => Ok(ShutdownMode::Now),
        "wait-for-servers" => Ok(ShutdownMode::WaitForServers),
        "wait-for-clients" => Ok(ShutdownMode::WaitForClients),
        other => Err(Error::InvalidArgs(format!(
            "unknown shutdown mode '{other}' (expected now, wait-for-servers or wait-for-clients)"
        ))),
    }
}

#[interface(name = "org.pgsluice.Pooler1")]
impl Pooler1 {
    /// Re-read the config file and the auth file and put them in force without
    /// dropping anyone (RELOAD). Returns once the new config serves; if it does
    /// not load, fails with ReloadFailed naming file and line, and the running
    /// config stays.
    async fn reload(&self) -> Result<(), Error> {
        control::reload(&self.shared)?;
        Ok(())
    }

    /// Stop handing out servers and wait until every server of the database
    /// ("" for all) has been released (PAUSE). Returns when that is done.
    async fn pause(&self, database: &str) -> Result<(), Error> {
        control::pause(&self.shared, database_or_all(database)).await?;
        Ok(())
    }

    /// Undo Pause or Kill for the database ("" for all) (RESUME).
    async fn resume(&self, database: &str) -> Result<(), Error> {
        control::resume(&self.shared, database_or_all(database))?;
        Ok(())
    }

    /// Replace every server of the database ("" for all) after its current
    /// use (RECONNECT).
    async fn reconnect(&self, database: &str) -> Result<(), Error> {
        control::reconnect(&self.shared, database_or_all(database))?;
        Ok(())
    }

    /// Drop every client and server of the database ("" for all) now; new
    /// clients wait for Resume (KILL).
    async fn kill(&self, database: &str) -> Result<(), Error> {
        control::kill(&self.shared, database_or_all(database))?;
        Ok(())
    }

    /// Refuse new clients of the database; connected ones carry on (DISABLE).
    async fn disable(&self, database: &str) -> Result<(), Error> {
        control::disable(&self.shared, one_database("Disable", database)?)?;
        Ok(())
    }

    /// Accept clients of a disabled database again (ENABLE).
    async fn enable(&self, database: &str) -> Result<(), Error> {
        control::enable(&self.shared, one_database("Enable", database)?)?;
        Ok(())
    }

    /// Disconnect the client with this id (the `id` of GetClients) (KILL_CLIENT).
    async fn kill_client(&self, id: u64) -> Result<(), Error> {
        control::kill_client(&self.shared, id)?;
        Ok(())
    }

    /// Stop the pooler (SHUTDOWN): mode "now", "wait-for-servers" or
    /// "wait-for-clients". Returns once the shutdown has begun; a second
    /// request while waiting makes it immediate.
    async fn shutdown(
        &self,
        mode: &str,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let mode = shutdown_mode(mode)?;
        // With "now" the process may exit before zbus would send the reply, so
        // the reply goes out here, before the shutdown starts (zbus's
        // ResponseDispatchNotifier would do that too, but would put an empty
        // out argument into the introspection data).
        connection.reply(&header, &()).await?;
        control::shutdown(&self.shared, mode);
        // Never return: returning would make zbus send a second reply. The task
        // ends with the process.
        std::future::pending::<()>().await;
        Ok(())
    }

    /// Change one setting at run time (SET key = value).
    async fn set(&self, key: &str, value: &str) -> Result<(), Error> {
        control::set(&self.shared, key, value)?;
        Ok(())
    }

    /// SHOW POOLS, one dictionary per pool, keyed by the column names.
    #[zbus(out_args("pools"))]
    async fn get_pools(&self) -> Vec<Row> {
        control::pools(&self.shared)
            .iter()
            .map(rows::pool)
            .collect()
    }

    /// SHOW STATS, one dictionary per database, keyed by the column names.
    #[zbus(out_args("stats"))]
    async fn get_stats(&self) -> Vec<Row> {
        control::stats(&self.shared)
            .iter()
            .map(rows::stats)
            .collect()
    }

    /// SHOW DATABASES, one dictionary per database, keyed by the column names.
    #[zbus(out_args("databases"))]
    async fn get_databases(&self) -> Vec<Row> {
        control::databases(&self.shared)
            .iter()
            .map(rows::database)
            .collect()
    }

    /// SHOW CLIENTS, one dictionary per client, keyed by the column names.
    #[zbus(out_args("clients"))]
    async fn get_clients(&self) -> Vec<Row> {
        control::clients(&self.shared)
            .iter()
            .map(rows::conn)
            .collect()
    }

    /// SHOW SERVERS, one dictionary per server connection, keyed by the column names.
    #[zbus(out_args("servers"))]
    async fn get_servers(&self) -> Vec<Row> {
        control::servers(&self.shared)
            .iter()
            .map(rows::conn)
            .collect()
    }

    /// "pgsluice X.Y.Z", as SHOW VERSION.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        control::version()
    }

    /// "running", "paused" (everything paused) or "shutting-down".
    #[zbus(property)]
    fn state(&self) -> String {
        control::pooler_state(&self.shared).as_str().to_owned()
    }

    /// Client connections now open, logged in or not.
    #[zbus(property(emits_changed_signal = "false"))]
    fn client_connections(&self) -> u32 {
        let n = self
            .shared
            .client_count
            .load(std::sync::atomic::Ordering::Relaxed);
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Server connections now open.
    #[zbus(property(emits_changed_signal = "false"))]
    fn server_connections(&self) -> u32 {
        u32::try_from(self.shared.servers.len()).unwrap_or(u32::MAX)
    }

    /// The config file in force (Reload re-reads it).
    #[zbus(property(emits_changed_signal = "const"))]
    fn config_file(&self) -> String {
        self.shared.config.load().file.display().to_string()
    }

    /// A reload ended, whoever asked for it (D-Bus, the console, SIGHUP): ok,
    /// and the error text when it failed.
    #[zbus(signal)]
    pub async fn reloaded(emitter: &SignalEmitter<'_>, ok: bool, message: &str)
        -> zbus::Result<()>;

    /// The State property changed (also announced by PropertiesChanged).
    #[zbus(signal, name = "StateChanged")]
    pub async fn state_changed_signal(emitter: &SignalEmitter<'_>, state: &str)
        -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_modes() {
        assert_eq!(shutdown_mode("now").unwrap(), ShutdownMode::Now);
        assert_eq!(
            shutdown_mode("wait-for-servers").unwrap(),
            ShutdownMode::WaitForServers
        );
        assert_eq!(
            shutdown_mode("wait-for-clients").unwrap(),
            ShutdownMode::WaitForClients
        );
        let e = shutdown_mode("later").unwrap_err();
        assert!(matches!(e, Error::InvalidArgs(m) if m.contains("'later'")));
    }

    /// Every argument has its name in the introspection data, and the
    /// arguments zbus fills in (connection, header) are not arguments.
    #[test]
    fn introspection_names_every_argument() {
        let config = crate::config::Config::from_text(
            std::path::Path::new("/tmp/pgsluice-dbus-test.ini"),
            "[pgbouncer]\n\n[databases]\nsluice = host=127.0.0.1 port=1\n",
        )
        .unwrap();
        let pooler = Pooler1::new(Shared::new(
            config,
            Default::default(),
            Default::default(),
            None,
            0,
        ));
        let mut xml = String::new();
        zbus::object_server::Interface::introspect_to_writer(&pooler, &mut xml, 0);
        assert!(!xml.contains("<arg type"), "an unnamed argument:\n{xml}");
        for arg in [
            r#"<arg name="database" type="s" direction="in"/>"#,
            r#"<arg name="id" type="t" direction="in"/>"#,
            r#"<arg name="mode" type="s" direction="in"/>"#,
            r#"<arg name="key" type="s" direction="in"/>"#,
            r#"<arg name="value" type="s" direction="in"/>"#,
            r#"<arg name="pools" type="aa{sv}" direction="out"/>"#,
            r#"<arg name="ok" type="b"/>"#,
            r#"<arg name="message" type="s"/>"#,
            r#"<arg name="state" type="s"/>"#,
        ] {
            assert!(xml.contains(arg), "{arg} in:\n{xml}");
        }
        let shutdown = xml
            .split("<method name=\"Shutdown\">")
            .nth(1)
            .and_then(|rest| rest.split("</method>").next())
            .expect("a Shutdown method");
        assert_eq!(shutdown.matches("<arg ").count(), 1, "{shutdown}");
    }

    #[test]
    fn database_arguments() {
        assert_eq!(database_or_all(""), None);
        assert_eq!(database_or_all("sluice"), Some("sluice"));
        assert_eq!(one_database("Disable", "sluice").unwrap(), "sluice");
        let e = one_database("Disable", "").unwrap_err();
        assert!(matches!(e, Error::InvalidArgs(m) if m == "Disable needs a database name"));
    }
}
