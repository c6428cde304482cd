//! The running process: the async runtime, the listeners, the janitor, the
//! signal handlers and the systemd notifications, around the shared state.
//!
//! `main` has done everything that must happen before threads exist (taking or
//! binding the sockets, forking for `-d`, dropping privileges); this module
//! starts the runtime and serves until a shutdown.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::control::reload::Loaded;
use crate::control::{self, ShutdownMode};
use crate::log::LogHandle;
use crate::net::listener::{self, Bound, Listener};
use crate::net::tuning::TcpTuning;
use crate::server::dns::resolver::ResolvConfError;
use crate::server::dns::{DnsCache, Resolver};
use crate::shared::Shared;
use crate::systemd;

/// Start-up choices from the command line and `main`.
#[derive(Debug, Default)]
pub struct Options {
    /// `-v` count, added to `verbose` from the config on every reload.
    pub cli_verbose: u32,
    /// The pidfile `main` wrote, removed again at exit.
    pub pidfile: Option<PathBuf>,
    /// `--threads`: how many threads serve connections.
    pub threads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Listen(#[from] listener::ListenError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("no listeners configured: set listen_addr or unix_socket_dir")]
    NoListeners,
    #[error("{0}")]
    ResolvConf(#[from] ResolvConfError),
}

impl DaemonError {
    /// The OS error behind the failure, for `ERRNO=`.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DaemonError::Listen(e) => e.source.raw_os_error(),
            DaemonError::Runtime(e) | DaemonError::Signals(e) => e.raw_os_error(),
            DaemonError::NoListeners | DaemonError::ResolvConf(_) => None,
        }
    }
}

/// Run until a shutdown. `listeners` were bound (or passed by systemd) before
/// the runtime; they are handed to tokio here.
pub fn run(
    loaded: Loaded,
    logger: LogHandle,
    options: Options,
    listeners: Vec<Bound>,
) -> Result<(), DaemonError> {
    if listeners.is_empty() {
        return Err(DaemonError::NoListeners);
    }
    // A restart-only setting: fixed for the process before any pool exists.
    crate::server::params::track_extra(&loaded.config.general.track_extra_parameters);
    let runtime = build_runtime(options.threads).map_err(DaemonError::Runtime)?;
    runtime.block_on(serve(loaded, logger, options, listeners))
}

/// One thread (`--threads 1`, the default) is a current-thread runtime, the
/// way PgBouncer works: no hand-offs between threads, and measurably less CPU
/// per transaction than a multi-thread runtime on the same work (figures in
/// docs/architecture.md). More threads are a work-stealing runtime of that size.
fn build_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    // The name `top -H` and /proc show (blocking helper threads share it).
    builder.thread_name("pgsluice-worker").enable_all().build()
}

async fn serve(
    loaded: Loaded,
    logger: LogHandle,
    options: Options,
    bound: Vec<Bound>,
) -> Result<(), DaemonError> {
    // Handlers first: a SIGHUP's default action would kill the process, and the
    // streams queue what arrives until the handling task runs.
    let signals = Signals::install().map_err(DaemonError::Signals)?;
    let mut listeners = Vec::with_capacity(bound.len());
    for b in bound {
        let what = b.describe();
        let passed = b.is_passed();
        let listener = b.into_listener().map_err(|source| listener::ListenError {
            what: what.clone(),
            source,
        })?;
        if passed {
            log::info!("listening on {what}, passed by systemd");
        } else {
            log::info!("listening on {what}");
        }
        listeners.push(listener);
    }
    // A restart-only setting, so the resolver is the process's.
    let resolver = Resolver::from_setting(&loaded.config.general.resolv_conf)?;
    if let Some(path) = resolver.resolv_conf() {
        log::info!(
            "server host names are looked up through the name servers of {}",
            path.display()
        );
    }
    let shared = Shared::new(
        loaded.config,
        loaded.secrets,
        DnsCache::new(resolver),
        Some(logger),
        options.cli_verbose,
    );
    tokio::spawn(systemd::notify::follow_control_events(
        shared.events.subscribe(),
    ));
    let listeners: Vec<Arc<Listener>> = listeners.into_iter().map(Arc::new).collect();
    for listener in &listeners {
        shared.listeners.track(listener);
    }
    shared.listeners.apply(&shared.config.load().general);
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(shared.clone(), l)))
        .collect();
    tokio::spawn(crate::pool::janitor::run(shared.clone()));
    tokio::spawn(crate::server::dns::zones::run(shared.clone()));
    tokio::spawn(crate::stats::run(shared.clone()));
    crate::dbus::spawn(shared.clone());
    tokio::spawn(signals.handle(shared.clone()));
    log::info!(
        "process up: pgsluice {}, pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    // Listeners serve, the config is loaded, privileges are dropped (main).
    systemd::notify::ready(&systemd::status::summary(&shared));
    tokio::spawn(systemd::status::run(shared.clone()));
    if let Some(interval) = systemd::watchdog::interval() {
        log::info!(
            "systemd watchdog: {interval:?}, pinging every {:?}",
            interval / 2
        );
        tokio::spawn(systemd::watchdog::run(interval));
    }

    let mode = wait_for_shutdown_request(&shared).await;
    systemd::notify::stopping(&format!("shutting down ({})", mode_name(mode)));
    // Stop accepting: dropping the accept tasks drops (and unlinks) the listeners.
    for task in &accepting {
        task.abort();
    }
    finish_shutdown(&shared, mode).await;
    if let Some(path) = &options.pidfile {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("cannot remove pidfile {}: {e}", path.display());
        }
    }
    log::info!("shutting down");
    Ok(())
}

fn mode_name(mode: ShutdownMode) -> &'static str {
    match mode {
        ShutdownMode::Now => "now",
        ShutdownMode::WaitForServers => "waiting for servers",
        ShutdownMode::WaitForClients => "waiting for clients",
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: Arc<Listener>) {
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                if let crate::net::Stream::Tcp(tcp) = &accepted.stream {
                    TcpTuning::from_general(&shared.config.load().general).apply(tcp);
                }
                tokio::spawn(crate::client::serve(shared.clone(), accepted));
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
struct Signals {
    hup: Signal,
    int: Signal,
    term: Signal,
    quit: Signal,
    usr1: Signal,
    usr2: Signal,
}

impl Signals {
    /// Register the handlers (inside the runtime).
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            quit: signal(SignalKind::quit())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    async fn handle(mut self, shared: Arc<Shared>) {
        loop {
            tokio::select! {
                _ = self.hup.recv() => {
                    log::info!("got SIGHUP, re-reading config");
                    // control::reload logs the outcome; systemd hears of it
                    // through the control events.
                    let _ = control::reload(&shared);
                }
                _ = self.int.recv() => shutdown_signal(&shared, "SIGINT", ShutdownMode::WaitForServers),
                _ = self.term.recv() => shutdown_signal(&shared, "SIGTERM", ShutdownMode::WaitForClients),
                _ = self.quit.recv() => {
                    log::info!("got SIGQUIT, exiting now");
                    control::shutdown(&shared, ShutdownMode::Now);
                }
                _ = self.usr1.recv() => {
                    log::info!("got SIGUSR1, pausing");
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = control::pause(&shared, None).await {
                            log::warn!("PAUSE: {e}");
                        }
                    });
                }
                _ = self.usr2.recv() => {
                    log::info!("got SIGUSR2, resuming");
                    if let Err(e) = control::resume(&shared, None) {
                        log::warn!("RESUME: {e}");
                    }
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
