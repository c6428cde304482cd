//! A DNS server for tests: authoritative for one zone, it answers A queries for
//! the host names it is told and SOA queries for the zone with the serial it is
//! told, and counts the queries it got. It listens on port 53 of an address in
//! 127.0.53.0/24 (a resolv.conf names no port), so only root can start it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// What the server knows and what it was asked.
struct Zone {
    name: Name,
    serial: u32,
    hosts: HashMap<Name, Ipv4Addr>,
    /// (name asked for, type) of every query, in order.
    asked: Vec<(String, RecordType)>,
}

pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Serve `zone` with SOA serial `serial`, on the first free address of
    /// 127.0.53.0/24. None when not root (port 53 needs it).
    pub fn start(zone: &str, serial: u32) -> Option<DnsServer> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let socket = (1..=254)
            .find_map(|last| UdpSocket::bind((Ipv4Addr::new(127, 0, 53, last), 53)).ok())
            .expect("no free port 53 on 127.0.53.0/24");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone {
            name: fqdn(zone),
            serial,
            hosts: HashMap::new(),
            asked: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (zone, stop) = (zone.clone(), stop.clone());
            std::thread::spawn(move || serve(&socket, &zone, &stop))
        };
        Some(DnsServer {
            addr,
            zone,
            stop,
            thread: Some(thread),
        })
    }

    /// Answer `host` with `ip` from now on.
    pub fn set_host(&self, host: &str, ip: Ipv4Addr) {
        self.lock().hosts.insert(fqdn(host), ip);
    }

    pub fn set_serial(&self, serial: u32) {
        self.lock().serial = serial;
    }

    /// How many queries of `kind` for `name` (without the final dot) came.
    pub fn asked(&self, name: &str, kind: RecordType) -> usize {
        self.lock()
            .asked
            .iter()
            .filter(|(n, k)| n.trim_end_matches('.') == name && *k == kind)
            .count()
    }

    /// Write a resolv.conf naming only this server into `dir`.
    pub fn write_resolv_conf(&self, dir: &Path) -> PathBuf {
        let path = dir.join("resolv.conf");
        std::fs::write(
            &path,
            format!(
                "nameserver {}\noptions timeout:1 attempts:1\n",
                self.addr.ip()
            ),
        )
        .unwrap();
        path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Zone> {
        self.zone.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn fqdn(name: &str) -> Name {
    let mut name = Name::from_str(name).expect("a valid DNS name");
    name.set_fqdn(true);
    name.to_lowercase()
}

fn serve(socket: &UdpSocket, zone: &Mutex<Zone>, stop: &AtomicBool) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let mut zone = zone.lock().unwrap_or_else(|e| e.into_inner());
        let answer = answer(&mut zone, &query);
        drop(zone);
        let _ = socket.send_to(&answer.to_vec().expect("encoding an answer"), from);
    }
}

/// The answer to `query`: its A or SOA record, an empty answer for another
/// type of a known name, NXDOMAIN for an unknown name in the zone, REFUSED for
/// a name outside it.
fn answer(zone: &mut Zone, query: &Message) -> Message {
    let mut answer = Message::response(query.metadata.id, OpCode::Query);
    answer.metadata.authoritative = true;
    answer.metadata.recursion_desired = query.metadata.recursion_desired;
    let Some(question) = query.queries.first() else {
        answer.metadata.response_code = ResponseCode::FormErr;
        return answer;
    };
    answer.add_query(question.clone());
    let name = question.name().to_lowercase();
    let kind = question.query_type();
    zone.asked.push((name.to_ascii(), kind));
    let record = match kind {
        RecordType::A => zone
            .hosts
            .get(&name)
            .map(|ip| Record::from_rdata(name.clone(), 1, RData::A(A(*ip)))),
        RecordType::SOA if name == zone.name => {
            let soa = SOA::new(
                Name::from_str("ns")
                    .unwrap()
                    .append_domain(&zone.name)
                    .unwrap(),
                Name::from_str("admin")
                    .unwrap()
                    .append_domain(&zone.name)
                    .unwrap(),
                zone.serial,
                60,
                60,
                600,
                1,
            );
            Some(Record::from_rdata(name.clone(), 1, RData::SOA(soa)))
        }
        _ => None,
    };
    match record {
        Some(record) => {
            answer.add_answer(record);
        }
        None if !zone.name.zone_of(&name) => answer.metadata.response_code = ResponseCode::Refused,
        None if name != zone.name && !zone.hosts.contains_key(&name) => {
            answer.metadata.response_code = ResponseCode::NXDomain
        }
        None => {}
    }
    answer
}
