//! Writing stderr for the systemd journal.
//!
//! systemd connects a service's stderr to journald and says so with
//! `JOURNAL_STREAM=<device>:<inode>` of that stream. The variable is inherited
//! by children whose stderr may point elsewhere (a shell redirect), so we trust
//! it only when it matches our own stderr, as sd_journal_stream_fd(3) advises.
//!
//! journald reads a leading `<N>` as the syslog priority of the line and adds
//! its own timestamp, so lines carry the priority and no time.

use log::Level;

/// Whether our stderr is the stream `JOURNAL_STREAM` names.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match nix::sys::stat::fstat(nix::libc::STDERR_FILENO) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// The syslog priority of a level: err, warning, info, debug.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `<6>LOG message\n`; each line of a multi-line message gets the prefix, so
/// that journald keeps the priority for all of them.
pub fn line(level: Level, name: &str, message: &str) -> String {
    let prio = priority(level);
    let mut out = String::with_capacity(message.len() + 16);
    for (i, part) in message.split('\n').enumerate() {
        if i == 0 {
            out.push_str(&format!("<{prio}>{name} {part}\n"));
        } else {
            out.push_str(&format!("<{prio}>{part}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_priority() {
        assert_eq!(line(Level::Error, "ERROR", "boom"), "<3>ERROR boom\n");
        assert_eq!(line(Level::Info, "LOG", "a\nb"), "<6>LOG a\n<6>b\n");
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Trace), 7);
    }
}
