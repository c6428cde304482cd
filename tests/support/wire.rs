//! Bytes of the frontend protocol, built by hand, for tests that must send
//! exactly what they mean (including what no driver would send).

use md5::{Digest, Md5};

/// Protocol version 3.0, as a startup packet carries it.
pub const PROTOCOL_3_0: i32 = 196_608;
/// The "versions" of the startup-phase requests that are not a startup.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;

/// Append `s` and its terminating NUL.
pub fn put_cstr(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

/// One typed message: tag, length, body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(body.len() + 5);
    msg.push(tag);
    msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(body);
    msg
}

/// A startup packet of protocol `version` with these parameters, in order.
pub fn startup_packet(version: i32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (key, value) in params {
        put_cstr(&mut body, key);
        put_cstr(&mut body, value);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// A startup-phase request other than a startup: length, `code`, then `rest`
/// (a CancelRequest's process id and key).
pub fn special_request(code: i32, rest: &[u8]) -> Vec<u8> {
    let mut packet = ((8 + rest.len()) as i32).to_be_bytes().to_vec();
    packet.extend(code.to_be_bytes());
    packet.extend(rest);
    packet
}

/// An SSLRequest.
pub fn ssl_request() -> Vec<u8> {
    special_request(SSL_REQUEST_CODE, b"")
}

/// The answer to an md5 password request: `md5` and the hex md5 of the hex
/// md5 of password and user name, followed by the salt.
pub fn md5_password_response(user: &str, password: &str, salt: &[u8]) -> String {
    let inner = hex_md5(&[password.as_bytes(), user.as_bytes()]);
    format!("md5{}", hex_md5(&[inner.as_bytes(), salt]))
}

fn hex_md5(parts: &[&[u8]]) -> String {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    format!("{:x}", hasher.finalize())
}
