//! pgsluice: a PostgreSQL connection pooler compatible with PgBouncer's
//! configuration. The module tree mirrors `docs/architecture.md`.

pub mod auth;
pub mod config;
pub mod net;
pub mod protocol;
