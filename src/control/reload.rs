//! Reload: re-read the config and the auth file, check them, and apply them to
//! the running pooler without dropping anyone. A new config that does not load
//! changes nothing.

use foldhash::{HashMap, HashMapExt};
use std::path::Path;
use std::sync::Arc;

use crate::auth::Secret;
use crate::config::{Config, ConfigError};
use crate::log::LogSettings;
use crate::net::tls::Tls;
use crate::shared::Shared;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot open logfile {path}: {source}")]
    Logfile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A config file and what it names: the auth file's secrets, the TLS keys
/// and certificates (in `config.tls`) and the hba rules (in `config.hba`).
pub struct Loaded {
    pub config: Config,
    pub secrets: HashMap<String, Secret>,
}

/// Load a config file and the files it names, logging their warnings.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let loaded = load_quiet(path)?;
    for warning in warnings(&loaded.config) {
        log::warn!("{warning}");
    }
    Ok(loaded)
}

/// Load without logging (at start-up, before the logger exists); the config keeps
/// its warnings for `warnings()`.
pub fn load_quiet(path: &Path) -> Result<Loaded, ConfigError> {
    let mut config = Config::load(path)?;
    let secrets = match &config.general.auth_file {
        Some(auth_file) => {
            let userlist = crate::config::userlist::load_userlist(auth_file)?;
            config.warnings.extend(userlist.warnings);
            userlist.users
        }
        None => HashMap::new(),
    };
    config.tls = Tls::load(&config.general).map_err(|e| e.in_file(path))?;
    config.load_hba()?;
    Ok(Loaded { config, secrets })
}

/// Everything worth a warning in a loaded config (unknown keys, unimplemented
/// settings, skipped auth file lines).
pub fn warnings(config: &Config) -> impl Iterator<Item = &String> {
    config.warnings.iter()
}

/// The one reload, whatever asked for it (SIGHUP, RELOAD, D-Bus). It reads
/// `conffile`: the file pgsluice started with, or the one SET conffile named,
/// as in PgBouncer.
pub fn reload(shared: &Shared) -> Result<(), ReloadError> {
    let path = {
        let config = shared.config.load();
        if config.general.conffile.as_os_str().is_empty() {
            config.file.clone()
        } else {
            config.general.conffile.clone()
        }
    };
    let Loaded { config, secrets } = load(&path)?;
    if let Some(logger) = &shared.logger {
        let settings = LogSettings {
            quiet: false,
            verbose: shared.cli_verbose + config.general.verbose,
            logfile: config.general.logfile.clone(),
        };
        logger
            .reconfigure(&settings)
            .map_err(|source| ReloadError::Logfile {
                path: settings
                    .logfile
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                source,
            })?;
        logger.set_syslog(crate::log::SyslogSettings::from_general(&config.general));
    }
    shared.pools.apply(&config, &secrets);
    shared.secrets.store(Arc::new(secrets));
    shared.config.store(Arc::new(config));
    Ok(())
}
