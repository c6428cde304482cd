//! The control core: operations on the running pooler that every front door
//! (signals now; the admin console and D-Bus later) calls. No SQL and no
//! transport here.

pub mod reload;

pub use reload::{reload, ReloadError};
