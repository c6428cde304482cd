//! Sockets: the listeners clients connect to, and one stream type that is either
//! TCP or a Unix socket, for clients and servers alike.

pub mod listener;
pub mod stream;

pub use stream::Stream;
