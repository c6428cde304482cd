//! The running process: the async runtime, the listeners, the janitor and the
//! signal handlers, around the shared state.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use crate::auth::Secret;
use crate::config::Config;
use crate::control::{self, ShutdownMode};
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
    let shared = Shared::new(config, secrets, Some(logger), options.cli_verbose);
    for l in &listeners {
        log::info!("listening on {}", l.describe());
    }
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(shared.clone(), l)))
        .collect();
    tokio::spawn(crate::pool::janitor::run(shared.clone()));
    tokio::spawn(crate::stats::run(shared.clone()));
    tokio::spawn(handle_signals(shared.clone()));
    log::info!(
        "process up: pgsluice {}, pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );

    let mode = wait_for_shutdown_request(&shared).await;
    // Stop accepting: dropping the accept tasks drops (and unlinks) the listeners.
    for task in &accepting {
        task.abort();
    }
    finish_shutdown(&shared, mode).await;
    if let Some(path) = &pidfile {
        let _ = std::fs::remove_file(path);
    }
    log::info!("shutting down");
    Ok(())
}

async fn accept_loop(shared: Arc<Shared>, listener: Listener) {
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

async fn wait_for_shutdown_request(shared: &Shared) -> ShutdownMode {
    let mut requests = shared.shutdown.subscribe();
    loop {
        if let Some(mode) = *requests.borrow_and_update() {
            return mode;
        }
        if requests.changed().await.is_err() {
            return ShutdownMode::Now;
        }
    }
}

/// Carry out a shutdown once no new clients are accepted. A second request
/// (a second signal, or SHUTDOWN) while waiting makes it immediate.
async fn finish_shutdown(shared: &Arc<Shared>, mode: ShutdownMode) {
    let mut requests = shared.shutdown.subscribe();
    requests.borrow_and_update();
    let wait = async {
        match mode {
            ShutdownMode::Now => {}
            ShutdownMode::WaitForServers => {
                let _ = control::pause(shared, None).await;
            }
            ShutdownMode::WaitForClients => {
                while shared
                    .client_count
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > 0
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    };
    tokio::select! {
        _ = wait => {}
        _ = requests.changed() => log::info!("second shutdown request: exiting now"),
    }
}

/// Signals, as PgBouncer uses them: SIGHUP reload; SIGINT shutdown waiting for
/// servers; SIGTERM shutdown waiting for clients; a second SIGINT/SIGTERM, or
/// SIGQUIT, exits now; SIGUSR1 pause; SIGUSR2 resume.
async fn handle_signals(shared: Arc<Shared>) {
    let kinds = [
        SignalKind::hangup(),
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ];
    let mut streams = Vec::new();
    for kind in kinds {
        match signal(kind) {
            Ok(s) => streams.push(s),
            Err(e) => {
                log::error!("cannot install signal handlers: {e}");
                return;
            }
        }
    }
    let [hup, int, term, quit, usr1, usr2] = &mut streams[..] else {
        unreachable!("six handlers")
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                log::info!("got SIGHUP, re-reading config");
                match control::reload(&shared) {
                    Ok(()) => log::info!("config reloaded"),
                    Err(e) => log::error!("reload failed, keeping the running config: {e}"),
                }
            }
            _ = int.recv() => shutdown_signal(&shared, "SIGINT", ShutdownMode::WaitForServers),
            _ = term.recv() => shutdown_signal(&shared, "SIGTERM", ShutdownMode::WaitForClients),
            _ = quit.recv() => {
                log::info!("got SIGQUIT, exiting now");
                control::shutdown(&shared, ShutdownMode::Now);
            }
            _ = usr1.recv() => {
                log::info!("got SIGUSR1, pausing");
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = control::pause(&shared, None).await {
                        log::warn!("PAUSE: {e}");
                    }
                });
            }
            _ = usr2.recv() => {
                log::info!("got SIGUSR2, resuming");
                if let Err(e) = control::resume(&shared, None) {
                    log::warn!("RESUME: {e}");
                }
            }
        }
    }
}

/// The first SIGINT/SIGTERM starts the shutdown; another one makes it immediate.
fn shutdown_signal(shared: &Arc<Shared>, name: &str, mode: ShutdownMode) {
    if shared.shutdown.borrow().is_some() {
        log::info!("got {name} again, exiting now");
        control::shutdown(shared, ShutdownMode::Now);
    } else {
        log::info!("got {name}, shutting down ({mode:?})");
        control::shutdown(shared, mode);
    }
}
