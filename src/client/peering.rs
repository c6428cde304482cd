//! Peering (`peer_id` and `[peers]`): several pgsluice processes sharing one
//! port (`so_reuseport`) each hand out cancel keys that name the process, so
//! that a cancel request the kernel gives to the wrong process is passed on to
//! the one whose client it is.
//!
//! With peering on, a key's process id is laid out as: bit 31 clear (positive,
//! like PostgreSQL's), bit 30 set only on a request one peer passed to another,
//! bits 14 to 29 random, bits 0 to 13 the peer id (at most 16383). The secret
//! is random. A request is passed on at most once, so peers that disagree
//! about who is who cannot bounce it between them.

use std::time::Duration;

use crate::config::PeerDef;
use crate::server::dns::{DnsCache, DnsTtl};
use crate::server::ServerAddress;

const PEER_ID_BITS: u32 = 14;
const PEER_ID_MASK: i32 = (1 << PEER_ID_BITS) - 1;
const PASSED_ON: i32 = 1 << 30;

/// A process id for a new client's cancel key from random bits: `peer_id`
/// in the low bits when peering is on, and always positive.
pub fn key_pid(random: i32, peer_id: u32) -> i32 {
    if peer_id == 0 {
        return random & 0x7fff_ffff;
    }
    (random & 0x3fff_ffff & !PEER_ID_MASK) | (peer_id as i32 & PEER_ID_MASK)
}

/// Where a cancel request goes, for a process whose peer id is `own`.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// One of this process's clients (or peering is off): look up this pid.
    Here(i32),
    /// Another peer's client: pass it on to that peer.
    Peer(u32),
    /// Passed on to this process by a peer, but not for it: dropped.
    Misrouted(u32),
}

pub fn route(pid: i32, own: u32) -> Route {
    if own == 0 {
        return Route::Here(pid);
    }
    let owner = (pid & PEER_ID_MASK) as u32;
    match (owner == own, pid & PASSED_ON != 0) {
        (true, _) => Route::Here(pid & !PASSED_ON),
        (false, false) => Route::Peer(owner),
        (false, true) => Route::Misrouted(owner),
    }
}

/// Pass a cancel request for `(pid, secret)` on to `peer`, marked as passed
/// on, and wait until the peer has dealt with it, for at most `wait_timeout`
/// (zero: no limit). A peer's host name comes from the DNS cache.
pub async fn pass_on(
    peer: &PeerDef,
    (pid, secret): (i32, i32),
    wait_timeout: Duration,
    dns: (&DnsCache, DnsTtl),
) -> std::io::Result<()> {
    let address = ServerAddress::from_host(Some(&peer.host), peer.port)
        .into_iter()
        .next()
        .ok_or_else(|| std::io::Error::other("the peer has no host"))?;
    let connected = |_: &crate::net::Stream| ();
    super::cancel::send_request(
        &address,
        (pid | PASSED_ON, secret),
        wait_timeout,
        Some(dns),
        connected,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_peer_and_stay_positive() {
        for random in [0, -1, i32::MAX, i32::MIN, 0x1234_5678] {
            let pid = key_pid(random, 16383);
            assert!(pid >= 0, "{random:#x}");
            assert_eq!(pid & PASSED_ON, 0, "{random:#x}");
            assert_eq!(route(pid, 16383), Route::Here(pid));
            assert_eq!(route(pid, 7), Route::Peer(16383));
            assert!(key_pid(random, 0) >= 0);
        }
        // Peering off: every key is looked up here, whatever its bits.
        assert_eq!(route(key_pid(-1, 3), 0), Route::Here(key_pid(-1, 3)));
    }

    #[test]
    fn a_request_is_passed_on_once() {
        let pid = key_pid(0x2bcd_ef01, 2);
        let passed = pid | PASSED_ON;
        // The owner takes it, without the mark.
        assert_eq!(route(passed, 2), Route::Here(pid));
        // Anyone else drops it instead of passing it on again.
        assert_eq!(route(passed, 1), Route::Misrouted(2));
    }
}
