//! Why a server connection is closed: the words of its log line
//! (log_disconnections), PgBouncer's where it has them, so that what people
//! grep for in a PgBouncer log finds the same events here. Where PgBouncer
//! tells the client the same words (a configuration change, a crashed
//! server), the session's error uses the constant too.

/// RECONNECT, a reload that changed or removed the database, or
/// server_fast_close ending a session.
pub const CONFIG_CHANGED: &str = "database configuration changed";
/// PAUSE closes servers as they become idle.
pub const PAUSE_MODE: &str = "pause mode";
/// KILL closes them too, in other words (PgBouncer 1.18's, checked by hand).
pub const DATABASE_KILLED: &str = "database removed";
/// Closed to make room for another pool (max_db_connections,
/// max_user_connections).
pub const EVICTED: &str = "evicted";
pub const LIFETIME_OVER: &str = "server lifetime over";
pub const IDLE_TIMEOUT: &str = "server idle timeout";
/// An idle server had something to say (an error, a notice, or its end).
pub const GOT_DIRTY: &str = "idle server got dirty";
/// Its client left, or broke the protocol, in the middle of something.
pub const UNCLEAN: &str = "unclean server";
/// Its client left after pipelining past a COPY FROM STDIN in a way that
/// left the relay unsure which of its Syncs were answered
/// (`client::copy_in`). PgBouncer's words first, for the same greps.
pub const OUT_OF_STEP: &str = "unclean server (out of step after a pipelined COPY)";
/// The server ended the connection on its own.
pub const CRASHED: &str = "server conn crashed?";
/// An unused auto-database (`*`) is forgotten, its pools with it.
pub const AUTODB_IDLE: &str = "autodb_idle_timeout";
pub const CHECK_FAILED: &str = "server check query failed";
pub const RESET_FAILED: &str = "server_reset_query failed";
