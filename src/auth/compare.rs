//! Constant-time comparison of secrets and authentication responses.
//!
//! Every check of a client-supplied password, md5 response, SCRAM proof or server
//! signature goes through here, so that the time a comparison takes does not reveal
//! how many leading bytes of a guess were right.

use subtle::ConstantTimeEq;

/// True when `a` and `b` hold the same bytes.
///
/// A length mismatch returns false at once: lengths of the values compared here are
/// public (fixed by the protocol or visible on the wire), and nothing about the
/// contents is examined in that case. For equal lengths, the time taken does not depend
/// on where (or whether) the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_slices_compare_equal() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"secret", b"secret"));
    }

    #[test]
    fn different_contents_compare_unequal() {
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"Secret"));
    }

    #[test]
    fn different_lengths_compare_unequal() {
        assert!(!constant_time_eq(b"secret", b"secret\0"));
        assert!(!constant_time_eq(b"", b"x"));
        // A prefix of the right value must not pass.
        assert!(!constant_time_eq(b"sec", b"secret"));
    }
}
