//! The exchange end to end, RFC 7677's example, and malformed or tampered messages.

use super::verifier::verifier_from_password;
use super::*;
use crate::auth::Secret;

// RFC 7677 section 3, user "user", password "pencil".
const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
// Computed independently with Python's hashlib/hmac from the RFC's password, salt
// and iteration count.
const RFC_VERIFIER: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
                            WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:\
                            wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
const RFC_CLIENT_KEY: &str = "pg/JI9Z+hkSpLRa5btpe9GVrDHJcSEN0viVTVXaZbos=";

// Few rounds keep the round-trip tests fast in debug builds; the RFC vector
// covers the real count.
const ITERATIONS: u32 = 64;

fn rfc_salt() -> Vec<u8> {
    BASE64.decode(RFC_SALT).unwrap()
}

fn scram_secret(password: &str, salt: &[u8], iterations: u32) -> Secret {
    Secret::Scram(parse_scram_verifier(&scram_verifier(password, salt, iterations)).unwrap())
}

/// Runs a whole exchange; returns the keys the server learned.
fn exchange(client: &mut ScramClient, server: &mut ScramServer) -> Result<ScramKeys, ScramError> {
    let server_first = server.handle_client_first(&client.client_first())?;
    let client_final = client.handle_server_first(&server_first)?;
    let (server_final, keys) = server.handle_client_final(&client_final)?;
    client.handle_server_final(&server_final)?;
    Ok(keys)
}

fn password_client(password: &str) -> ScramClient {
    ScramClient::new(ScramCredentials::Password(password.into()))
}

/// The server-first and client-final of a fresh exchange, for tampering tests.
fn started(password: &str) -> (ScramServer, String, String) {
    let mut server =
        ScramServer::new(&scram_secret("secret", b"0123456789abcdef", ITERATIONS), 0).unwrap();
    let mut client = password_client(password);
    let server_first = server.handle_client_first(&client.client_first()).unwrap();
    let client_final = client.handle_server_first(&server_first).unwrap();
    (
        server,
        String::from_utf8(server_first).unwrap(),
        String::from_utf8(client_final).unwrap(),
    )
}

#[test]
fn verifier_matches_independent_computation() {
    assert_eq!(scram_verifier("pencil", &rfc_salt(), 4096), RFC_VERIFIER);
}

/// Replay RFC 7677's client side with `credentials`: the client must send the RFC's
/// messages and accept the RFC's server signature.
fn replay_rfc_client(credentials: ScramCredentials) {
    let mut client = ScramClient::with_nonce(credentials, "user".into(), RFC_CLIENT_NONCE.into());
    assert_eq!(client.client_first(), RFC_CLIENT_FIRST.as_bytes());
    let client_final = client
        .handle_server_first(RFC_SERVER_FIRST.as_bytes())
        .unwrap();
    assert_eq!(String::from_utf8(client_final).unwrap(), RFC_CLIENT_FINAL);
    client
        .handle_server_final(RFC_SERVER_FINAL.as_bytes())
        .unwrap();
}

/// Replay RFC 7677's server side against the RFC's verifier: the server must send
/// the RFC's messages. Returns the keys it learned from the client's proof.
fn replay_rfc_server() -> ScramKeys {
    let secret = Secret::Scram(parse_scram_verifier(RFC_VERIFIER).unwrap());
    let mut server = ScramServer::with_nonce(&secret, 0, RFC_SERVER_NONCE.into()).unwrap();
    let server_first = server
        .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
        .unwrap();
    assert_eq!(String::from_utf8(server_first).unwrap(), RFC_SERVER_FIRST);
    let (server_final, keys) = server
        .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
        .unwrap();
    assert_eq!(String::from_utf8(server_final).unwrap(), RFC_SERVER_FINAL);
    keys
}

#[test]
fn rfc7677_client_side() {
    replay_rfc_client(ScramCredentials::Password("pencil".into()));
}

#[test]
fn rfc7677_server_side() {
    let keys = replay_rfc_server();
    assert_eq!(BASE64.encode(keys.client_key), RFC_CLIENT_KEY);
    assert_eq!(keys.salt, rfc_salt());
    assert_eq!(keys.iterations, 4096);
}

#[test]
fn rfc7677_keys_client_reproduces_password_client() {
    // Keys alone must produce the very proof the password produced.
    replay_rfc_client(ScramCredentials::Keys(replay_rfc_server()));
}

#[test]
fn client_first_sends_empty_user_and_fresh_nonce() {
    let first = String::from_utf8(password_client("x").client_first()).unwrap();
    let nonce = first.strip_prefix("n,,n=,r=").unwrap();
    assert_eq!(BASE64.decode(nonce).unwrap().len(), NONCE_LEN);
    let other = String::from_utf8(password_client("x").client_first()).unwrap();
    assert_ne!(first, other);
}

#[test]
fn round_trip_against_plain_secret() {
    let mut server = ScramServer::new(&Secret::Plain("s3cret".into()), ITERATIONS).unwrap();
    let keys = exchange(&mut password_client("s3cret"), &mut server).unwrap();
    assert_eq!(keys.iterations, ITERATIONS);
    assert_eq!(keys.salt.len(), SALT_LEN);
}

#[test]
fn plain_secret_gets_fresh_salt_each_time() {
    let secret = Secret::Plain("s3cret".into());
    let a = ScramServer::new(&secret, ITERATIONS).unwrap();
    let b = ScramServer::new(&secret, ITERATIONS).unwrap();
    assert_ne!(a.verifier.salt, b.verifier.salt);
}

#[test]
fn zero_iterations_setting_still_works() {
    let mut server = ScramServer::new(&Secret::Plain("s3cret".into()), 0).unwrap();
    let keys = exchange(&mut password_client("s3cret"), &mut server).unwrap();
    assert_eq!(keys.iterations, 1);
}

#[test]
fn round_trip_against_scram_verifier() {
    let secret = scram_secret("s3cret", b"some salt", ITERATIONS);
    let mut server = ScramServer::new(&secret, 4096).unwrap();
    let keys = exchange(&mut password_client("s3cret"), &mut server).unwrap();
    // The verifier's parameters win over the scram_iterations setting.
    assert_eq!(keys.iterations, ITERATIONS);
    assert_eq!(keys.salt, b"some salt");
}

#[test]
fn pass_through_keys_log_in_to_a_server_with_the_same_verifier() {
    let secret = scram_secret("s3cret", b"shared salt", ITERATIONS);
    let mut pooler = ScramServer::new(&secret, 0).unwrap();
    let keys = exchange(&mut password_client("s3cret"), &mut pooler).unwrap();

    let mut postgres = ScramServer::new(&secret, 0).unwrap();
    let mut login = ScramClient::new(ScramCredentials::Keys(keys.clone()));
    exchange(&mut login, &mut postgres).unwrap();

    // The same user with a different verifier on the server: refused early.
    let mut postgres =
        ScramServer::new(&scram_secret("s3cret", b"other salt", ITERATIONS), 0).unwrap();
    let mut login = ScramClient::new(ScramCredentials::Keys(keys.clone()));
    assert!(matches!(
        exchange(&mut login, &mut postgres),
        Err(ScramError::KeysMismatch)
    ));
    let mut postgres =
        ScramServer::new(&scram_secret("s3cret", b"shared salt", ITERATIONS + 1), 0).unwrap();
    let mut login = ScramClient::new(ScramCredentials::Keys(keys));
    assert!(matches!(
        exchange(&mut login, &mut postgres),
        Err(ScramError::KeysMismatch)
    ));
}

#[test]
fn keys_from_plain_secret_do_not_fit_a_real_verifier() {
    let mut pooler = ScramServer::new(&Secret::Plain("s3cret".into()), ITERATIONS).unwrap();
    let keys = exchange(&mut password_client("s3cret"), &mut pooler).unwrap();
    let mut postgres =
        ScramServer::new(&scram_secret("s3cret", b"pg salt", ITERATIONS), 0).unwrap();
    let mut login = ScramClient::new(ScramCredentials::Keys(keys));
    assert!(matches!(
        exchange(&mut login, &mut postgres),
        Err(ScramError::KeysMismatch)
    ));
}

#[test]
fn wrong_password_is_an_invalid_proof() {
    let (mut server, _, client_final) = started("wrong");
    assert!(matches!(
        server.handle_client_final(client_final.as_bytes()),
        Err(ScramError::InvalidProof)
    ));
    let mut server = ScramServer::new(&Secret::Plain("right".into()), ITERATIONS).unwrap();
    assert!(matches!(
        exchange(&mut password_client("wrong"), &mut server),
        Err(ScramError::InvalidProof)
    ));
}

#[test]
fn tampered_proof_is_invalid() {
    let (mut server, _, client_final) = started("secret");
    let (head, proof) = client_final.rsplit_once(",p=").unwrap();
    let mut proof = BASE64.decode(proof).unwrap();
    proof[0] ^= 1;
    let tampered = format!("{head},p={}", BASE64.encode(proof));
    assert!(matches!(
        server.handle_client_final(tampered.as_bytes()),
        Err(ScramError::InvalidProof)
    ));
}

#[test]
fn server_rejects_tampered_nonce() {
    let (mut server, _, client_final) = started("secret");
    let tampered = client_final.replacen(",r=", ",r=X", 1);
    assert!(matches!(
        server.handle_client_final(tampered.as_bytes()),
        Err(ScramError::NonceMismatch)
    ));
}

#[test]
fn client_rejects_server_nonce_that_does_not_extend_its_own() {
    for server_first in [
        "r=someoneelse,s=c2FsdA==,i=4096",
        "r=NONCE,s=c2FsdA==,i=4096",
    ] {
        let mut client = ScramClient::with_nonce(
            ScramCredentials::Password("x".into()),
            String::new(),
            "NONCE".into(),
        );
        client.client_first();
        assert!(matches!(
            client.handle_server_first(server_first.as_bytes()),
            Err(ScramError::NonceMismatch)
        ));
    }
}

#[test]
fn channel_binding_is_refused() {
    let mut server = ScramServer::new(&Secret::Plain("x".into()), 1).unwrap();
    assert!(matches!(
        server.handle_client_first(b"p=tls-server-end-point,,n=,r=abc"),
        Err(ScramError::ChannelBindingNotSupported)
    ));
    // Claiming channel binding only in client-final is refused as well.
    let (mut server, _, client_final) = started("secret");
    let cbind = BASE64.encode("p=tls-server-end-point,,");
    let tampered = client_final.replacen("c=biws", &format!("c={cbind}"), 1);
    assert!(matches!(
        server.handle_client_final(tampered.as_bytes()),
        Err(ScramError::ChannelBindingNotSupported)
    ));
}

#[test]
fn client_supporting_channel_binding_is_accepted_without_it() {
    let mut server = ScramServer::new(&Secret::Plain("x".into()), 1).unwrap();
    server.handle_client_first(b"y,,n=,r=abc").unwrap();
    // A `y` client must echo `y,,` in c=; echoing `n,,` is a mismatch.
    assert!(matches!(
        server.handle_client_final(b"c=biws,r=abc,p=AAAA"),
        Err(ScramError::Malformed(_))
    ));
}

#[test]
fn server_reports_error_text() {
    let mut client = password_client("x");
    let first = String::from_utf8(client.client_first()).unwrap();
    let nonce = first.strip_prefix("n,,n=,r=").unwrap();
    client
        .handle_server_first(format!("r={nonce}srv,s=c2FsdA==,i=1").as_bytes())
        .unwrap();
    match client.handle_server_final(b"e=invalid-proof") {
        Err(ScramError::Server(text)) => assert_eq!(text, "invalid-proof"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn wrong_server_signature_is_refused() {
    let mut server = ScramServer::new(&scram_secret("secret", b"salt", ITERATIONS), 0).unwrap();
    let mut client = password_client("secret");
    let server_first = server.handle_client_first(&client.client_first()).unwrap();
    let client_final = client.handle_server_first(&server_first).unwrap();
    server.handle_client_final(&client_final).unwrap();
    let forged = format!("v={}", BASE64.encode([7u8; 32]));
    assert!(matches!(
        client.handle_server_final(forged.as_bytes()),
        Err(ScramError::ServerSignatureMismatch)
    ));
}

#[test]
fn md5_secret_is_unsupported() {
    let secret = Secret::Md5("md53175bce1d3201d16594cebf9d7eb3f9d".into());
    assert!(matches!(
        ScramServer::new(&secret, 4096),
        Err(ScramError::UnsupportedSecret)
    ));
}

#[test]
fn steps_out_of_order_are_refused() {
    let mut server = ScramServer::new(&Secret::Plain("x".into()), 1).unwrap();
    assert!(matches!(
        server.handle_client_final(b"c=biws,r=a,p=AAAA"),
        Err(ScramError::OutOfOrder)
    ));
    let mut client = password_client("x");
    assert!(matches!(
        client.handle_server_first(b"r=a,s=c2FsdA==,i=1"),
        Err(ScramError::OutOfOrder)
    ));
    assert!(matches!(
        client.handle_server_final(b"v=AAAA"),
        Err(ScramError::OutOfOrder)
    ));

    // A failed step ends the exchange: no second guess on the same nonce.
    let (mut server, _, client_final) = started("wrong");
    assert!(server.handle_client_final(client_final.as_bytes()).is_err());
    assert!(matches!(
        server.handle_client_final(client_final.as_bytes()),
        Err(ScramError::OutOfOrder)
    ));
}

#[test]
fn server_rejects_malformed_client_first() {
    let cases: &[&[u8]] = &[
        b"",
        b"garbage",
        b"\xff\xfe\x00",
        b"n,,",
        b"n,",
        b"x,,n=,r=abc",
        b"n,a=admin,n=,r=abc",
        b"n,,m=ext,n=,r=abc",
        b"n,,n=,r=",
        b"n,,n=",
        b"n,,r=abc",
        b"n,,n=,r=ab\x7fc",
        b"n,,n=,r=abc,bogus",
    ];
    for &case in cases {
        let mut server = ScramServer::new(&Secret::Plain("x".into()), 1).unwrap();
        assert!(
            matches!(
                server.handle_client_first(case),
                Err(ScramError::Malformed(_))
            ),
            "accepted {case:?}"
        );
    }
    // Extensions after the nonce are allowed and ignored.
    let mut server = ScramServer::new(&Secret::Plain("x".into()), 1).unwrap();
    server
        .handle_client_first(b"n,,n=ignored,r=abc,x=ext")
        .unwrap();
}

#[test]
fn server_rejects_malformed_client_final() {
    let proof = BASE64.encode([0u8; 32]);
    let short_proof = BASE64.encode([0u8; 31]);
    // NONCE stands for the nonce of each fresh exchange.
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"garbage".to_vec(),
        b"\xff\xfe".to_vec(),
        b"c=biws,r=NONCE".to_vec(),
        b"c=biws,r=NONCE,p=".to_vec(),
        b"c=biws,r=NONCE,p=!!!".to_vec(),
        format!("c=biws,r=NONCE,p={short_proof}").into_bytes(),
        format!("c=biws,r=NONCE,p={proof},x=after").into_bytes(),
        format!("r=NONCE,p={proof}").into_bytes(),
        format!("c=***,r=NONCE,p={proof}").into_bytes(),
        format!("c=biws,p={proof}").into_bytes(),
        format!("c=biws,r=NONCE,bogus,p={proof}").into_bytes(),
    ];
    for case in cases {
        let (mut server, server_first, _) = started("secret");
        let nonce = server_first
            .split(',')
            .next()
            .unwrap()
            .strip_prefix("r=")
            .unwrap();
        let case = match String::from_utf8(case) {
            Ok(text) => text.replace("NONCE", nonce).into_bytes(),
            Err(not_utf8) => not_utf8.into_bytes(),
        };
        let result = server.handle_client_final(&case);
        assert!(
            matches!(result, Err(ScramError::Malformed(_))),
            "{case:?}: {result:?}"
        );
    }
}

#[test]
fn client_rejects_malformed_server_first() {
    let cases: &[&str] = &[
        "",
        "garbage",
        "m=ext,r=NONCEsrv,s=c2FsdA==,i=1",
        "r=NONCEsrv",
        "r=NONCEsrv,s=c2FsdA==",
        "r=NONCEsrv,s=***,i=1",
        "r=NONCEsrv,s=,i=1",
        "r=NONCEsrv,s=c2FsdA==,i=0",
        "r=NONCEsrv,s=c2FsdA==,i=+1",
        "r=NONCEsrv,s=c2FsdA==,i=-1",
        "r=NONCEsrv,s=c2FsdA==,i=99999999999",
        "r=NONCEsrv,s=c2FsdA==,i=abc",
        "r=NONCEsrv,i=1,s=c2FsdA==",
        "r=NONCEsrv,s=c2FsdA==,i=1,bogus",
        "r=NONCE\u{7f},s=c2FsdA==,i=1",
    ];
    for case in cases.iter().map(|c| c.as_bytes()).chain([&b"\xff\xfe"[..]]) {
        let mut client = ScramClient::with_nonce(
            ScramCredentials::Password("x".into()),
            String::new(),
            "NONCE".into(),
        );
        client.client_first();
        let result = client.handle_server_first(case);
        assert!(
            matches!(result, Err(ScramError::Malformed(_))),
            "{case:?}: {result:?}"
        );
    }
}

#[test]
fn client_rejects_malformed_server_final() {
    for case in [&b""[..], b"garbage", b"\xff\xfe", b"v=***", b"x=1"] {
        let mut client = password_client("x");
        let first = String::from_utf8(client.client_first()).unwrap();
        let nonce = first.strip_prefix("n,,n=,r=").unwrap();
        client
            .handle_server_first(format!("r={nonce}srv,s=c2FsdA==,i=1").as_bytes())
            .unwrap();
        let result = client.handle_server_final(case);
        assert!(
            matches!(result, Err(ScramError::Malformed(_))),
            "{case:?}: {result:?}"
        );
    }
}

#[test]
fn truncated_and_corrupted_messages_never_panic() {
    let secret = Secret::Scram(parse_scram_verifier(RFC_VERIFIER).unwrap());
    let messages = [
        RFC_CLIENT_FIRST,
        RFC_SERVER_FIRST,
        RFC_CLIENT_FINAL,
        RFC_SERVER_FINAL,
    ];
    for message in messages {
        let bytes = message.as_bytes();
        let mut variants: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
        for i in 0..bytes.len() {
            for replacement in [b',', b'=', 0, 0xff] {
                let mut corrupted = bytes.to_vec();
                corrupted[i] = replacement;
                variants.push(corrupted);
            }
        }
        for variant in variants {
            let mut server = ScramServer::with_nonce(&secret, 0, RFC_SERVER_NONCE.into()).unwrap();
            let _ = server.handle_client_first(&variant);
            let mut server = ScramServer::with_nonce(&secret, 0, RFC_SERVER_NONCE.into()).unwrap();
            server
                .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
                .unwrap();
            let _ = server.handle_client_final(&variant);
            // Keys mode skips PBKDF2, so this stays fast.
            let keys = ScramKeys {
                client_key: [1; 32],
                server_key: [2; 32],
                salt: rfc_salt(),
                iterations: 4096,
            };
            let mut client = ScramClient::with_nonce(
                ScramCredentials::Keys(keys),
                "user".into(),
                RFC_CLIENT_NONCE.into(),
            );
            client.client_first();
            let _ = client.handle_server_first(&variant);
            let _ = client.handle_server_final(&variant);
        }
    }
}

#[test]
fn parse_verifier_round_trips() {
    let verifier = parse_scram_verifier(RFC_VERIFIER).unwrap();
    assert_eq!(verifier.iterations, 4096);
    assert_eq!(verifier.salt, rfc_salt());
    let expected = verifier_from_password("pencil", &rfc_salt(), 4096);
    assert_eq!(verifier, expected);
}

#[test]
fn parse_verifier_rejects_malformed() {
    let key = BASE64.encode([0u8; 32]);
    let short = BASE64.encode([0u8; 31]);
    let cases = [
        String::new(),
        "md53175bce1d3201d16594cebf9d7eb3f9d".into(),
        "plain password".into(),
        format!("SCRAM-SHA-1$4096:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$0:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$x:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$4096:${key}:{key}"),
        format!("SCRAM-SHA-256$4096:***${key}:{key}"),
        format!("SCRAM-SHA-256$4096c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${key}{key}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${short}:{key}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{short}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}:{key}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}$x"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key} "),
    ];
    for case in cases {
        assert!(parse_scram_verifier(&case).is_none(), "accepted {case:?}");
    }
    assert!(parse_scram_verifier(&format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}")).is_some());
}

#[test]
fn debug_output_hides_keys() {
    let keys = ScramKeys {
        client_key: [0xab; 32],
        server_key: [0xcd; 32],
        salt: b"salt".to_vec(),
        iterations: 4096,
    };
    let printed = format!("{keys:?} {:?}", ScramCredentials::Keys(keys.clone()));
    assert!(printed.contains("4096"));
    for needle in ["171", "205", "ab", "cd", "salt"] {
        assert!(!printed.contains(needle), "{printed}");
    }
    let printed = format!("{:?}", ScramCredentials::Password("hunter2".into()));
    assert!(!printed.contains("hunter2"));
    let printed = format!(
        "{:?}",
        ScramClient::new(ScramCredentials::Password("hunter2".into()))
    );
    assert!(!printed.contains("hunter2"));
}

proptest::proptest! {
    /// A client-final message with any one byte changed is refused: the proof
    /// covers the whole message (through the AuthMessage), and base64 that
    /// decodes loosely would let a changed proof through.
    #[test]
    fn a_client_final_with_any_byte_changed_is_refused(
        at in proptest::prelude::any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (mut server, _, client_final) = started("secret");
        let mut tampered = client_final.into_bytes();
        let i = at.index(tampered.len());
        tampered[i] ^= flip;
        proptest::prop_assert!(server.handle_client_final(&tampered).is_err());
    }

    /// Arbitrary bytes as either client message: an error, never a panic.
    #[test]
    fn arbitrary_client_messages_are_errors_not_panics(
        first in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
        last in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
    ) {
        let (mut server, _, _) = started("secret");
        // The server already took a client-first: a second one is out of turn.
        let _ = server.handle_client_first(&first);
        let _ = server.handle_client_final(&last);
        let mut fresh =
            ScramServer::new(&scram_secret("secret", b"0123456789abcdef", ITERATIONS), 0).unwrap();
        if fresh.handle_client_first(&first).is_ok() {
            proptest::prop_assert!(fresh.handle_client_final(&last).is_err());
        }
    }
}
