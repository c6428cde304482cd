//! The statements one server connection has prepared under their pooler-wide
//! names, at most max_prepared_statements of them.

use std::collections::HashMap;
use std::sync::Arc;

use super::Statement;

#[derive(Default)]
pub struct ServerStatements {
    /// By statement id: the statement and when it was last used.
    by_id: HashMap<u64, (Arc<Statement>, u64)>,
    clock: u64,
}

impl ServerStatements {
    /// Whether the server has `statement`; if so it counts as used now.
    pub fn touch(&mut self, statement: &Statement) -> bool {
        self.clock += 1;
        match self.by_id.get_mut(&statement.id) {
            Some((_, used)) => {
                *used = self.clock;
                true
            }
            None => false,
        }
    }

    pub fn add(&mut self, statement: Arc<Statement>) {
        self.clock += 1;
        self.by_id.insert(statement.id, (statement, self.clock));
    }

    pub fn remove(&mut self, statement: &Statement) {
        self.by_id.remove(&statement.id);
    }

    /// Forget the least recently used statement (the caller closes it on the
    /// server). A linear scan: eviction is rare next to use, and the cache small.
    pub fn evict_oldest(&mut self) -> Option<Arc<Statement>> {
        let id = self
            .by_id
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(id, _)| *id)?;
        self.by_id.remove(&id).map(|(statement, _)| statement)
    }

    /// The server lost all its statements (DISCARD ALL, DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.by_id.clear();
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::Registry;

    #[test]
    fn the_least_recently_used_is_evicted() {
        let registry = Registry::default();
        let [a, b, c] = [b"a\0\0\0", b"b\0\0\0", b"c\0\0\0"].map(|q| registry.statement(q));
        let mut server = ServerStatements::default();
        server.add(a.clone());
        server.add(b.clone());
        server.add(c.clone());
        assert!(server.touch(&a));
        assert_eq!(server.evict_oldest().unwrap().id, b.id);
        assert_eq!(server.evict_oldest().unwrap().id, c.id);
        assert!(!server.touch(&b));
        assert_eq!(server.len(), 1);
        server.clear();
        assert!(server.is_empty() && server.evict_oldest().is_none());
    }
}
