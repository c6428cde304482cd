//! Authentication: the secrets of `auth_file`, the md5 and SCRAM-SHA-256 exchanges
//! (both the pooler-as-server side facing clients and the pooler-as-client side facing
//! PostgreSQL), and constant-time comparisons.

pub mod client;
pub mod compare;
pub mod hba;
pub mod ident;
pub mod md5;
pub mod pam;
pub mod scram;
pub mod secret;

pub use secret::{ScramVerifier, Secret};
