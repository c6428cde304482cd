//! A login's hold on the pooler's shared records: its place among the
//! clients, counted against the per-database and per-user client limits, and
//! its cancel key.

use std::sync::Arc;

use super::login::Refusal;
use crate::control::conn_info::{ConnInfo, CountLimit};
use crate::protocol::error::sqlstate;
use crate::shared::Shared;

/// A login's place among the clients (SHOW CLIENTS, and the count against
/// max_db_client_connections and max_user_client_connections) and its cancel
/// key, both taken before the welcome is sent. A login that ends before its
/// session starts gives them back here; a session gives them back itself
/// when it ends.
pub struct Admission {
    shared: Arc<Shared>,
    client_id: Option<u64>,
    cancel_key: Option<(i32, i32)>,
}

impl Admission {
    /// Register the client within the limits (0: none), or refuse it with
    /// PgBouncer's words.
    pub(super) fn take(
        shared: &Arc<Shared>,
        info: Arc<ConnInfo>,
        db_limit: u32,
        user_limit: u32,
    ) -> Result<Admission, Option<Refusal>> {
        let id = info.id;
        let which = match shared
            .clients
            .insert_within(info, db_limit as usize, user_limit as usize)
        {
            Ok(()) => {
                return Ok(Admission {
                    shared: shared.clone(),
                    client_id: Some(id),
                    cancel_key: None,
                })
            }
            Err(CountLimit::Database) => "max_db_client_connections",
            Err(CountLimit::User) => "max_user_client_connections",
        };
        Err(Some(Refusal::new(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!("client connections exceeded ({which})"),
        )))
    }

    pub(super) fn with_cancel_key(mut self, key: (i32, i32)) -> Admission {
        self.cancel_key = Some(key);
        self
    }

    /// The session takes both over.
    pub fn hand_over(mut self) {
        self.cancel_key = None;
        self.client_id = None;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(key) = self.cancel_key {
            self.shared.cancels.unregister(key);
        }
        if let Some(id) = self.client_id {
            self.shared.clients.remove(id);
        }
    }
}
