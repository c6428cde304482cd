//! Running one parsed command for one console user: the permission check,
//! PgBouncer's argument checks, the call into the control core, and the reply.
//!
//! Errors use PgBouncer's wording and its SQLSTATE 08P01 (it sends that code
//! for every console error) unless noted.

use std::sync::Arc;

use crate::config::databases::RESERVED_NAMES;
use crate::control::{self, ShutdownMode};
use crate::shared::Shared;

use super::command::{Command, Show};
use super::params;
use super::result::ResultSet;
use super::show;
use super::Role;

/// PgBouncer's code for console errors (protocol_violation).
pub const CONSOLE_ERROR: &str = "08P01";
/// PgBouncer's code for a failed RELOAD (config_file_error).
const RELOAD_FAILED: &str = "F0000";
/// For the commands PgBouncer 1.26 no longer has (feature_not_supported).
const NOT_SUPPORTED: &str = "0A000";

/// An error to send as ErrorResponse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminError {
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
}

impl AdminError {
    pub fn new(message: impl Into<String>) -> AdminError {
        AdminError {
            code: CONSOLE_ERROR,
            message: message.into(),
            detail: None,
        }
    }

    fn with_detail(mut self, detail: impl Into<String>) -> AdminError {
        self.detail = Some(detail.into());
        self
    }

    /// `invalid command '<query>', use SHOW HELP;`
    pub fn invalid_command(query: &str) -> AdminError {
        AdminError::new(format!("invalid command '{query}', use SHOW HELP;"))
    }
}

/// What a command answers.
#[derive(Debug)]
pub enum Reply {
    /// Rows, then CommandComplete "SHOW".
    Rows(ResultSet),
    /// A NoticeResponse, then CommandComplete with `tag`.
    Notice {
        message: &'static str,
        detail: Option<&'static str>,
        tag: &'static str,
    },
    /// CommandComplete with this tag only.
    Done(String),
    Error(AdminError),
    /// SHUTDOWN (immediate): answer nothing, close the connection.
    Hangup,
}

/// The commands SHOW HELP lists, laid out as PgBouncer's (without SHOW FDS and
/// SUSPEND, which PgBouncer 1.26 removed).
pub const HELP: &str = "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n\
\tSHOW PEERS|PEER_POOLS\n\
\tSHOW SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n\
\tSHOW DNS_HOSTS|DNS_ZONES\n\
\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n\
\tSET key = arg\n\
\tRELOAD\n\
\tPAUSE [<db>]\n\
\tRESUME [<db>]\n\
\tDISABLE <db>\n\
\tENABLE <db>\n\
\tRECONNECT [<db>]\n\
\tKILL [<db>]\n\
\tKILL_CLIENT <client_id>\n\
\tSHUTDOWN\n\
\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n\
\tWAIT_CLOSE [<db>]";

/// One console session's identity.
pub struct Console {
    pub shared: Arc<Shared>,
    pub role: Role,
    pub user: String,
}

fn admin_needed() -> Reply {
    Reply::Error(AdminError::new("admin access needed"))
}

/// PgBouncer's own database cannot be paused, killed and so on; here both
/// console names are it.
fn refuse_admin_db(db: Option<&str>, verb: &str) -> Option<Reply> {
    let db = db?;
    RESERVED_NAMES
        .contains(&db)
        .then(|| Reply::Error(AdminError::new(format!("cannot {verb} admin db: {db}"))))
}

fn control_result(result: Result<(), control::ControlError>, tag: &str) -> Reply {
    match result {
        Ok(()) => Reply::Done(tag.to_string()),
        Err(e) => Reply::Error(AdminError::new(e.to_string())),
    }
}

impl Console {
    /// Run `cmd`. Only PAUSE and WAIT_CLOSE wait (for servers to be released).
    pub async fn run(&self, cmd: Command) -> Reply {
        let shared = &self.shared;
        let admin = self.role == Role::Admin;
        // Every command below SHOW and SET needs an admin; PgBouncer checks that
        // before looking at the arguments.
        let needs_admin = !matches!(
            cmd,
            Command::Show(_) | Command::ShowParam(_) | Command::Set { .. } | Command::Suspend
        );
        if needs_admin && !admin {
            return admin_needed();
        }
        let tag = cmd.tag();
        match cmd {
            Command::Show(Show::Fds) | Command::Suspend => Reply::Error(AdminError {
                code: NOT_SUPPORTED,
                message: format!(
                    "{} is not supported",
                    if tag == "SHOW" { "SHOW FDS" } else { tag }
                ),
                detail: Some(
                    "SUSPEND and SHOW FDS served online restart, which PgBouncer 1.26 removed; \
                     restart without downtime by running a second process with so_reuseport"
                        .to_string(),
                ),
            }),
            Command::Show(Show::Help) => Reply::Notice {
                message: "Console usage",
                detail: Some(HELP),
                tag: "SHOW",
            },
            Command::Show(what) => match show::show(shared, what) {
                Some(rows) => Reply::Rows(rows),
                None => Reply::Error(AdminError::invalid_command(what.name())),
            },
            Command::ShowParam(param) => Reply::Rows(show::param_rows(param)),
            Command::Set { key, value } => self.set(&key, &value),
            Command::Pause(db) => {
                if let Some(refusal) = refuse_admin_db(db.as_deref(), "pause") {
                    return refusal;
                }
                control_result(control::pause(shared, db.as_deref()).await, tag)
            }
            Command::Resume(db) => control_result(control::resume(shared, db.as_deref()), tag),
            Command::Reconnect(db) => {
                if let Some(refusal) = refuse_admin_db(db.as_deref(), "reconnect") {
                    return refusal;
                }
                control_result(control::reconnect(shared, db.as_deref()), tag)
            }
            Command::WaitClose(db) => {
                if let Some(refusal) = refuse_admin_db(db.as_deref(), "wait in") {
                    return refusal;
                }
                control_result(control::wait_close(shared, db.as_deref()).await, tag)
            }
            Command::Disable(db) => {
                let Some(db) = db else {
                    return Reply::Error(AdminError::new("a database is required"));
                };
                if let Some(refusal) = refuse_admin_db(Some(&db), "disable") {
                    return refusal;
                }
                control_result(control::disable(shared, &db), tag)
            }
            Command::Enable(db) => {
                let Some(db) = db else {
                    return Reply::Error(AdminError::new("a database is required"));
                };
                if let Some(refusal) = refuse_admin_db(Some(&db), "enable") {
                    return refusal;
                }
                control_result(control::enable(shared, &db), tag)
            }
            Command::Kill(db) => {
                if let Some(refusal) = refuse_admin_db(db.as_deref(), "kill") {
                    return refusal;
                }
                control_result(control::kill(shared, db.as_deref()), tag)
            }
            Command::KillClient(id) => match id.parse::<u64>() {
                Ok(id) => control_result(control::kill_client(shared, id), tag),
                Err(_) => Reply::Error(AdminError::new("invalid client pointer supplied")),
            },
            Command::Reload => match control::reload(shared) {
                Ok(()) => Reply::Done(tag.to_string()),
                Err(e) => {
                    log::error!("RELOAD from the admin console failed: {e}");
                    Reply::Error(AdminError {
                        code: RELOAD_FAILED,
                        message: "RELOAD failed, see logs for additional details".to_string(),
                        detail: Some(e.to_string()),
                    })
                }
            },
            Command::Shutdown(mode) => {
                log::info!(
                    "SHUTDOWN {mode:?} requested on the admin console by {}",
                    self.user
                );
                control::shutdown(shared, mode);
                if mode == ShutdownMode::Now {
                    // PgBouncer does not answer either: the process exits under the
                    // client, which sees the connection close.
                    Reply::Hangup
                } else {
                    Reply::Done(tag.to_string())
                }
            }
        }
    }

    /// SET: the faked settings are accepted from anyone and ignored (with
    /// PgBouncer's notice); real settings need an admin.
    fn set(&self, key: &str, value: &str) -> Reply {
        if params::find(key).is_some() {
            return Reply::Notice {
                message: "SET ignored",
                detail: None,
                tag: "SET",
            };
        }
        if self.role != Role::Admin {
            return admin_needed();
        }
        match control::set(&self.shared, key, value) {
            // PgBouncer's tag echoes the setting as it was given.
            Ok(()) => Reply::Done(format!("SET {key}={value}")),
            Err(e) => Reply::Error(AdminError::new("SET failed").with_detail(e.to_string())),
        }
    }
}
