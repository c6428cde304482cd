//! `auth_type = pam`: the password a client sends in the clear is checked by PAM under
//! PgBouncer's service name, `pgbouncer`, so an `/etc/pam.d/pgbouncer` written for
//! PgBouncer applies unchanged. A PAM call blocks (a module may ask a directory server,
//! or sleep after a wrong password), so the checks run on a thread of their own, one at
//! a time, as PgBouncer runs them; logins wait for it in turn.
//!
//! The C declarations come from `pam-sys`; the conversation function that answers
//! PAM's prompts, and the handle's lifetime, are here.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};

use pam_sys::raw::{pam_acct_mgmt, pam_authenticate, pam_end, pam_set_item, pam_strerror};
use pam_sys::{PamConversation, PamHandle, PamItemType, PamMessage, PamMessageStyle, PamResponse};
use tokio::sync::oneshot;

/// The PAM service name, PgBouncer's.
pub const SERVICE: &str = "pgbouncer";

/// Read the service's file from this directory instead of `/etc/pam.d` (Linux-PAM's
/// `pam_start_confdir`): to try a PAM stack before installing it, and for the tests.
pub const CONFDIR_ENV: &str = "PGSLUICE_PAM_CONFDIR";

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
/// Modules are not to print anything: there is no terminal.
const PAM_SILENT: c_int = 0x8000;

extern "C" {
    /// Linux-PAM 1.4 and later; `pam-sys` predates it.
    fn pam_start_confdir(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConversation,
        confdir: *const c_char,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
}

/// Why PAM did not let a user in, for the log: the step that failed and PAM's
/// words (`pam_authenticate() failed: Authentication failure`), as PgBouncer logs it.
/// The client is told only that PAM authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PamError(pub String);

struct Request {
    user: String,
    password: String,
    remote: Option<IpAddr>,
    answer: oneshot::Sender<Result<(), PamError>>,
}

/// The thread that runs PAM checks, started at the first one.
#[derive(Default)]
pub struct PamThread {
    queue: Mutex<Option<mpsc::Sender<Request>>>,
}

impl PamThread {
    /// Check `user`'s `password` (the client at `remote`, when on TCP, is PAM_RHOST).
    pub async fn check(
        &self,
        user: &str,
        password: &str,
        remote: Option<IpAddr>,
    ) -> Result<(), PamError> {
        let (answer, answered) = oneshot::channel();
        let request = Request {
            user: user.to_owned(),
            password: password.to_owned(),
            remote,
            answer,
        };
        self.send(request)?;
        answered
            .await
            .unwrap_or_else(|_| Err(PamError("the PAM thread stopped".into())))
    }

    fn send(&self, request: Request) -> Result<(), PamError> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.is_none() {
            let (sender, requests) = mpsc::channel();
            let confdir = std::env::var_os(CONFDIR_ENV).map(PathBuf::from);
            std::thread::Builder::new()
                .name("pgsluice-pam".into())
                .spawn(move || serve(requests, confdir.as_deref()))
                .map_err(|e| PamError(format!("cannot start the PAM thread: {e}")))?;
            *queue = Some(sender);
        }
        let sender = queue.as_ref().expect("started above");
        sender
            .send(request)
            .map_err(|_| PamError("the PAM thread stopped".into()))
    }
}

fn serve(requests: mpsc::Receiver<Request>, confdir: Option<&Path>) {
    for request in requests {
        // A client that gave up (client_login_timeout, or gone) needs no answer.
        if request.answer.is_closed() {
            continue;
        }
        let outcome = authenticate(confdir, &request.user, &request.password, request.remote);
        let _ = request.answer.send(outcome);
    }
}

/// What the conversation function answers with.
struct Answers {
    user: CString,
    password: CString,
}

/// One PAM transaction: start, set PAM_RHOST, authenticate, check the account, end.
fn authenticate(
    confdir: Option<&Path>,
    user: &str,
    password: &str,
    remote: Option<IpAddr>,
) -> Result<(), PamError> {
    let nul = |what: &str| PamError(format!("the {what} contains a NUL byte"));
    let answers = Answers {
        user: CString::new(user).map_err(|_| nul("user name"))?,
        password: CString::new(password).map_err(|_| nul("password"))?,
    };
    let service = CString::new(SERVICE).expect("no NUL");
    let confdir = confdir
        .map(|dir| CString::new(dir.as_os_str().as_encoded_bytes()))
        .transpose()
        .map_err(|_| PamError(format!("{CONFDIR_ENV} contains a NUL byte")))?;
    let conversation = PamConversation {
        conv: Some(converse),
        data_ptr: &answers as *const Answers as *mut c_void,
    };
    let mut handle: *mut PamHandle = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `answers` and `conversation`
    // outlive the handle, which is ended below before they are dropped.
    let started = unsafe {
        pam_start_confdir(
            service.as_ptr(),
            answers.user.as_ptr(),
            &conversation,
            confdir
                .as_ref()
                .map_or(std::ptr::null(), |dir| dir.as_ptr()),
            &mut handle,
        )
    };
    if started != PAM_SUCCESS || handle.is_null() {
        return Err(PamError(format!("pam_start() failed: error {started}")));
    }
    let steps = || -> Result<(), PamError> {
        if let Some(remote) = remote {
            let rhost = CString::new(remote.to_string()).expect("no NUL in an address");
            // SAFETY: a live handle; PAM copies the string.
            let set =
                unsafe { pam_set_item(handle, PamItemType::RHOST as c_int, rhost.as_ptr().cast()) };
            if set != PAM_SUCCESS {
                return Err(failed("pam_set_item(PAM_RHOST)", handle, set));
            }
        }
        // SAFETY: a live handle.
        let authenticated = unsafe { pam_authenticate(handle, PAM_SILENT) };
        if authenticated != PAM_SUCCESS {
            return Err(failed("pam_authenticate()", handle, authenticated));
        }
        // SAFETY: a live handle.
        let account = unsafe { pam_acct_mgmt(handle, PAM_SILENT) };
        if account != PAM_SUCCESS {
            return Err(failed("pam_acct_mgmt()", handle, account));
        }
        Ok(())
    };
    let outcome = steps();
    let last = match outcome {
        Ok(()) => PAM_SUCCESS,
        Err(_) => PAM_CONV_ERR,
    };
    // SAFETY: the handle pam_start gave, ended once.
    unsafe { pam_end(handle, last) };
    outcome
}

/// `step` failed with `status`, in PAM's words.
fn failed(step: &str, handle: *mut PamHandle, status: c_int) -> PamError {
    // SAFETY: a live handle; pam_strerror returns a static string.
    let text = unsafe { pam_strerror(handle, status) };
    let why = if text.is_null() {
        format!("error {status}")
    } else {
        // SAFETY: non-null, NUL-terminated, static.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    };
    PamError(format!("{step} failed: {why}"))
}

/// The conversation function: the password for a hidden prompt, the user name for a
/// visible one, nothing for PAM's messages. PAM frees the answers with `free`, so they
/// are allocated with `malloc`.
extern "C" fn converse(
    count: c_int,
    messages: *mut *mut PamMessage,
    responses: *mut *mut PamResponse,
    data: *mut c_void,
) -> c_int {
    let Ok(count) = usize::try_from(count) else {
        return PAM_CONV_ERR;
    };
    if count == 0 || messages.is_null() || responses.is_null() || data.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: `data` is the `Answers` given to pam_start, alive for the handle.
    let answers = unsafe { &*(data as *const Answers) };
    // SAFETY: calloc of `count` zeroed responses; PAM takes them over on success.
    let replies =
        unsafe { nix::libc::calloc(count, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..count {
        // SAFETY: Linux-PAM passes an array of `count` message pointers.
        let message = unsafe { &**messages.add(i) };
        let answer = match PamMessageStyle::from(message.msg_style) {
            PamMessageStyle::PROMPT_ECHO_OFF => Some(&answers.password),
            PamMessageStyle::PROMPT_ECHO_ON => Some(&answers.user),
            PamMessageStyle::ERROR_MSG | PamMessageStyle::TEXT_INFO => None,
        };
        if let Some(answer) = answer {
            // SAFETY: strdup of a valid C string; freed by PAM (or below).
            let copy = unsafe { nix::libc::strdup(answer.as_ptr()) };
            if copy.is_null() {
                free_replies(replies, i);
                return PAM_BUF_ERR;
            }
            // SAFETY: `i < count`, inside the calloc'ed array.
            unsafe { (*replies.add(i)).resp = copy };
        }
    }
    // SAFETY: `responses` is PAM's out pointer.
    unsafe { *responses = replies };
    PAM_SUCCESS
}

/// Free the first `filled` answers and the array, when the conversation fails halfway.
fn free_replies(replies: *mut PamResponse, filled: usize) {
    for i in 0..filled {
        // SAFETY: inside the array; each `resp` is null or from strdup.
        unsafe { nix::libc::free((*replies.add(i)).resp.cast()) };
    }
    // SAFETY: from calloc.
    unsafe { nix::libc::free(replies.cast()) };
}
