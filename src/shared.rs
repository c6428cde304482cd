//! The state every task shares: the configuration in force, the auth file's
//! secrets, the pools and the cancel keys. Passed around as `Arc<Shared>`; nothing
//! here is a global.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Secret;
use crate::client::cancel::CancelRegistry;
use crate::config::Config;
use crate::pool::Registry;

pub struct Shared {
    /// The configuration in force; replaced whole by a reload.
    pub config: ArcSwap<Config>,
    /// The auth file's users and secrets; replaced whole by a reload.
    pub secrets: ArcSwap<HashMap<String, Secret>>,
    pub pools: Registry,
    pub cancels: CancelRegistry,
    /// Connected clients (for max_client_conn).
    pub clients: AtomicUsize,
    next_client_id: AtomicU64,
}

impl Shared {
    pub fn new(config: Config, secrets: HashMap<String, Secret>) -> Arc<Shared> {
        Arc::new(Shared {
            config: ArcSwap::from_pointee(config),
            secrets: ArcSwap::from_pointee(secrets),
            pools: Registry::new(),
            cancels: CancelRegistry::default(),
            clients: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
        })
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }
}
