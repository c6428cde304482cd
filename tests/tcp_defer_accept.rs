//! `tcp_defer_accept`: on (the default, as in PgBouncer), the kernel keeps a
//! connection that has sent nothing from the pooler until its first bytes come;
//! off, the connection is established at once. Checked in the kernel's own
//! table of TCP sockets, /proc/net/tcp, before and after a reload turns it off
//! and SET turns it on again: either is in effect once it reports done.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::pooler::TRUST_PASSWORD;
use support::postgres::TRUST_USER;
use support::{Pooler, PoolerConfig, Postgres};

/// /proc/net/tcp's codes for the two states this test tells apart.
const ESTABLISHED: u8 = 0x01;
const SYN_RECV: u8 = 0x03;

/// The state of the pooler's end of the connection from `client_port` to
/// `pooler_port`, as /proc/net/tcp lists it (it lists connections the kernel
/// has not yet completed, too).
fn pooler_side_state(pooler_port: u16, client_port: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port_of = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, state) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
        (port_of(local) == Some(pooler_port) && port_of(remote) == Some(client_port))
            .then(|| u8::from_str_radix(state, 16).ok())
            .flatten()
    })
}

/// Connect without sending anything; after a moment, the state of the pooler's end.
fn state_of_a_silent_connection(pooler: &Pooler) -> (TcpStream, Option<u8>) {
    let stream = TcpStream::connect(("127.0.0.1", pooler.port)).expect("connect");
    let client_port = stream.local_addr().expect("local address").port();
    // Well inside the 1 s after which the kernel hands a silent connection over.
    std::thread::sleep(Duration::from_millis(200));
    (stream, pooler_side_state(pooler.port, client_port))
}

/// An SSLRequest: the pooler, without TLS configured, answers 'N'.
fn ask_for_tls(stream: &mut TcpStream) -> u8 {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(&support::wire::ssl_request())
        .expect("send SSLRequest");
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .expect("answer to SSLRequest");
    answer[0]
}

#[test]
fn a_silent_connection_waits_in_the_kernel_until_a_reload_turns_it_off() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("admin_users", TRUST_USER);
    let pooler = Pooler::start(&cfg);

    let (mut silent, state) = state_of_a_silent_connection(&pooler);
    assert_eq!(
        state,
        Some(SYN_RECV),
        "with tcp_defer_accept on, a connection that sent nothing is not yet established"
    );
    assert_eq!(
        ask_for_tls(&mut silent),
        b'N',
        "once its first bytes come, the pooler takes the connection and answers"
    );

    cfg.set("tcp_defer_accept", "0");
    pooler.reload_with(&cfg);
    let (mut silent, state) = state_of_a_silent_connection(&pooler);
    assert_eq!(
        state,
        Some(ESTABLISHED),
        "after the reload to tcp_defer_accept = 0, a connection is established at once"
    );
    assert_eq!(ask_for_tls(&mut silent), b'N');

    pooler
        .psql(
            TRUST_USER,
            "pgbouncer",
            Some(TRUST_PASSWORD),
            "SET tcp_defer_accept = 1",
        )
        .expect("SET tcp_defer_accept");
    let (mut silent, state) = state_of_a_silent_connection(&pooler);
    assert_eq!(
        state,
        Some(SYN_RECV),
        "after SET tcp_defer_accept = 1, a silent connection waits in the kernel again"
    );
    assert_eq!(ask_for_tls(&mut silent), b'N');
}
