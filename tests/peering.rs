//! Two pgsluice processes on one TCP port (`so_reuseport`), peered with
//! `peer_id` and `[peers]`: the kernel spreads clients between them, and a
//! cancel request that reaches the process that does not serve its client is
//! passed on to the one that does.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::pooler::TRUST_PASSWORD;
use support::postgres::{TEST_DB, TRUST_USER};
use support::wire::{special_request, CANCEL_REQUEST_CODE};
use support::{within, Pooler, PoolerConfig, Postgres, RawClient};

const STEP: Duration = Duration::from_secs(30);

/// A CancelRequest for `key`, sent to the pooler listening in `dir`; returns
/// once the pooler has closed the connection, that is, has dealt with it.
fn send_cancel(dir: &Path, port: u16, key: (i32, i32)) {
    let mut socket = UnixStream::connect(dir.join(format!(".s.PGSQL.{port}"))).unwrap();
    let mut pid_and_key = key.0.to_be_bytes().to_vec();
    pid_and_key.extend(key.1.to_be_bytes());
    socket
        .write_all(&special_request(CANCEL_REQUEST_CODE, &pid_and_key))
        .unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    let mut rest = Vec::new();
    socket.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "a cancel request gets no answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_at_the_other_peer_is_passed_on() {
    let pg = Postgres::start();
    let mut configs = [PoolerConfig::new(&pg), PoolerConfig::new(&pg)];
    let port = configs[0].port();
    let dirs: Vec<_> = configs.iter().map(|c| c.dir().to_owned()).collect();
    for (i, cfg) in configs.iter_mut().enumerate() {
        cfg.set("listen_port", &port.to_string())
            .set("so_reuseport", "1")
            .set("peer_id", &(i + 1).to_string());
        for (j, dir) in dirs.iter().enumerate() {
            cfg.peer(j as u32 + 1, &format!("host={} port={port}", dir.display()));
        }
    }
    let poolers = [Pooler::start(&configs[0]), Pooler::start(&configs[1])];

    // Without so_reuseport the port is taken.
    let mut lone = PoolerConfig::new(&pg);
    lone.set("listen_port", &port.to_string());
    let ini = lone.write_for_service();
    let refused = Command::new(env!("CARGO_BIN_EXE_pgsluice"))
        .arg(&ini)
        .env_remove("LISTEN_FDS")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Address already in use"), "{stderr}");

    // Whichever process the kernel gives each client to, the cancel sent to
    // the other one stops its query.
    for round in 0..6 {
        let startup = [("user", TRUST_USER), ("database", TEST_DB)];
        let mut client = within(
            STEP,
            "login",
            RawClient::connect(port, &startup, Some(TRUST_PASSWORD)),
        )
        .await
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let key = client.backend_key.expect("BackendKeyData");
        let query = tokio::spawn(async move {
            let outcome = client.simple_query("SELECT pg_sleep(20)").await;
            client.terminate().await;
            outcome
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The peer id is in the key's low 14 bits (see src/client/peering.rs).
        let owner = (key.0 & 0x3fff) as usize;
        assert!(owner == 1 || owner == 2, "round {round}: key {key:?}");
        let other = &dirs[2 - owner];
        tokio::task::spawn_blocking({
            let other = other.clone();
            move || send_cancel(&other, port, key)
        })
        .await
        .unwrap();
        let outcome = within(STEP, "the canceled query", query).await.unwrap();
        let err = outcome.expect_err("the query was canceled");
        assert_eq!(err.code(), Some("57014"), "round {round}: {err}");
    }
    for pooler in &poolers {
        let log = pooler.log();
        assert!(
            !log.contains("cancel request"),
            "no cancel went astray:\n{log}"
        );
    }
}
