//! pgsluice: a PostgreSQL connection pooler compatible with PgBouncer's configuration.
//!
//! The module tree mirrors the architecture in `docs/architecture.md`.

pub mod auth;
pub mod config;
