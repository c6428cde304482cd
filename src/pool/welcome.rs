//! What a client is sent when its login succeeds, prepared once per pool.
//!
//! A login ends with AuthenticationOk, one ParameterStatus per server parameter,
//! BackendKeyData and ReadyForQuery. Only the tracked parameters (client_encoding,
//! TimeZone, …) can differ between the clients of a pool; the others
//! (server_version, integer_datetimes, …) are encoded once, when the pool's first
//! server reports them, and copied as bytes into every welcome after that.

use bytes::BytesMut;

use crate::protocol::backend;
use crate::server::{params, ParamSet, ServerParamsReport};

pub struct Welcome {
    /// The tracked parameters as the pool's first server reported them: a
    /// client's settings start from these.
    pub tracked: ParamSet,
    /// AuthenticationOk and the ParameterStatus messages of every untracked
    /// parameter, ready to send.
    fixed: Box<[u8]>,
}

impl Welcome {
    pub fn new(report: &ServerParamsReport) -> Welcome {
        let mut fixed = BytesMut::with_capacity(512);
        backend::put_auth_ok(&mut fixed);
        for (name, value) in &report.all {
            if params::canonical_name(name).is_none() {
                backend::put_parameter_status(&mut fixed, name, value);
            }
        }
        Welcome {
            tracked: report.tracked.clone(),
            fixed: fixed.to_vec().into_boxed_slice(),
        }
    }

    /// The whole welcome for a client whose settings are `client` (already filled
    /// from `tracked`) and whose cancel key is `cancel_key`.
    pub fn encode(&self, client: &ParamSet, cancel_key: (i32, i32), out: &mut BytesMut) {
        out.extend_from_slice(&self.fixed);
        for (name, value) in client.iter() {
            backend::put_parameter_status(out, name, value);
        }
        backend::put_backend_key_data(out, cancel_key.0, cancel_key.1);
        backend::put_ready_for_query(out, b'I');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::backend::parse_parameter_status;

    /// (tag, body) of each message in `bytes`.
    fn messages(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
            out.push((bytes[0], bytes[5..1 + len].to_vec()));
            bytes = &bytes[1 + len..];
        }
        out
    }

    #[test]
    fn sends_the_clients_tracked_values_and_the_servers_others() {
        let mut report = ServerParamsReport::default();
        report.set("server_version", "15.8");
        report.set("TimeZone", "UTC");
        report.set("client_encoding", "UTF8");
        let welcome = Welcome::new(&report);

        let mut client = ParamSet::default();
        client.set("TimeZone", "Asia/Tokyo");
        client.fill_from(&welcome.tracked);
        let mut out = BytesMut::new();
        welcome.encode(&client, (7, 9), &mut out);

        let msgs = messages(&out);
        assert_eq!(msgs.first().unwrap(), &(b'R', vec![0, 0, 0, 0]));
        let mut statuses: Vec<(String, String)> = msgs
            .iter()
            .filter(|(tag, _)| *tag == b'S')
            .map(|(_, body)| {
                let (n, v) = parse_parameter_status(body).unwrap();
                (n.to_owned(), v.to_owned())
            })
            .collect();
        statuses.sort();
        assert_eq!(
            statuses,
            [
                ("TimeZone".into(), "Asia/Tokyo".into()),
                ("client_encoding".into(), "UTF8".into()),
                ("server_version".into(), "15.8".into()),
            ]
        );
        let key = msgs.iter().find(|(tag, _)| *tag == b'K').unwrap();
        assert_eq!(key.1, [0, 0, 0, 7, 0, 0, 0, 9]);
        assert_eq!(msgs.last().unwrap(), &(b'Z', vec![b'I']));
    }
}
