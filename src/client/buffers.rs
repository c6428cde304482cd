//! Relay buffers, reused. Every transaction needs two (one each way); allocating
//! and zeroing them anew was the largest single cost the pooler itself added to a
//! short transaction. Each worker thread keeps a few that were given back.
//!
//! Idle clients hold no buffer, so this costs a fixed amount per thread, not per
//! client.

use std::cell::RefCell;

/// Buffers kept per thread. Enough for every transaction in flight on a pool of
/// this size; more are allocated (and dropped on return) when a burst needs them.
const SPARES_PER_THREAD: usize = 64;

thread_local! {
    static SPARES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of exactly `size` bytes: a spare one if this thread has one of that
/// size (pkt_buf may have changed by a reload), else a new one.
pub fn take(size: usize) -> Vec<u8> {
    let spare = SPARES
        .try_with(|spares| {
            let mut spares = spares.borrow_mut();
            loop {
                match spares.pop() {
                    Some(buf) if buf.len() == size => return Some(buf),
                    Some(_outdated) => continue,
                    None => return None,
                }
            }
        })
        .ok()
        .flatten();
    spare.unwrap_or_else(|| vec![0; size])
}

/// Keep `buf` for a later `take`, if this thread has room for it. Only buffers
/// still of their original `size` come back: one grown for a large message
/// would keep that memory forever.
pub fn give_back(buf: Vec<u8>, size: usize) {
    if buf.len() != size {
        return;
    }
    let _ = SPARES.try_with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.len() < SPARES_PER_THREAD {
            spares.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again() {
        let mut buf = take(4096);
        buf[0] = 7;
        let address = buf.as_ptr();
        give_back(buf, 4096);
        let again = take(4096);
        assert_eq!(again.as_ptr(), address, "the spare was not reused");
        assert_eq!(again.len(), 4096);
    }

    #[test]
    fn a_spare_of_another_size_is_not_handed_out() {
        give_back(vec![0; 2048], 2048);
        let buf = take(8192);
        assert_eq!(buf.len(), 8192);
        // The outdated spare was dropped, not kept behind the new size.
        let fresh = take(2048);
        assert_eq!(fresh.len(), 2048);
    }

    #[test]
    fn a_grown_buffer_is_not_kept() {
        SPARES.with(|s| s.borrow_mut().clear());
        let mut buf = take(1024);
        buf.resize(4096, 0);
        give_back(buf, 1024);
        assert_eq!(SPARES.with(|s| s.borrow().len()), 0);
        give_back(take(1024), 1024);
        assert_eq!(SPARES.with(|s| s.borrow().len()), 1);
    }

    #[test]
    fn spares_are_bounded() {
        let bufs: Vec<_> = (0..SPARES_PER_THREAD + 10).map(|_| take(512)).collect();
        bufs.into_iter().for_each(|b| give_back(b, 512));
        let kept = SPARES.with(|s| s.borrow().len());
        assert_eq!(kept, SPARES_PER_THREAD);
        SPARES.with(|s| s.borrow_mut().clear());
    }
}
