//! Periodic upkeep of all pools: retire idle servers past server_lifetime or
//! server_idle_timeout (or opened for an old target), and open servers up to
//! min_pool_size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Pool, Registry};

/// How often the janitor looks; timeouts are honoured to within this.
pub const PERIOD: Duration = Duration::from_millis(500);

pub async fn run(shared: Arc<crate::shared::Shared>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep(&shared.pools);
    }
}

/// One pass over every pool.
pub fn sweep(registry: &Registry) {
    let now = Instant::now();
    for pool in registry.all() {
        for server in pool.take_expired(now) {
            log::debug!("{server:?}: closing idle server (lifetime or idle timeout)");
            server.close();
        }
        for _ in 0..pool.missing_for_min() {
            tokio::spawn(prewarm(pool.clone()));
        }
    }
}

/// Open one server for min_pool_size and put it in the idle list.
async fn prewarm(pool: Arc<Pool>) {
    let slot = {
        let mut st = pool.lock();
        pool.try_slot(&mut st, false)
    };
    let Ok(slot) = slot else { return };
    if let Ok(server) = pool.open(slot).await {
        pool.release(server);
    }
}
