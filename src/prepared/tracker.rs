//! One client's prepared statements, and the rewriting of its messages that
//! name them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use super::messages::{put_bind_prefix, put_parse, put_statement_message, Inspected};
use super::replies::{Answer, Request, Undo};
use super::{Registry, Replies, ServerStatements, Statement};
use crate::protocol::tag;

/// The statements a client has prepared, by the names it gave them.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Box<[u8]>, Arc<Statement>>,
}

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.by_name.get(name)
    }

    /// Forget `name` if it still stands for `statement`.
    pub fn forget_if(&mut self, name: &[u8], statement: &Statement) {
        if self.by_name.get(name).is_some_and(|s| s.id == statement.id) {
            self.by_name.remove(name);
        }
    }

    pub fn restore(&mut self, name: Box<[u8]>, statement: Arc<Statement>) {
        self.by_name.insert(name, statement);
    }

    pub fn clear(&mut self) {
        self.by_name.clear();
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Everything statement tracking keeps for one client: its statements, the
/// answers it is owed, and a count for SHOW STATS.
pub struct Tracker {
    pub statements: ClientStatements,
    pub replies: Replies,
    /// Parses of tracked statements sent to servers (the client's, renamed,
    /// and the pooler's own) since the caller last took the count.
    pub server_parses: u64,
    /// max_prepared_statements, as of the current transaction.
    pub capacity: usize,
    registry: Arc<Registry>,
}

/// Trackers kept per thread for clients that prepare nothing: every
/// transaction needs one (its reply queue), and taking a spare is cheaper
/// than allocating one and its queue anew.
const SPARES_PER_THREAD: usize = 64;

thread_local! {
    // Boxes, not trackers: a session holds its tracker boxed (a pointer per
    // idle client), and moving the box in and out of here allocates nothing.
    #[allow(clippy::vec_box)]
    static SPARES: RefCell<Vec<Box<Tracker>>> = const { RefCell::new(Vec::new()) };
}

impl Tracker {
    /// A tracker with no statements: a spare of this thread's, or a new one.
    pub fn take(registry: &Arc<Registry>) -> Box<Tracker> {
        let spare = SPARES
            .try_with(|spares| spares.borrow_mut().pop())
            .ok()
            .flatten()
            .filter(|t| Arc::ptr_eq(&t.registry, registry));
        spare.unwrap_or_else(|| Box::new(Tracker::new(registry.clone())))
    }

    /// After a transaction: keep `tracker` if the client has statements
    /// prepared, else give it back for another client's next transaction.
    pub fn keep_or_give_back(mut tracker: Box<Tracker>) -> Option<Box<Tracker>> {
        if !tracker.statements.is_empty() {
            return Some(tracker);
        }
        tracker.replies.clear();
        tracker.server_parses = 0;
        let _ = SPARES.try_with(|spares| {
            let mut spares = spares.borrow_mut();
            if spares.len() < SPARES_PER_THREAD {
                spares.push(tracker);
            }
        });
        None
    }

    pub fn new(registry: Arc<Registry>) -> Tracker {
        Tracker {
            statements: ClientStatements::default(),
            replies: Replies::default(),
            server_parses: 0,
            capacity: 200,
            registry,
        }
    }

    /// A message forwarded as the client sent it.
    #[inline]
    pub fn forwarded(&mut self, t: u8) {
        if let Some(request) = Request::of(t) {
            self.replies.forwarded(request);
        }
    }

    /// Write in `out` what the server gets in place of `message`, which names
    /// a statement, and return how many of its bytes that replaces. `None`: the
    /// message is forwarded as it is (a Bind or Describe of a name the client
    /// never prepared, which the server then refuses as PostgreSQL would).
    pub fn rewrite(
        &mut self,
        message: &Inspected<'_>,
        server: &mut ServerStatements,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        match *message {
            Inspected::Parse { name, rest, len } => {
                self.parse(name, rest, server, out);
                Some(len)
            }
            Inspected::Bind {
                portal,
                name,
                prefix,
                rest,
            } => {
                let statement = self.on_server(name, server, out)?;
                put_bind_prefix(out, portal, &statement.name, rest);
                self.replies.forwarded(Request::Bind);
                Some(prefix)
            }
            Inspected::Describe { name, len } => {
                let statement = self.on_server(name, server, out)?;
                put_statement_message(out, tag::DESCRIBE, &statement.name);
                self.replies.forwarded(Request::Describe);
                Some(len)
            }
            Inspected::Close { name, len } => {
                // Only the client's name goes: other clients may use the
                // statement, and the server's copy stays until evicted.
                // Closing an unknown name is no error in PostgreSQL either.
                let undo = match self.statements.by_name.remove_entry(name) {
                    Some((name, statement)) => Undo::Unclose { name, statement },
                    None => Undo::Nothing,
                };
                self.replies.push(Request::Close, Answer::Pooler, undo);
                Some(len)
            }
            Inspected::More | Inspected::Plain => None,
        }
    }

    fn parse(
        &mut self,
        name: &[u8],
        rest: &[u8],
        server: &mut ServerStatements,
        out: &mut Vec<u8>,
    ) {
        if let Some(existing) = self.statements.get(name).cloned() {
            // PostgreSQL refuses a name in use (42P05). Let the server refuse
            // it, so that its error and the transaction's state are exactly
            // PostgreSQL's: ask it to prepare the existing statement's name again.
            self.ensure_on_server(&existing, server, out);
            put_parse(out, &existing.name, rest);
            self.server_parses += 1;
            self.replies.forwarded(Request::Parse);
            return;
        }
        let statement = self.registry.statement(rest);
        self.statements.restore(name.into(), statement.clone());
        let prepared = !server.touch(&statement);
        if prepared {
            self.make_room(server, out);
            put_parse(out, &statement.name, rest);
            self.server_parses += 1;
            server.add(statement.clone());
        }
        let answer = if prepared {
            Answer::Server
        } else {
            Answer::Pooler
        };
        let undo = Undo::Unparse {
            name: name.into(),
            statement,
            prepared,
        };
        self.replies.push(Request::Parse, answer, undo);
    }

    /// The client's statement `name`, prepared on the server first if need be.
    fn on_server(
        &mut self,
        name: &[u8],
        server: &mut ServerStatements,
        out: &mut Vec<u8>,
    ) -> Option<Arc<Statement>> {
        let statement = self.statements.get(name)?.clone();
        self.ensure_on_server(&statement, server, out);
        Some(statement)
    }

    fn ensure_on_server(
        &mut self,
        statement: &Arc<Statement>,
        server: &mut ServerStatements,
        out: &mut Vec<u8>,
    ) {
        if server.touch(statement) {
            return;
        }
        self.make_room(server, out);
        put_parse(out, &statement.name, &statement.body);
        self.server_parses += 1;
        server.add(statement.clone());
        self.replies.push(
            Request::Parse,
            Answer::Withheld,
            Undo::Unprepare(statement.clone()),
        );
    }

    /// Close the least recently used statements until one more fits.
    fn make_room(&mut self, server: &mut ServerStatements, out: &mut Vec<u8>) {
        while server.len() >= self.capacity.max(1) {
            let Some(oldest) = server.evict_oldest() else {
                return;
            };
            put_statement_message(out, tag::CLOSE, &oldest.name);
            self.replies
                .push(Request::Close, Answer::Withheld, Undo::Unevict(oldest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::inspect;

    use crate::protocol::test_message as msg;

    /// Rewrite one whole message: what replaces it, and how much it replaces.
    fn rewrite(
        tracker: &mut Tracker,
        server: &mut ServerStatements,
        m: &[u8],
    ) -> Option<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let inspected = inspect(m, 1 << 20).unwrap();
        tracker
            .rewrite(&inspected, server, &mut out)
            .map(|n| (out, n))
    }

    /// The types and names of the messages in `bytes`, e.g. `P:PGSLUICE_1`.
    fn summary(mut bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = i32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
            let body = &bytes[5..1 + len.min(bytes.len() - 1)];
            let name = match bytes[0] {
                b'P' => body.split(|&b| b == 0).next().unwrap(),
                b'B' => body.split(|&b| b == 0).nth(1).unwrap(),
                _ => body[1..].split(|&b| b == 0).next().unwrap(),
            };
            out.push(format!(
                "{}:{}",
                bytes[0] as char,
                String::from_utf8_lossy(name)
            ));
            bytes = &bytes[(1 + len).min(bytes.len())..];
        }
        out
    }

    /// Whether each of these server answers is held back.
    fn answer_all(
        tracker: &mut Tracker,
        server: &mut ServerStatements,
        answers: &[u8],
    ) -> Vec<bool> {
        answers
            .iter()
            .map(|&t| {
                tracker
                    .replies
                    .on_server_message(t, server, &mut tracker.statements)
            })
            .collect()
    }

    #[test]
    fn the_first_parse_of_a_statement_goes_to_the_server_under_its_pooler_name() {
        let registry = Arc::new(Registry::default());
        let (mut a, mut b) = (Tracker::new(registry.clone()), Tracker::new(registry));
        let mut server = ServerStatements::default();
        let parse = msg(b'P', b"s1\0SELECT 1\0\0\0");
        let (out, replaced) = rewrite(&mut a, &mut server, &parse).unwrap();
        assert_eq!(replaced, parse.len());
        let name = a.statements.get(b"s1").unwrap().name.clone();
        assert_eq!(summary(&out), [format!("P:{name}")]);
        assert_eq!(a.server_parses, 1);
        // Another client's Parse of the same query on this server: nothing is
        // sent, and the pooler answers.
        let (out, _) = rewrite(&mut b, &mut server, &msg(b'P', b"other\0SELECT 1\0\0\0")).unwrap();
        assert!(out.is_empty());
        assert_eq!(b.replies.due().unwrap(), [b'1', 0, 0, 0, 4]);
        assert_eq!(b.server_parses, 0);
        assert!(Arc::ptr_eq(
            a.statements.get(b"s1").unwrap(),
            b.statements.get(b"other").unwrap()
        ));
    }

    #[test]
    fn a_bind_on_a_server_without_the_statement_prepares_it_first() {
        let registry = Arc::new(Registry::default());
        let mut client = Tracker::new(registry);
        let (mut first, mut second) = (ServerStatements::default(), ServerStatements::default());
        rewrite(&mut client, &mut first, &msg(b'P', b"s1\0SELECT 1\0\0\0")).unwrap();
        let name = client.statements.get(b"s1").unwrap().name.clone();
        // The next transaction, on another server.
        client.replies.clear();
        let bind = msg(b'B', b"\0s1\0\0\0\0\0\0\0");
        let (out, replaced) = rewrite(&mut client, &mut second, &bind).unwrap();
        assert_eq!(replaced, 5 + 4, "header, portal and name");
        assert_eq!(summary(&out), [format!("P:{name}"), format!("B:{name}")]);
        // The Bind's new length counts the rest of its body, sent as it was.
        let mut whole = out[out.len() - (5 + 1 + name.len() + 1)..].to_vec();
        whole.extend_from_slice(&bind[replaced..]);
        assert!(matches!(
            inspect(&whole, 1 << 20).unwrap(),
            Inspected::Bind { rest: 6, .. }
        ));
        // The injected Parse's answer is held back; the Bind's is not.
        let verdicts = answer_all(&mut client, &mut second, b"12");
        assert_eq!(verdicts, [true, false]);
        // An unknown name is forwarded as it is.
        assert!(rewrite(
            &mut client,
            &mut second,
            &msg(b'B', b"\0nope\0\0\0\0\0\0\0")
        )
        .is_none());
    }

    #[test]
    fn close_forgets_the_name_only_and_a_full_server_evicts_the_oldest() {
        let registry = Arc::new(Registry::default());
        let mut client = Tracker::new(registry);
        client.capacity = 2;
        let mut server = ServerStatements::default();
        for (name, sql) in [("a", "SELECT 1"), ("b", "SELECT 2")] {
            rewrite(
                &mut client,
                &mut server,
                &msg(b'P', format!("{name}\0{sql}\0\0\0").as_bytes()),
            )
            .unwrap();
        }
        let oldest = client.statements.get(b"a").unwrap().name.clone();
        let (out, _) = rewrite(&mut client, &mut server, &msg(b'P', b"c\0SELECT 3\0\0\0")).unwrap();
        let newest = client.statements.get(b"c").unwrap().name.clone();
        assert_eq!(
            summary(&out),
            [format!("C:{oldest}"), format!("P:{newest}")]
        );
        assert_eq!(server.len(), 2);
        let (out, _) = rewrite(&mut client, &mut server, &msg(b'C', b"Sb\0")).unwrap();
        assert!(out.is_empty(), "the server keeps the statement");
        assert!(client.statements.get(b"b").is_none());
        assert_eq!(server.len(), 2);
    }

    #[test]
    fn a_name_in_use_is_refused_by_the_server_itself() {
        let registry = Arc::new(Registry::default());
        let mut client = Tracker::new(registry);
        let mut server = ServerStatements::default();
        rewrite(&mut client, &mut server, &msg(b'P', b"s\0SELECT 1\0\0\0")).unwrap();
        let name = client.statements.get(b"s").unwrap().name.clone();
        let (out, _) = rewrite(&mut client, &mut server, &msg(b'P', b"s\0SELECT 2\0\0\0")).unwrap();
        assert_eq!(
            summary(&out),
            [format!("P:{name}")],
            "a Parse the server will refuse (42P05)"
        );
        answer_all(&mut client, &mut server, b"1E");
        let kept = client.statements.get(b"s").unwrap();
        assert_eq!(&*kept.body, b"SELECT 1\0\0\0", "the first statement stays");
        assert!(server.touch(kept));
    }
}
