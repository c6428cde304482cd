//! `dns_zone_check_period`: every so often, ask for the SOA serial of each zone
//! a kept host name is in. When a serial grows, the zone's names are looked up
//! again at once (not when their dns_max_ttl runs out); servers at an address a
//! name lost are then replaced like after any new lookup (the janitor's
//! `retire_moved`). PgBouncer's c-ares build does the same.

use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::resolver::zone_serial;
use crate::shared::Shared;

/// How often a switched-off check looks whether a reload switched it on.
const IDLE_LOOK: Duration = Duration::from_secs(1);

pub async fn run(shared: Arc<Shared>) {
    let mut failing = HashSet::new();
    loop {
        let period = shared.config.load().general.dns_zone_check_period;
        if period.is_zero() {
            tokio::time::sleep(IDLE_LOOK).await;
            continue;
        }
        tokio::time::sleep(period).await;
        if !shared.config.load().general.dns_zone_check_period.is_zero() {
            check(&shared, &mut failing).await;
        }
    }
}

/// One check of every zone. A zone whose serial cannot be had is warned
/// about once until it can again (`failing`), not at every check.
async fn check(shared: &Shared, failing: &mut HashSet<String>) {
    let client = shared.dns.resolver().soa_client();
    for zone in shared.dns.zone_names() {
        let asked = match &client {
            Ok(client) => zone_serial(client, &zone).await,
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let serial = match asked {
            Ok(serial) => {
                failing.remove(&zone);
                serial
            }
            Err(e) => {
                if failing.insert(zone.clone()) {
                    log::warn!("zone '{zone}' not checked: {e}");
                } else {
                    log::debug!("zone '{zone}' not checked: {e}");
                }
                continue;
            }
        };
        let Some(old) = shared.dns.note_serial(&zone, serial) else {
            log::debug!("zone '{zone}' unchanged: serial={serial}");
            continue;
        };
        log::info!("zone '{zone}' serial changed: old={old} new={serial}");
        shared.dns.look_up_zone_again(&zone).await;
    }
}
