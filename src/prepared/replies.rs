//! The answers a client is owed, in the order it sent its messages, and which
//! of them the server gives, the pooler makes up, or the pooler holds back.
//!
//! The server answers each extended-protocol message with one message that
//! ends its answer (ParseComplete, BindComplete, …), or with an ErrorResponse,
//! after which it ignores everything up to the next Sync. Messages the pooler
//! answers itself must be answered at their place in that sequence, and what
//! the pooler asked of the server on its own is not the client's to see.
//!
//! Almost every message is the client's own, answered by the server: those
//! are only numbered, and counted off as their answers end. Only the sync
//! points (where skipping after an error stops) and the few messages the
//! pooler answers, holds back or may have to undo are listed. That keeps the
//! cost for a client that prepares nothing to a few additions per message.

use std::collections::VecDeque;
use std::sync::Arc;

use super::messages::put_empty;
use super::{ServerStatements, Statement};
use crate::protocol::tag;

/// A client message that gets an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Parse,
    Bind,
    Describe,
    Execute,
    Close,
    /// Sync: ReadyForQuery ends it, and it ends skipping after an error.
    Sync,
    /// Query or FunctionCall: ReadyForQuery ends it.
    Simple,
}

impl Request {
    /// The request a client message is, if it is answered.
    pub fn of(t: u8) -> Option<Request> {
        Some(match t {
            tag::PARSE => Request::Parse,
            tag::BIND => Request::Bind,
            tag::DESCRIBE => Request::Describe,
            tag::EXECUTE => Request::Execute,
            tag::CLOSE => Request::Close,
            tag::SYNC => Request::Sync,
            tag::QUERY | tag::FUNCTION_CALL => Request::Simple,
            _ => return None,
        })
    }
}

/// Whether the server message `t` may end an answer or start skipping: the
/// only ones `Replies::on_server_message` needs to see.
#[inline]
pub fn may_answer(t: u8) -> bool {
    ends_extended(t) || t == tag::ERROR_RESPONSE || t == tag::READY_FOR_QUERY
}

/// Whether the server message `t` ends the answer to an extended-protocol
/// request: ParseComplete, BindComplete, CloseComplete, RowDescription or
/// NoData (Describe), CommandComplete, EmptyQueryResponse or PortalSuspended
/// (Execute). None of them ends a different request, so counting them is
/// enough to know which request is being answered.
fn ends_extended(t: u8) -> bool {
    matches!(
        t,
        b'1' | b'2'
            | b'3'
            | b'n'
            | b's'
            | tag::ROW_DESCRIPTION
            | tag::COMMAND_COMPLETE
            | tag::EMPTY_QUERY_RESPONSE
    )
}

/// Who answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The server answers the client's message.
    Server,
    /// The pooler answers in the server's place (the message was not sent).
    Pooler,
    /// The server answers a message the pooler sent on its own: the answer is
    /// held back (an error still reaches the client).
    Withheld,
}

/// What to put right if the message ends up without effect: it failed, or the
/// server skipped it after an earlier error.
#[derive(Debug)]
pub enum Undo {
    Nothing,
    /// A Parse meant to prepare this statement on the server.
    Unprepare(Arc<Statement>),
    /// The client's Parse of `name`; `prepared` when it also prepared the
    /// statement on the server.
    Unparse {
        name: Box<[u8]>,
        statement: Arc<Statement>,
        prepared: bool,
    },
    /// A Close that evicted this statement from the server.
    Unevict(Arc<Statement>),
    /// The client's Close of `name`, answered by the pooler.
    Unclose {
        name: Box<[u8]>,
        statement: Arc<Statement>,
    },
}

/// A request that is not simply the client's, answered by the server.
#[derive(Debug)]
struct Special {
    /// Its number among the answered requests sent.
    seq: u64,
    request: Request,
    answer: Answer,
    undo: Undo,
}

/// The answers a client is owed on its current server.
#[derive(Debug, Default)]
pub struct Replies {
    /// Requests sent, numbered from 1.
    sent: u64,
    /// Requests answered (or skipped after an error), in order.
    answered: u64,
    /// Sync points not answered yet: number, and whether a simple query.
    syncs: VecDeque<(u64, bool)>,
    /// The requests the pooler answers, holds back, or may undo.
    special: VecDeque<Special>,
    /// An error came with no Sync sent after it yet: the server skips
    /// whatever comes before that Sync, so nothing is answered until its
    /// ReadyForQuery.
    skipping: bool,
}

impl Replies {
    /// A request forwarded as the client sent it, and answered by the server.
    #[inline]
    pub fn forwarded(&mut self, request: Request) {
        self.sent += 1;
        match request {
            Request::Sync => self.syncs.push_back((self.sent, false)),
            Request::Simple => self.syncs.push_back((self.sent, true)),
            _ => {}
        }
    }

    /// A request the pooler answers or holds back, or may have to undo
    /// (others are `forwarded`).
    pub fn push(&mut self, request: Request, answer: Answer, undo: Undo) {
        self.sent += 1;
        self.special.push_back(Special {
            seq: self.sent,
            request,
            answer,
            undo,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.answered == self.sent && self.special.is_empty()
    }

    /// The server is gone or given back: nothing more will be answered.
    pub fn clear(&mut self) {
        self.sent = 0;
        self.answered = 0;
        self.skipping = false;
        self.syncs.clear();
        self.special.clear();
    }

    /// The request being answered started COPY FROM STDIN: up to `count`
    /// Syncs sent right behind it will get no answer, as if never sent.
    pub fn drop_syncs_after_front(&mut self, count: u32) {
        for _ in 0..count {
            let Some(&(seq, false)) = self.syncs.front() else {
                return;
            };
            if seq != self.answered + 2 {
                return;
            }
            self.syncs.pop_front();
            for later in &mut self.syncs {
                later.0 -= 1;
            }
            for later in &mut self.special {
                later.seq -= 1;
            }
            self.sent -= 1;
        }
    }

    /// `take_due` into a new buffer, if anything is due.
    #[inline]
    pub fn due(&mut self) -> Option<Vec<u8>> {
        if self.special.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        self.take_due(&mut out);
        (!out.is_empty()).then_some(out)
    }

    /// The pooler's answers now due: every answer before them has been sent.
    pub fn take_due(&mut self, out: &mut Vec<u8>) {
        while !self.skipping
            && self
                .special
                .front()
                .is_some_and(|e| e.seq == self.answered + 1 && e.answer == Answer::Pooler)
        {
            let e = self.special.pop_front().expect("checked");
            self.answered += 1;
            put_empty(
                out,
                if e.request == Request::Close {
                    b'3'
                } else {
                    b'1'
                },
            );
        }
    }

    /// The server sent a whole message `t`: whether to hold it back from the
    /// client. `server` and `client` are what undoing a message without
    /// effect corrects. The caller sends what is due before the next
    /// message and after this one (`due`).
    #[inline]
    pub fn on_server_message(
        &mut self,
        t: u8,
        server: &mut ServerStatements,
        client: &mut super::ClientStatements,
    ) -> bool {
        let plain =
            self.special.is_empty() && t != tag::READY_FOR_QUERY && t != tag::ERROR_RESPONSE;
        if plain && self.answered < self.sent && ends_extended(t) {
            // Only the client's own requests are listed: count it off.
            let next = self.answered + 1;
            if self.syncs.front().is_none_or(|&(seq, _)| seq != next) {
                self.answered = next;
            }
            return false;
        }
        self.on_server_message_listed(t, server, client)
    }

    /// `on_server_message` for ReadyForQuery, errors, and answers that may
    /// be to a listed request.
    fn on_server_message_listed(
        &mut self,
        t: u8,
        server: &mut ServerStatements,
        client: &mut super::ClientStatements,
    ) -> bool {
        if self.answered == self.sent {
            // Nothing asked: a notice, a notification, a parameter.
            return false;
        }
        let next = self.answered + 1;
        let at_sync_point = self.syncs.front().is_some_and(|&(seq, _)| seq == next);
        match t {
            tag::READY_FOR_QUERY => {
                let Some((seq, _)) = self.syncs.pop_front() else {
                    return false;
                };
                // Anything still listed before it was never answered.
                self.skip_through(seq - 1, server, client);
                self.answered = seq;
                self.skipping = false;
            }
            // A Sync's or simple query's error still ends with ReadyForQuery.
            tag::ERROR_RESPONSE if !at_sync_point => {
                // The failed request, and what the server skips after it.
                let until = self.syncs.front().map_or(self.sent, |&(seq, _)| seq - 1);
                self.skip_through(until, server, client);
                // What the client sends before its Sync is skipped too.
                self.skipping = self.syncs.is_empty();
            }
            _ if ends_extended(t) && !at_sync_point => {
                self.answered = next;
                if self.special.front().is_some_and(|e| e.seq == next) {
                    let answered = self.special.pop_front().expect("checked");
                    return answered.answer == Answer::Withheld;
                }
            }
            _ => {}
        }
        false
    }

    /// Requests up to number `until` had no effect: undo those listed.
    fn skip_through(
        &mut self,
        until: u64,
        server: &mut ServerStatements,
        client: &mut super::ClientStatements,
    ) {
        while self.special.front().is_some_and(|e| e.seq <= until) {
            let skipped = self.special.pop_front().expect("checked");
            undo(skipped.undo, server, client);
        }
        self.answered = self.answered.max(until);
    }
}

fn undo(undo: Undo, server: &mut ServerStatements, client: &mut super::ClientStatements) {
    match undo {
        Undo::Nothing => {}
        Undo::Unprepare(statement) => server.remove(&statement),
        Undo::Unparse {
            name,
            statement,
            prepared,
        } => {
            client.forget_if(&name, &statement);
            if prepared {
                server.remove(&statement);
            }
        }
        Undo::Unevict(statement) => server.add(statement),
        Undo::Unclose { name, statement } => client.restore(name, statement),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::Registry;

    const PARSE_COMPLETE: [u8; 5] = [b'1', 0, 0, 0, 4];

    fn setup() -> (Replies, ServerStatements, super::super::ClientStatements) {
        Default::default()
    }

    /// Feed server messages; what was held back, as a string of 0/1.
    fn feed(
        r: &mut Replies,
        s: &mut ServerStatements,
        c: &mut super::super::ClientStatements,
        tags: &[u8],
    ) -> String {
        tags.iter()
            .map(|&t| {
                if r.on_server_message(t, s, c) {
                    '1'
                } else {
                    '0'
                }
            })
            .collect()
    }

    #[test]
    fn made_answers_wait_for_the_answers_before_them() {
        let (mut r, mut s, mut c) = setup();
        r.forwarded(Request::Bind);
        r.forwarded(Request::Execute);
        r.push(Request::Parse, Answer::Pooler, Undo::Nothing);
        r.forwarded(Request::Sync);
        assert!(
            r.due().is_none(),
            "a ParseComplete before the Execute's answer"
        );
        // BindComplete, a DataRow, a notice: the Execute has not ended.
        assert_eq!(feed(&mut r, &mut s, &mut c, b"2DN"), "000");
        assert!(r.due().is_none());
        assert_eq!(feed(&mut r, &mut s, &mut c, b"C"), "0");
        assert_eq!(r.due().unwrap(), PARSE_COMPLETE);
        feed(&mut r, &mut s, &mut c, b"Z");
        assert!(r.is_empty());
    }

    #[test]
    fn answers_to_the_poolers_own_messages_are_withheld() {
        let (mut r, mut s, mut c) = setup();
        r.push(Request::Close, Answer::Withheld, Undo::Nothing);
        r.push(Request::Parse, Answer::Withheld, Undo::Nothing);
        r.forwarded(Request::Bind);
        // Notices and parameter changes between answers are the client's.
        assert_eq!(feed(&mut r, &mut s, &mut c, b"3N1S2"), "10100");
    }

    #[test]
    fn a_simple_querys_own_results_end_nothing_but_itself() {
        let (mut r, mut s, mut c) = setup();
        r.forwarded(Request::Simple);
        r.push(Request::Close, Answer::Pooler, Undo::Nothing);
        r.forwarded(Request::Sync);
        // Two statements in one Query: RowDescription, rows, CommandComplete.
        feed(&mut r, &mut s, &mut c, b"TDCTDC");
        assert!(
            r.due().is_none(),
            "the CloseComplete came before the query's end"
        );
        feed(&mut r, &mut s, &mut c, b"Z");
        assert_eq!(r.due().unwrap(), [b'3', 0, 0, 0, 4]);
    }

    #[test]
    fn an_error_undoes_the_failed_message_and_all_skipped_up_to_sync() {
        let registry = Registry::default();
        let (mut r, mut s, mut c) = setup();
        let [old, new, other] =
            [&b"old\0\0\0"[..], b"new\0\0\0", b"other\0\0\0"].map(|q| registry.statement(q));
        s.add(other.clone());
        // The client's Parse of s_new (prepared on the server), an eviction
        // Close of `old`, the client's Close of s_other (answered by the
        // pooler), then Sync, then a Bind after it.
        c.restore(b"s_new".as_slice().into(), new.clone());
        s.add(new.clone());
        r.push(
            Request::Parse,
            Answer::Server,
            Undo::Unparse {
                name: b"s_new".as_slice().into(),
                statement: new.clone(),
                prepared: true,
            },
        );
        r.push(Request::Close, Answer::Withheld, Undo::Unevict(old.clone()));
        r.push(
            Request::Close,
            Answer::Pooler,
            Undo::Unclose {
                name: b"s_other".as_slice().into(),
                statement: other.clone(),
            },
        );
        r.forwarded(Request::Sync);
        r.forwarded(Request::Bind);
        assert_eq!(
            feed(&mut r, &mut s, &mut c, b"E"),
            "0",
            "the error is the client's"
        );
        assert!(r.due().is_none(), "nothing is made up for skipped messages");
        assert!(!s.touch(&new), "the failed Parse left its statement listed");
        assert!(
            c.get(b"s_new").is_none(),
            "the failed Parse left the client's name"
        );
        assert!(
            s.touch(&old),
            "the skipped eviction took the statement off the list"
        );
        assert!(
            c.get(b"s_other").is_some(),
            "the skipped Close forgot the client's name"
        );
        assert_eq!(feed(&mut r, &mut s, &mut c, b"Z2"), "00");
        assert!(r.is_empty());
    }

    #[test]
    fn after_an_error_nothing_is_answered_until_the_clients_sync() {
        let (mut r, mut s, mut c) = setup();
        r.forwarded(Request::Bind);
        r.forwarded(Request::Execute);
        // The error arrives before the client has sent its Sync; then the
        // client sends a Close (skipped by the server) and the Sync.
        feed(&mut r, &mut s, &mut c, b"E");
        r.push(Request::Close, Answer::Pooler, Undo::Nothing);
        assert!(r.due().is_none(), "a CloseComplete for a skipped Close");
        r.forwarded(Request::Sync);
        r.push(Request::Close, Answer::Pooler, Undo::Nothing);
        assert!(r.due().is_none());
        feed(&mut r, &mut s, &mut c, b"Z");
        // Only the Close after the Sync is answered.
        assert_eq!(r.due().unwrap(), [b'3', 0, 0, 0, 4]);
        assert!(r.is_empty());
    }

    #[test]
    fn syncs_read_during_copy_in_are_not_answered() {
        let (mut r, mut s, mut c) = setup();
        r.forwarded(Request::Execute);
        r.forwarded(Request::Sync);
        r.push(Request::Close, Answer::Pooler, Undo::Nothing);
        r.forwarded(Request::Sync);
        // CopyInResponse: the Sync behind the Execute goes unanswered.
        r.drop_syncs_after_front(1);
        feed(&mut r, &mut s, &mut c, b"GC");
        assert_eq!(
            r.due().unwrap(),
            [b'3', 0, 0, 0, 4],
            "right after the COPY's end"
        );
        feed(&mut r, &mut s, &mut c, b"Z");
        assert!(r.is_empty());
    }

    #[test]
    fn an_error_in_a_simple_query_or_at_sync_ends_at_ready_for_query() {
        let (mut r, mut s, mut c) = setup();
        r.forwarded(Request::Simple);
        r.push(Request::Parse, Answer::Pooler, Undo::Nothing);
        r.forwarded(Request::Sync);
        feed(&mut r, &mut s, &mut c, b"E");
        assert!(r.due().is_none());
        feed(&mut r, &mut s, &mut c, b"Z");
        assert_eq!(r.due().unwrap(), PARSE_COMPLETE, "after the query's answer");
        // An error at Sync (a failing COMMIT) ends with its ReadyForQuery.
        feed(&mut r, &mut s, &mut c, b"EZ");
        assert!(r.is_empty());
    }
}
