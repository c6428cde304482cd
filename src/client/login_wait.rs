//! A login's wait for a server (the first client of a pool, and auth_query's
//! lookup), bounded by client_login_timeout rather than a deadline of its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::login::{server_refusal, Refusal};
use crate::pool::Pool;
use crate::server::ServerConn;

/// The pool a login waits on for a server, if any. Such a wait has no
/// deadline of its own: client_login_timeout bounds the whole login, and when
/// it strikes while the server cannot be reached, the client is told
/// "client_login_timeout (server down)", as PgBouncer tells it.
#[derive(Default)]
pub(super) struct LoginWait(Mutex<Option<Arc<Pool>>>);

impl LoginWait {
    /// A server of `pool`, however long it takes.
    pub(super) async fn server(&self, pool: &Arc<Pool>) -> Result<Box<ServerConn>, Refusal> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(pool.clone());
        pool.acquire(Duration::ZERO, None)
            .await
            .map_err(server_refusal)
    }

    pub(super) fn on_unreachable_server(&self) -> bool {
        let pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        pool.as_ref().is_some_and(|p| p.server_down())
    }
}
