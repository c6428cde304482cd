//! The pgbouncer.ini model: an unchanged PgBouncer configuration file is read into
//! a [`Config`].
//!
//! Reading goes in three steps, each in its own file:
//! [`include`] expands `%include` and checks the line grammar while remembering where
//! every line came from; rust-ini (quotes and escapes off: values are libpq connection
//! strings, taken verbatim) splits sections and keys; then each section is interpreted:
//! `[pgbouncer]` (or `[pgsluice]`) through the [`settings`] table into [`General`],
//! `[databases]`, `[users]` and `[peers]` through [`connstr`].
//!
//! Problems that PgBouncer would tolerate (unknown keys and sections, settings
//! pgsluice does not act on) become warnings for the caller to log; a malformed value
//! is a [`ConfigError`] naming file, line and key.

pub mod connstr;
pub mod databases;
pub mod error;
pub mod general;
pub mod include;
pub mod peers;
pub mod settings;
pub mod userlist;
pub mod users;
pub mod value;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ini::{Ini, ParseOption};

use crate::net::tls::Tls;

pub use databases::DatabaseDef;
pub use error::{ConfigError, Origin};
pub use general::{AuthType, General, PoolMode, ServerCheck, SslMode};
pub use peers::PeerDef;
pub use settings::{Kind, SettingDef};
pub use userlist::{load_userlist, UserList};
pub use users::UserDef;
pub use value::{SettingValues, Value};

/// A loaded configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The main config file as given.
    pub file: PathBuf,
    /// The generic settings, typed.
    pub general: General,
    /// Every known generic setting → its effective value as SHOW CONFIG prints it
    /// (the default when unset; an unset setting without default is `""`).
    pub values: BTreeMap<&'static str, String>,
    /// Client-facing database name → entry; `*` is the fallback entry if present.
    pub databases: BTreeMap<String, DatabaseDef>,
    pub users: BTreeMap<String, UserDef>,
    pub peers: BTreeMap<u32, PeerDef>,
    /// Problems that did not stop the load, for the caller to log.
    pub warnings: Vec<String>,
    /// The TLS acceptor and connector the `*_tls_*` settings make: disabled
    /// as parsed, filled in by `control::reload::load_quiet` and by SET,
    /// which read the key and certificate files.
    pub tls: Tls,
    /// The rules of auth_hba_file when auth_type is hba (else `None`); read
    /// by `load_hba`, from `control::reload::load_quiet` and by SET.
    pub hba: Option<Arc<crate::auth::hba::HbaRules>>,
    /// The user name maps of auth_ident_file, read with `hba` when that file
    /// is set.
    pub ident: Option<Arc<crate::auth::ident::IdentMaps>>,
    /// The typed values `general` and `values` are both made from.
    settings: SettingValues,
    /// Settings that were given a value (by the file, by SET, or `conffile` from the
    /// command line); the others print their default, or NULL when it has none.
    explicit: BTreeSet<&'static str>,
}

/// One row of the admin console's `SHOW CONFIG`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShowConfigRow {
    pub key: &'static str,
    /// `None` prints as NULL: a setting without default that was never set.
    pub value: Option<String>,
    /// `None` prints as NULL.
    pub default: Option<&'static str>,
    pub changeable: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Generic,
    Databases,
    Users,
    Peers,
    Unknown,
}

impl Section {
    fn of(name: &str) -> Section {
        match name.trim().to_ascii_lowercase().as_str() {
            "pgbouncer" | "pgsluice" => Section::Generic,
            "databases" => Section::Databases,
            "users" => Section::Users,
            "peers" => Section::Peers,
            _ => Section::Unknown,
        }
    }
}

/// Where and as whom a user missing from auth_file is looked up (see
/// [`Config::auth_lookup`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthLookup<'a> {
    /// The role the lookup logs in to the server as.
    pub user: &'a str,
    /// The query; `$1` is the user name, and it returns (name, secret).
    pub query: &'a str,
    /// The `[databases]` entry to run it in; the client's database when `None`.
    pub database: Option<&'a str>,
}

impl Config {
    /// Reads the configuration file at `path`, with its includes.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let expanded = include::Expanded::load(path)?;
        Config::from_expanded(path, &expanded)
    }

    /// Reads configuration text as if it were the file `path` (includes are read
    /// relative to it).
    pub fn from_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let expanded = include::Expanded::from_text(path, text)?;
        Config::from_expanded(path, &expanded)
    }

    /// The static table of every generic setting, in SHOW CONFIG order.
    pub fn setting_defs() -> &'static [SettingDef] {
        settings::SETTINGS
    }

    /// The entry for database `name`: the exact entry, else the `*` fallback (whose
    /// `dbname` is `None`, meaning the client's database name).
    pub fn database(&self, name: &str) -> Option<&DatabaseDef> {
        self.databases
            .get(name)
            .or_else(|| self.databases.get(databases::FALLBACK))
    }

    /// How a user missing from auth_file is looked up for a login to `def`:
    /// the entry's auth_user, auth_query and auth_dbname, each falling back to
    /// the generic setting. `None` when no auth_user is set for it.
    pub fn auth_lookup<'a>(&'a self, def: &'a DatabaseDef) -> Option<AuthLookup<'a>> {
        let g = &self.general;
        let user = def.auth_user.as_deref().or(g.auth_user.as_deref())?;
        Some(AuthLookup {
            user,
            query: def.auth_query.as_deref().unwrap_or(&g.auth_query),
            database: def.auth_dbname.as_deref().or(g.auth_dbname.as_deref()),
        })
    }

    /// Read auth_hba_file, and auth_ident_file if set, when auth_type is hba
    /// (and forget them otherwise). Nothing changes if either fails to load.
    pub fn load_hba(&mut self) -> Result<(), ConfigError> {
        let g = &self.general;
        let (hba, ident) = match (g.auth_type, &g.auth_hba_file) {
            (AuthType::Hba, Some(path)) => {
                let ident = match &g.auth_ident_file {
                    Some(path) => Some(Arc::new(crate::auth::ident::IdentMaps::load(path)?)),
                    None => None,
                };
                (
                    Some(Arc::new(crate::auth::hba::HbaRules::load(path)?)),
                    ident,
                )
            }
            (AuthType::Hba, None) => {
                return Err(ConfigError::new("auth_type = hba needs auth_hba_file")
                    .with_key("auth_hba_file"))
            }
            _ => (None, None),
        };
        self.hba = hba;
        self.ident = ident;
        Ok(())
    }

    /// Validates and applies one generic setting at run time (the console's SET).
    /// Settings that need a restart are refused, so that what SHOW CONFIG says is
    /// always what is in effect.
    pub fn set_value(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let name = key.trim().to_ascii_lowercase();
        let def = settings::find(&name)
            .ok_or_else(|| ConfigError::new("unknown parameter").with_key(key.trim()))?;
        if !def.changeable {
            return Err(ConfigError::new(
                "cannot be changed at run time (changeable = no); change it in the config file and restart",
            )
            .with_key(def.name));
        }
        let parsed = def
            .parse(value.trim())
            .map_err(|reason| ConfigError::new(reason).with_key(def.name))?;
        self.settings.set(def, parsed);
        self.explicit.insert(def.name);
        self.refresh();
        Ok(())
    }

    /// The rows of SHOW CONFIG, in PgBouncer's order.
    pub fn show_config(&self) -> Vec<ShowConfigRow> {
        settings::SETTINGS
            .iter()
            .map(|d| {
                let unset_null =
                    d.default.is_none() && d.kind == Kind::Str && !self.explicit.contains(d.name);
                ShowConfigRow {
                    key: d.name,
                    value: if unset_null {
                        None
                    } else {
                        self.values.get(d.name).cloned()
                    },
                    default: d.default,
                    changeable: d.changeable,
                }
            })
            .collect()
    }

    /// The restart-only settings whose value differs in `newer`: a reload cannot
    /// apply them, so the caller keeps the old values and warns.
    pub fn restart_required(&self, newer: &Config) -> Vec<&'static str> {
        settings::SETTINGS
            .iter()
            .filter(|d| !d.changeable && self.values.get(d.name) != newer.values.get(d.name))
            .map(|d| d.name)
            .collect()
    }

    fn from_expanded(path: &Path, ex: &include::Expanded) -> Result<Config, ConfigError> {
        let options = ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            ..ParseOption::default()
        };
        let ini = Ini::load_from_str_opt(&ex.text, options).map_err(|e| {
            let err = ConfigError::new(format!("syntax error: {}", e.msg));
            match ex.origin_of_line(e.line) {
                Some(origin) => origin.error(err),
                None => err.in_file(path),
            }
        })?;

        let mut cfg = Config {
            file: path.to_path_buf(),
            general: General::default(),
            values: BTreeMap::new(),
            databases: BTreeMap::new(),
            users: BTreeMap::new(),
            peers: BTreeMap::new(),
            warnings: Vec::new(),
            settings: SettingValues::default(),
            explicit: BTreeSet::new(),
            tls: Tls::default(),
            hba: None,
            ident: None,
        };
        // PgBouncer shows the file it was started with as `conffile`.
        if let Some(def) = settings::find("conffile") {
            cfg.settings
                .set(def, Value::Str(path.display().to_string()));
            cfg.explicit.insert(def.name);
        }

        let mut have_generic = false;
        for header in &ex.sections {
            match Section::of(&header.name) {
                Section::Generic => have_generic = true,
                Section::Unknown => cfg.warnings.push(format!(
                    "{}: unknown section [{}] ignored",
                    header.origin, header.name
                )),
                _ => {}
            }
        }
        if !have_generic {
            return Err(
                ConfigError::new("main section [pgbouncer] missing from config file").in_file(path),
            );
        }

        // Where each generic setting was last set, for the "not implemented" warning.
        let mut set_at: BTreeMap<&'static str, Origin> = BTreeMap::new();
        let mut occurrences: HashMap<(String, String), usize> = HashMap::new();
        for (section, props) in ini.iter() {
            // The section-less part is empty: the line scanner refuses keys there.
            let Some(section) = section else { continue };
            let kind = Section::of(section);
            for (key, value) in props.iter() {
                let nth = occurrences
                    .entry((section.to_ascii_lowercase(), key.to_string()))
                    .or_default();
                let origin = ex.locate_nth(section, key, *nth).cloned().ok_or_else(|| {
                    ConfigError::new(format!(
                        "internal error: key found by rust-ini but not by the line scanner in [{section}]"
                    ))
                    .in_file(path)
                    .with_key(key)
                })?;
                *nth += 1;
                let located = |reason: String| origin.error(ConfigError::new(reason).with_key(key));
                match kind {
                    Section::Generic => {
                        if let Some(name) = cfg.set_from_file(key, value, &origin)? {
                            set_at.insert(name, origin);
                        }
                    }
                    Section::Databases => {
                        let db = DatabaseDef::parse(key, value).map_err(located)?;
                        cfg.databases.insert(key.to_string(), db);
                    }
                    Section::Users => {
                        let user = UserDef::parse(key, value).map_err(located)?;
                        cfg.users.insert(key.to_string(), user);
                    }
                    Section::Peers => {
                        let peer = PeerDef::parse(key, value).map_err(located)?;
                        cfg.peers.insert(peer.peer_id, peer);
                    }
                    Section::Unknown => {}
                }
            }
        }

        for (name, origin) in &set_at {
            let Some(def) = settings::find(name) else {
                continue;
            };
            let value = cfg.settings.get(name);
            if !def.implemented && value != Some(&def.default_value()) {
                let shown = value.map(|v| v.to_string()).unwrap_or_default();
                cfg.warnings.push(format!(
                    "{origin}: setting '{name}' is not implemented by pgsluice; its value '{shown}' has no effect"
                ));
            }
        }

        cfg.refresh();
        let g = &cfg.general;
        if g.auth_type == AuthType::Cert
            && (g.client_tls_sslmode == SslMode::Disable || g.client_tls_ca_file.is_none())
        {
            cfg.warnings.push(
                "auth_type = cert needs TLS to clients and client_tls_ca_file: without them \
                 no client certificate is asked for, so every login fails"
                    .to_string(),
            );
        }
        Ok(cfg)
    }

    /// Applies one `[pgbouncer]` line; returns the setting's name when it is known.
    fn set_from_file(
        &mut self,
        key: &str,
        value: &str,
        origin: &Origin,
    ) -> Result<Option<&'static str>, ConfigError> {
        let name = key.to_ascii_lowercase();
        let Some(def) = settings::find(&name) else {
            self.warnings
                .push(format!("unknown parameter: {origin}: {key}"));
            return Ok(None);
        };
        let parsed = def
            .parse(value)
            .map_err(|reason| origin.error(ConfigError::new(reason).with_key(key)))?;
        self.settings.set(def, parsed);
        self.explicit.insert(def.name);
        Ok(Some(def.name))
    }

    /// Rebuilds `values` and `general` from `settings`: the one path for load and SET.
    fn refresh(&mut self) {
        self.values = self
            .settings
            .iter()
            .map(|(name, v)| (name, v.to_string()))
            .collect();
        self.general = General::from_values(&self.settings);
    }
}

#[cfg(test)]
mod tests;
