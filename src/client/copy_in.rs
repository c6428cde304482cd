//! COPY FROM STDIN as the relay sees it: which of the client's Syncs the
//! server will ignore, so that the relay's count of unanswered sync points
//! stays exact.
//!
//! While PostgreSQL copies it reads CopyData, ignores Sync and Flush, and
//! leaves the COPY at CopyDone or CopyFail (any other message ends the
//! connection). A Sync it ignores gets no ReadyForQuery: counted as outstanding, it
//! would keep the server from ever looking idle; counted as answered when it
//! was not ignored, it would let the server go back to the pool with an answer
//! still on its way, to be read by the next client. The second is the one that
//! must never happen, so wherever the relay cannot tell, it says so
//! (`Began::OutOfStep`, `AfterError::OutOfStep`) and the server stays with
//! this client until it leaves, and is closed then.
//!
//! The client does not have to wait for the server's CopyInResponse: libpq and
//! tokio-postgres send a Sync behind an Execute before they know it starts a
//! COPY, and pgx sends a simple COPY's data (and its end) right behind the
//! Query. So what the client sent since its last Query or Execute, the
//! requests that can start a COPY, is kept until the CopyInResponse shows
//! which of it the server read in COPY mode.

use crate::protocol::tag;

/// How a client message counts, given the COPY.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// As usual.
    Counted,
    /// A Sync the server is copying through: it will get no answer.
    Ignored,
}

/// What a CopyInResponse means for the count of unanswered sync points.
#[derive(Debug, PartialEq, Eq)]
pub enum Began {
    /// The COPY started with the client's last request. `ignored` of the Syncs
    /// sent behind it will get no answer; `unsynced`: it was an Execute and no
    /// Sync the server will read follows the COPY yet, so the server waits for
    /// one before it ends the query.
    InStep { ignored: u32, unsynced: bool },
    /// The COPY did not start with the client's last request (or the count
    /// of unanswered sync points no longer adds up): what the server will
    /// ignore cannot be known.
    OutOfStep,
}

/// What an ErrorResponse from the server means for the COPY.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterError {
    InStep,
    /// The error may have ended the COPY before the server read Syncs the
    /// relay took for ignored: they may get answers after all.
    OutOfStep,
}

/// The COPY FROM STDIN bookkeeping of one transaction's relay.
///
/// The counts are bytes to keep a transaction's state small (see
/// `session::tests::a_round_fits_mallocs_thread_cache`): they count what
/// the client sent since one request, a handful in practice. One that
/// saturates can only put the relay out of step or make it count a Sync as
/// answered later than it is, never sooner.
#[derive(Debug, Default)]
pub struct CopyIn {
    /// The server is copying (its CopyInResponse came) and the client has not
    /// sent what ends the COPY.
    active: bool,
    /// The client sent a Sync while `active`, since the COPY began.
    synced_while_active: bool,
    /// Since the client's last Query or Execute.
    since: SinceRequest,
}

/// What the client sent since its last Query or Execute.
#[derive(Debug, Default)]
struct SinceRequest {
    /// That request was a simple Query (its own sync point), not an Execute.
    query: bool,
    /// Sync points sent since, the Query itself included.
    sync_points: u8,
    /// Syncs sent before a CopyDone or CopyFail: the server ignores them if
    /// the request starts a COPY.
    syncs_before_end: u8,
    /// CopyDones and CopyFails sent while no COPY was known to run. A Query
    /// can start more than one COPY, and each takes one of these.
    copy_ends: u8,
}

impl CopyIn {
    /// The server is copying and waits for the client's data.
    pub fn active(&self) -> bool {
        self.active
    }

    /// The client sent a message of type `t` (not Terminate).
    #[inline(always)]
    pub fn client_sent(&mut self, t: u8) -> Sent {
        if self.active {
            match t {
                tag::SYNC => {
                    self.synced_while_active = true;
                    return Sent::Ignored;
                }
                tag::COPY_DONE | tag::COPY_FAIL => self.active = false,
                // CopyData and Flush. At any other message PostgreSQL ends
                // the connection ("protocol synchronization was lost").
                _ => {}
            }
            return Sent::Counted;
        }
        self.note(t);
        Sent::Counted
    }

    /// Record `t` in what was sent since the last request.
    #[inline(always)]
    fn note(&mut self, t: u8) {
        let since = &mut self.since;
        match t {
            tag::QUERY => {
                *since = SinceRequest {
                    query: true,
                    sync_points: 1,
                    ..SinceRequest::default()
                }
            }
            tag::EXECUTE => *since = SinceRequest::default(),
            tag::SYNC => {
                since.sync_points = since.sync_points.saturating_add(1);
                if since.copy_ends == 0 {
                    since.syncs_before_end = since.syncs_before_end.saturating_add(1);
                }
            }
            tag::FUNCTION_CALL => since.sync_points = since.sync_points.saturating_add(1),
            tag::COPY_DONE | tag::COPY_FAIL => since.copy_ends = since.copy_ends.saturating_add(1),
            _ => {}
        }
    }

    /// The server sent CopyInResponse while `outstanding` sync points had no
    /// answer yet.
    pub fn began(&mut self, outstanding: u32) -> Began {
        let since = &mut self.since;
        // The server answers in order: it is working on the client's last
        // request only if every sync point before that one has its answer.
        if outstanding != u32::from(since.sync_points) {
            return Began::OutOfStep;
        }
        let ignored = std::mem::take(&mut since.syncs_before_end);
        since.sync_points -= ignored;
        self.synced_while_active = false;
        if since.copy_ends > 0 {
            // The client already sent what ends this COPY.
            since.copy_ends -= 1;
        } else {
            self.active = true;
        }
        Began::InStep {
            ignored: u32::from(ignored),
            unsynced: !since.query && since.sync_points == 0,
        }
    }

    /// The server sent ErrorResponse. During a COPY it ends the COPY, and any
    /// Sync the client sent meanwhile may have been read after it.
    pub fn server_error(&mut self) -> AfterError {
        self.active = false;
        if std::mem::take(&mut self.synced_while_active) {
            AfterError::OutOfStep
        } else {
            AfterError::InStep
        }
    }

    /// The server sent ReadyForQuery: no COPY runs, and the Syncs ignored
    /// during the last one were truly ignored.
    pub fn ready_for_query(&mut self) {
        self.active = false;
        self.synced_while_active = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `messages` and count the sync points that expect an answer, as
    /// the relay does.
    fn send(copy: &mut CopyIn, messages: &[u8], outstanding: &mut u32) {
        for &t in messages {
            let counted = copy.client_sent(t) == Sent::Counted;
            if counted && matches!(t, tag::QUERY | tag::SYNC | tag::FUNCTION_CALL) {
                *outstanding += 1;
            }
        }
    }

    const EXTENDED_COPY: &[u8] = &[tag::PARSE, tag::BIND, tag::EXECUTE, tag::SYNC];

    #[test]
    fn the_sync_behind_an_execute_is_ignored_and_a_later_one_is_needed() {
        let mut copy = CopyIn::default();
        let mut outstanding = 0;
        send(&mut copy, EXTENDED_COPY, &mut outstanding);
        let began = copy.began(outstanding);
        assert_eq!(
            began,
            Began::InStep {
                ignored: 1,
                unsynced: true
            }
        );
        assert!(copy.active());
        outstanding -= 1;
        // Syncs while copying get no answer; CopyDone ends the COPY.
        send(
            &mut copy,
            &[tag::COPY_DATA, tag::SYNC, tag::FLUSH],
            &mut outstanding,
        );
        assert_eq!(outstanding, 0);
        send(&mut copy, &[tag::COPY_DONE, tag::SYNC], &mut outstanding);
        assert!(!copy.active());
        assert_eq!(outstanding, 1, "the Sync after CopyDone is answered");
    }

    #[test]
    fn a_simple_copy_sent_whole_before_the_server_asks_ends_with_the_query() {
        // pgx: Query, then the data and CopyDone without waiting.
        let mut copy = CopyIn::default();
        let mut outstanding = 0;
        send(
            &mut copy,
            &[tag::QUERY, tag::COPY_DATA, tag::COPY_DONE],
            &mut outstanding,
        );
        assert_eq!(
            copy.began(outstanding),
            Began::InStep {
                ignored: 0,
                unsynced: false
            }
        );
        assert!(!copy.active(), "the client already ended it");
        // So a later Sync counts.
        send(
            &mut copy,
            &[tag::PARSE, tag::BIND, tag::EXECUTE, tag::SYNC],
            &mut outstanding,
        );
        assert_eq!(outstanding, 2);
    }

    #[test]
    fn an_extended_copy_sent_whole_ignores_only_the_syncs_before_its_end() {
        let mut copy = CopyIn::default();
        let mut outstanding = 0;
        send(&mut copy, EXTENDED_COPY, &mut outstanding);
        send(
            &mut copy,
            &[tag::COPY_DATA, tag::COPY_DONE, tag::SYNC],
            &mut outstanding,
        );
        assert_eq!(outstanding, 2);
        assert_eq!(
            copy.began(outstanding),
            Began::InStep {
                ignored: 1,
                unsynced: false
            }
        );
        assert!(!copy.active());
    }

    #[test]
    fn a_copy_sent_whole_without_a_sync_after_it_leaves_the_server_unsynced() {
        let mut copy = CopyIn::default();
        let mut outstanding = 0;
        send(&mut copy, EXTENDED_COPY, &mut outstanding);
        send(
            &mut copy,
            &[tag::COPY_DATA, tag::COPY_DONE],
            &mut outstanding,
        );
        assert_eq!(
            copy.began(outstanding),
            Began::InStep {
                ignored: 1,
                unsynced: true
            }
        );
    }

    #[test]
    fn a_request_pipelined_behind_the_copys_own_puts_the_relay_out_of_step() {
        let mut copy = CopyIn::default();
        let mut outstanding = 0;
        send(&mut copy, EXTENDED_COPY, &mut outstanding);
        send(&mut copy, EXTENDED_COPY, &mut outstanding);
        assert_eq!(copy.began(outstanding), Began::OutOfStep);
        let mut copy = CopyIn::default();
        let mut outstanding = 0;
        send(&mut copy, &[tag::QUERY, tag::QUERY], &mut outstanding);
        assert_eq!(copy.began(outstanding), Began::OutOfStep);
    }

    #[test]
    fn each_copy_of_one_query_takes_one_of_the_ends_sent_ahead() {
        let mut copy = CopyIn::default();
        let mut outstanding = 0;
        let two_copies = [
            tag::QUERY,
            tag::COPY_DATA,
            tag::COPY_DONE,
            tag::COPY_DATA,
            tag::COPY_DONE,
        ];
        send(&mut copy, &two_copies, &mut outstanding);
        for _ in 0..2 {
            assert_eq!(
                copy.began(outstanding),
                Began::InStep {
                    ignored: 0,
                    unsynced: false
                }
            );
            assert!(!copy.active());
        }
        // A third COPY of the same query has not been ended.
        assert_eq!(
            copy.began(outstanding),
            Began::InStep {
                ignored: 0,
                unsynced: false
            }
        );
        assert!(copy.active());
    }

    #[test]
    fn a_server_error_after_syncs_taken_for_ignored_puts_the_relay_out_of_step() {
        let mut copy = CopyIn::default();
        let mut outstanding = 0;
        send(&mut copy, EXTENDED_COPY, &mut outstanding);
        copy.began(outstanding);
        send(&mut copy, &[tag::COPY_DATA, tag::SYNC], &mut outstanding);
        assert_eq!(copy.server_error(), AfterError::OutOfStep);
        assert!(!copy.active());

        // With no Sync sent meanwhile, the error only ends the COPY.
        let mut copy = CopyIn::default();
        let mut outstanding = 0;
        send(&mut copy, EXTENDED_COPY, &mut outstanding);
        copy.began(outstanding);
        send(&mut copy, &[tag::COPY_DATA], &mut outstanding);
        assert_eq!(copy.server_error(), AfterError::InStep);
        assert!(!copy.active());
        let before = outstanding;
        send(&mut copy, &[tag::SYNC], &mut outstanding);
        assert_eq!(
            outstanding,
            before + 1,
            "after the error the Sync is answered"
        );
    }

    #[test]
    fn syncs_ignored_during_a_copy_that_ended_are_not_held_against_later_errors() {
        let mut copy = CopyIn::default();
        let mut outstanding = 0;
        send(&mut copy, &[tag::QUERY], &mut outstanding);
        copy.began(outstanding);
        send(&mut copy, &[tag::SYNC, tag::COPY_DONE], &mut outstanding);
        copy.ready_for_query();
        assert_eq!(copy.server_error(), AfterError::InStep);
    }
}
