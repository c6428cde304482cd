//! Sockets: the listeners clients connect to, one stream type that is TCP, a
//! Unix socket or TLS over TCP, for clients and servers alike, the TLS
//! settings for clients, and the TCP socket options.

pub mod listener;
pub mod stream;
pub mod tls;
pub mod tuning;

pub use stream::Stream;
