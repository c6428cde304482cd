//! One pooler-wide name per distinct statement, so that clients preparing the
//! same query share it on every server instead of each preparing its own copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// A statement as prepared on servers: the body of its Parse message after the
/// name (query text, then the parameter type OIDs), and the name it has there.
#[derive(Debug)]
pub struct Statement {
    pub id: u64,
    /// `PGSLUICE_<id>`.
    pub name: Box<str>,
    pub body: Arc<[u8]>,
}

/// The statements some client or server still holds, by Parse body.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_body: HashMap<Arc<[u8]>, Weak<Statement>>,
    last_id: u64,
    /// Entries of statements nobody holds any more are dropped when the map
    /// reaches this size, which then doubles: amortised, a constant cost per
    /// statement added.
    sweep_at: usize,
}

/// The map is swept no sooner than at this many entries.
const MIN_SWEEP: usize = 1024;

impl Registry {
    /// The statement with this Parse body, made if no client or server holds
    /// one. Taken only for a named Parse, not per query.
    pub fn statement(&self, body: &[u8]) -> Arc<Statement> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(statement) = inner.by_body.get(body).and_then(Weak::upgrade) {
            return statement;
        }
        inner.last_id += 1;
        let id = inner.last_id;
        let body: Arc<[u8]> = body.into();
        let statement = Arc::new(Statement {
            id,
            name: format!("PGSLUICE_{id}").into_boxed_str(),
            body: body.clone(),
        });
        inner.by_body.insert(body, Arc::downgrade(&statement));
        if inner.by_body.len() >= inner.sweep_at.max(MIN_SWEEP) {
            inner.by_body.retain(|_, held| held.strong_count() > 0);
            inner.sweep_at = inner.by_body.len() * 2;
        }
        statement
    }

    /// How many statements are known (held or not yet swept).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_body
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_body_is_the_same_statement_while_someone_holds_it() {
        let registry = Registry::default();
        let a = registry.statement(b"SELECT $1\0\0\0");
        let b = registry.statement(b"SELECT $1\0\0\0");
        let c = registry.statement(b"SELECT $2\0\0\0");
        assert!(Arc::ptr_eq(&a, &b));
        assert_ne!(a.id, c.id);
        assert_eq!(&*a.name, &*format!("PGSLUICE_{}", a.id));
        let id = a.id;
        drop((a, b));
        let again = registry.statement(b"SELECT $1\0\0\0");
        assert_ne!(again.id, id, "a statement nobody held was reused");
    }

    #[test]
    fn statements_nobody_holds_are_swept() {
        let registry = Registry::default();
        let kept = registry.statement(b"kept\0\0\0");
        for i in 0..3 * MIN_SWEEP {
            drop(registry.statement(format!("SELECT {i}\0\0\0").as_bytes()));
        }
        assert!(registry.len() <= MIN_SWEEP, "{} entries", registry.len());
        assert!(Arc::ptr_eq(&kept, &registry.statement(b"kept\0\0\0")));
    }
}
