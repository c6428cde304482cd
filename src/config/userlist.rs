//! The `auth_file` (userlist.txt): one `"name" "secret"` pair per line.
//!
//! Each field is in double quotes, `""` inside a field is one quote, anything after
//! the second field is ignored, blank lines and lines starting with `;` are skipped.
//!
//! On a broken line PgBouncer logs "broken auth file" and stops reading: the users
//! read so far stay, the rest of the file is ignored. pgsluice does the same and
//! returns the message as a warning (with file and line) for the caller to log, so a
//! typo in one line never locks out the users above it, and is never silent.
//!
//! A secret that starts like an md5 hash or a SCRAM verifier but is not well formed
//! is a plain-text password, as in PgBouncer; that also gets a warning, since it is
//! almost always a copy-and-paste accident.

use foldhash::HashMap;
use std::path::Path;

use base64::Engine;

use super::error::ConfigError;
use crate::auth::{ScramVerifier, Secret};

/// What an auth file yields.
#[derive(Clone, Debug, Default)]
pub struct UserList {
    /// User name → secret; a name listed twice keeps its last secret.
    pub users: HashMap<String, Secret>,
    /// Problems that did not stop the load, each naming file and line.
    pub warnings: Vec<String>,
}

/// Reads the auth file at `path`. Only an unreadable file is an error.
pub fn load_userlist(path: &Path) -> Result<UserList, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError::io(path, &e))?;
    // Secrets are compared byte for byte, but Rust strings must be UTF-8; a file in
    // another encoding is an error rather than a silent change of passwords.
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigError::new("auth file is not valid UTF-8").in_file(path))?;
    Ok(parse_userlist(path, &text))
}

/// Parses auth file text; `path` is only used in warnings.
pub fn parse_userlist(path: &Path, text: &str) -> UserList {
    let mut list = UserList::default();
    for (idx, line) in text.lines().enumerate() {
        let where_ = format!("{}:{}", path.display(), idx + 1);
        let line = line.trim_start();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        match parse_line(line) {
            Ok((name, secret_text)) => {
                let (secret, warning) = parse_secret(&secret_text);
                if let Some(w) = warning {
                    list.warnings
                        .push(format!("{where_}: user \"{name}\": {w}"));
                }
                list.users.insert(name, secret);
            }
            Err(reason) => {
                list.warnings.push(format!(
                    "{where_}: broken auth file ({reason}); this line and the rest of the file are ignored"
                ));
                break;
            }
        }
    }
    list
}

/// Splits a line into its two unquoted fields.
fn parse_line(line: &str) -> Result<(String, String), String> {
    let rest = line
        .strip_prefix('"')
        .ok_or("a line must start with a double-quoted user name")?;
    let (name, rest) = quoted_field(rest).ok_or("unterminated user name")?;
    // PgBouncer skips whatever stands between the two fields.
    let start = rest.find('"').ok_or("missing secret field")?;
    let (secret, _ignored) = quoted_field(&rest[start + 1..]).ok_or("unterminated secret")?;
    Ok((name, secret))
}

/// Reads a field after its opening quote up to the closing quote; `""` is a quote.
fn quoted_field(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if matches!(chars.peek(), Some((_, '"'))) {
                chars.next();
                out.push('"');
                continue;
            }
            return Some((out, &s[i + 1..]));
        }
        out.push(c);
    }
    None
}

const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";

/// Classifies a secret. Returns a warning when the text looks like a hash but is not
/// one and is therefore taken as a plain-text password.
pub fn parse_secret(text: &str) -> (Secret, Option<String>) {
    if let Some(hex) = text.strip_prefix("md5") {
        if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Hashes are compared with computed ones, which are lowercase.
            return (
                Secret::Md5(format!("md5{}", hex.to_ascii_lowercase())),
                None,
            );
        }
        if hex.len() == 32 {
            return (
                Secret::Plain(text.to_string()),
                Some("secret starts with \"md5\" but is not an md5 hash; taken as a plain-text password".into()),
            );
        }
    }
    if text.starts_with(SCRAM_PREFIX) {
        return match parse_scram(text) {
            Ok(v) => (Secret::Scram(v), None),
            Err(why) => (
                Secret::Plain(text.to_string()),
                Some(format!(
                    "malformed SCRAM-SHA-256 verifier ({why}); taken as a plain-text password"
                )),
            ),
        };
    }
    (Secret::Plain(text.to_string()), None)
}

/// Decodes `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5803,
/// as PostgreSQL stores it), all three binary parts in standard base64.
pub fn parse_scram(text: &str) -> Result<ScramVerifier, String> {
    let rest = text
        .strip_prefix(SCRAM_PREFIX)
        .ok_or("missing SCRAM-SHA-256$ prefix")?;
    let (iter_salt, keys) = rest.split_once('$').ok_or("missing '$' before the keys")?;
    let (iterations, salt) = iter_salt
        .split_once(':')
        .ok_or("missing ':' between iterations and salt")?;
    let (stored, server) = keys
        .split_once(':')
        .ok_or("missing ':' between StoredKey and ServerKey")?;
    let iterations: u32 = iterations
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid iteration count '{iterations}'"))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64
        .decode(salt)
        .map_err(|_| "salt is not base64".to_string())?;
    if salt.is_empty() {
        return Err("empty salt".into());
    }
    let key = |name: &str, text: &str| -> Result<[u8; 32], String> {
        let bytes = b64
            .decode(text)
            .map_err(|_| format!("{name} is not base64"))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| format!("{name} is {} bytes, expected 32", bytes.len()))
    };
    Ok(ScramVerifier {
        iterations,
        salt,
        stored_key: key("StoredKey", stored)?,
        server_key: key("ServerKey", server)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    /// Computes a verifier the way PostgreSQL does (RFC 5802/7677).
    fn make_verifier(password: &str, salt: &[u8], iterations: u32) -> (String, [u8; 32], [u8; 32]) {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        let hmac = |key: &[u8], msg: &[u8]| -> [u8; 32] {
            let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
            m.update(msg);
            m.finalize().into_bytes().into()
        };
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac(&salted, b"Server Key");
        let b64 = base64::engine::general_purpose::STANDARD;
        let text = format!(
            "SCRAM-SHA-256${iterations}:{}${}:{}",
            b64.encode(salt),
            b64.encode(stored_key),
            b64.encode(server_key)
        );
        (text, stored_key, server_key)
    }

    fn parse(text: &str) -> UserList {
        parse_userlist(Path::new("/etc/userlist.txt"), text)
    }

    #[test]
    fn plain_md5_and_scram() {
        let (verifier, stored, server) = make_verifier("secret", b"0123456789abcdef", 4096);
        let text = format!(
            "\"plainuser\" \"pass word\"\n\"admin\" \"md545f2603610af569b6155c45067268c6b\"\n\"scram\" \"{verifier}\"\n"
        );
        let list = parse(&text);
        assert!(list.warnings.is_empty(), "{:?}", list.warnings);
        assert_eq!(list.users["plainuser"], Secret::Plain("pass word".into()));
        assert_eq!(
            list.users["admin"],
            Secret::Md5("md545f2603610af569b6155c45067268c6b".into())
        );
        match &list.users["scram"] {
            Secret::Scram(v) => {
                assert_eq!(v.iterations, 4096);
                assert_eq!(v.salt, b"0123456789abcdef");
                assert_eq!(v.stored_key, stored);
                assert_eq!(v.server_key, server);
            }
            other => panic!("expected SCRAM, got {other:?}"),
        }
    }

    #[test]
    fn md5_hex_is_normalized_to_lowercase() {
        let (s, w) = parse_secret("md545F2603610AF569B6155C45067268C6B");
        assert_eq!(s, Secret::Md5("md545f2603610af569b6155c45067268c6b".into()));
        assert!(w.is_none());
    }

    #[test]
    fn almost_hashes_are_plain_with_a_warning() {
        let (s, w) = parse_secret("md5zzf2603610af569b6155c45067268c6b");
        assert_eq!(
            s,
            Secret::Plain("md5zzf2603610af569b6155c45067268c6b".into())
        );
        assert!(w.is_some());
        let (s, w) = parse_secret("SCRAM-SHA-256$4096:c2FsdA==$bad:bad");
        assert!(matches!(s, Secret::Plain(_)));
        assert!(w.unwrap().contains("StoredKey is not base64"));
        // A short md5-looking password is just a password.
        assert_eq!(
            parse_secret("md5short"),
            (Secret::Plain("md5short".into()), None)
        );
    }

    #[test]
    fn scram_format_errors() {
        let (good, _, _) = make_verifier("x", b"salt", 10);
        assert!(parse_scram(&good).is_ok());
        for (bad, needle) in [
            ("SCRAM-SHA-256$abc:c2FsdA==$AAAA:AAAA", "iteration count"),
            ("SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA", "iteration count"),
            ("SCRAM-SHA-256$4096c2FsdA==$AAAA:AAAA", "missing ':'"),
            ("SCRAM-SHA-256$4096:c2FsdA==", "missing '$'"),
            (
                "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
                "StoredKey is 3 bytes",
            ),
        ] {
            let err = parse_scram(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn quoting_comments_and_trailing_fields() {
        let list = parse(
            "; a comment\n\n   \"quo\"\"ted\" \"pa\"\"ss\" extra fields \"ignored\"\n\t\"b\"   \"\"\n\"c\"junk\"x\"\n",
        );
        assert!(list.warnings.is_empty(), "{:?}", list.warnings);
        assert_eq!(list.users["quo\"ted"], Secret::Plain("pa\"ss".into()));
        assert_eq!(list.users["b"], Secret::Plain(String::new()));
        assert_eq!(list.users["c"], Secret::Plain("x".into()));
        assert_eq!(list.users.len(), 3);
    }

    #[test]
    fn later_lines_override_earlier() {
        let list = parse("\"a\" \"one\"\n\"a\" \"two\"\n");
        assert_eq!(list.users["a"], Secret::Plain("two".into()));
    }

    #[test]
    fn broken_line_stops_reading_like_pgbouncer() {
        let list = parse("\"a\" \"1\"\nb \"2\"\n\"c\" \"3\"\n");
        assert_eq!(list.users.len(), 1);
        assert!(list.users.contains_key("a"));
        assert_eq!(list.warnings.len(), 1);
        assert!(
            list.warnings[0].starts_with("/etc/userlist.txt:2: broken auth file"),
            "{}",
            list.warnings[0]
        );
        for broken in [
            "\"a\" \"unterminated\n",
            "\"a\n",
            "\"a\" nothing\n",
            "# hash\n",
        ] {
            let list = parse(broken);
            assert!(list.users.is_empty(), "{broken:?}");
            assert_eq!(list.warnings.len(), 1, "{broken:?}");
        }
    }

    #[test]
    fn load_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("userlist.txt");
        std::fs::write(&path, "\"u\" \"p\"\n").unwrap();
        let list = load_userlist(&path).unwrap();
        assert_eq!(list.users["u"], Secret::Plain("p".into()));

        let missing = dir.path().join("missing.txt");
        let err = load_userlist(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.txt"));
        assert!(err.to_string().contains("No such file or directory"));
    }
}
