//! The `pgsluice` command: PgBouncer's command line, then the runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use pgsluice::control::reload;
use pgsluice::daemon;
use pgsluice::log::LogSettings;

/// A PostgreSQL connection pooler that reads pgbouncer.ini.
#[derive(Parser, Debug)]
#[command(name = "pgsluice", version, about)]
struct Cli {
    /// Run in the background (not supported yet: run it under systemd or in the foreground).
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Log nothing to stderr.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// More logging; repeat for more.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    verbose: u8,
    /// Switch to this user at start (overrides `user` in the config).
    #[arg(short = 'u', long = "user", value_name = "USER")]
    user: Option<String>,
    /// The configuration file (pgbouncer.ini syntax).
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.daemon {
        eprintln!("pgsluice: -d (daemon mode) is not supported yet; run in the foreground or under systemd");
        return ExitCode::FAILURE;
    }
    let (config, secrets) = match reload::load_quiet(&cli.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("pgsluice: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_settings = LogSettings {
        quiet: cli.quiet,
        verbose: u32::from(cli.verbose) + config.general.verbose,
        logfile: config.general.logfile.clone(),
    };
    let logger = match pgsluice::log::init(&log_settings) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("pgsluice: cannot open logfile: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in reload::warnings(&config) {
        log::warn!("{warning}");
    }
    let options = daemon::Options {
        cli_verbose: u32::from(cli.verbose),
        user: cli.user,
    };
    match daemon::run(config, secrets, logger, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("pgsluice: {e}");
            ExitCode::FAILURE
        }
    }
}
