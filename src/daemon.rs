//! The running process: the async runtime, the listeners, the janitor and the
//! signal handlers, around the shared state.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use crate::auth::Secret;
use crate::config::Config;
use crate::control::reload;
use crate::log::LogHandle;
use crate::net::listener::{self, Listener};
use crate::shared::Shared;

/// Start-up choices from the command line.
#[derive(Debug, Default)]
pub struct Options {
    /// `-v` count, added to `verbose` from the config on every reload.
    pub cli_verbose: u32,
    /// `-u USER` (switching user is not implemented yet).
    pub user: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Listen(#[from] listener::ListenError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write pidfile {0}: {1}")]
    Pidfile(PathBuf, std::io::Error),
    #[error("no listeners configured: set listen_addr or unix_socket_dir")]
    NoListeners,
}

/// Run until a shutdown signal.
pub fn run(
    config: Config,
    secrets: HashMap<String, Secret>,
    logger: LogHandle,
    options: Options,
) -> Result<(), DaemonError> {
    if options.user.is_some() || config.general.user.is_some() {
        log::warn!(
            "switching user (-u / user=) is not implemented yet; running as the current user"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(serve(config, secrets, logger, options))
}

async fn serve(
    config: Config,
    secrets: HashMap<String, Secret>,
    logger: LogHandle,
    options: Options,
) -> Result<(), DaemonError> {
    let listeners = listener::bind_all(&config.general)?;
    if listeners.is_empty() {
        return Err(DaemonError::NoListeners);
    }
    let pidfile = config.general.pidfile.clone();
    if let Some(path) = &pidfile {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| DaemonError::Pidfile(path.clone(), e))?;
    }
    let shared = Shared::new(config, secrets);
    for l in &listeners {
        log::info!("listening on {}", l.describe());
    }
    let listeners: Vec<Arc<Listener>> = listeners.into_iter().map(Arc::new).collect();
    for l in &listeners {
        tokio::spawn(accept_loop(shared.clone(), l.clone()));
    }
    tokio::spawn(crate::pool::janitor::run(shared.clone()));
    log::info!(
        "process up: pgsluice {}, pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );

    wait_for_shutdown(&shared, &logger, options.cli_verbose).await;
    drop(listeners);
    if let Some(path) = &pidfile {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

async fn accept_loop(shared: Arc<Shared>, listener: Arc<Listener>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if let crate::net::Stream::Tcp(tcp) = &stream {
                    listener::tune_tcp(tcp, shared.config.load().general.tcp_keepalive);
                }
                tokio::spawn(crate::client::serve(shared.clone(), stream));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little, keep going.
                log::error!("accept() failed on {}: {e}", listener.describe());
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Handle signals until one asks to stop: SIGHUP reloads; SIGINT and SIGTERM stop.
async fn wait_for_shutdown(shared: &Arc<Shared>, logger: &LogHandle, cli_verbose: u32) {
    let (Ok(mut hup), Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        log::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                log::info!("got SIGHUP, re-reading config");
                match reload::reload(shared, Some(logger), cli_verbose) {
                    Ok(()) => log::info!("config reloaded"),
                    Err(e) => log::error!("reload failed, keeping the running config: {e}"),
                }
            }
            _ = int.recv() => { log::info!("got SIGINT, shutting down"); return; }
            _ = term.recv() => { log::info!("got SIGTERM, shutting down"); return; }
        }
    }
}
