//! Protocol-level prepared statements carried across server connections
//! (`max_prepared_statements`), as PgBouncer 1.21 and later do.
//!
//! With transaction or statement pooling, a client's next transaction may run
//! on another server, where the statements it prepared do not exist. So the
//! pooler remembers, per client, what each of its statement names stands for
//! (`tracker`), and gives every distinct statement (query text and parameter
//! types) one pooler-wide name, `PGSLUICE_<n>` (`registry`), under which it is
//! prepared on servers. Parse, Bind, Describe and Close naming a statement are
//! rewritten to that name; a statement a server lacks is prepared on it just
//! before its first use there; each server keeps at most
//! max_prepared_statements of them and closes the least recently used
//! (`server`).
//!
//! The client must get an answer for each message it sent, in order, and
//! nothing else. Some answers the pooler makes itself (ParseComplete for a
//! statement the server already has, CloseComplete for a Close it keeps), and
//! the answers to what it sent on its own are held back: `replies` keeps the
//! queue that says which is which. Unnamed statements pass through untouched.

mod messages;
mod registry;
mod replies;
mod server;
mod tracker;

pub use messages::{inspect, plainly_unnamed, Inspected, MAX_NAMED_PARSE_LEN};
pub use registry::{Registry, Statement};
pub use replies::{may_answer, Replies};
pub use server::ServerStatements;
pub use tracker::{ClientStatements, Tracker};
