//! pgsluice: a PostgreSQL connection pooler compatible with PgBouncer's
//! configuration. The module tree mirrors `docs/architecture.md`.

pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dbus;
pub mod log;
pub mod net;
pub mod pool;
pub mod prepared;
pub mod protocol;
pub mod server;
pub mod shared;
pub mod stats;
pub mod systemd;
