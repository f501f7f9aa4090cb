//! `jitgate request | approve | revoke | list | show`: the approvals ledger through the API
//! server, so every change passes the ledger guard as the user the API server
//! authenticated. Changes are merge patches carrying the resourceVersion they were computed
//! from (the API server refuses them with 409 if the ConfigMap changed meanwhile); on a
//! conflict the ConfigMap is read again and the change recomputed.
//!
//! - `client`: the API server as the ledger sees it (who am I, the entries, the
//!   policies and signers, a change with its resourceVersion);
//! - `verbs`: each command;
//! - `render`: how entries, times and scopes are written for people;
//! - `drafts`: a request's entries, from flags or a file.

mod client;
mod drafts;
mod render;
mod verbs;

use super::{InboxArgs, LedgerArgs, ListArgs, RequestArgs, WaitArgs};
use client::ApprovalsApi;
use std::process::ExitCode;

/// Times a change is recomputed after a conflict before giving up.
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API server refused: the ledger guard's or RBAC's words, as they were written.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Api(String),
    /// `approve --pin`: the entry's terms changed since they were shown; nothing was
    /// approved.
    #[error("{0}")]
    Changed(String),
    /// What was waited for ended otherwise than approved: exit with `code`.
    #[error("{message}")]
    Ended { code: u8, message: String },
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Refused(_) | CliError::Changed(_) => ExitCode::from(1),
            CliError::Ended { code, .. } => ExitCode::from(*code),
            _ => ExitCode::from(2),
        }
    }
}

fn api_error(e: kube::Error) -> CliError {
    match e {
        kube::Error::Api(status) if status.is_forbidden() || status.is_invalid() => {
            CliError::Refused(status.message)
        }
        kube::Error::Api(status) => CliError::Api(status.message),
        other => CliError::Api(other.to_string()),
    }
}

pub enum Verb {
    Request(Box<RequestArgs>),
    /// The entry, and the pin it must still match.
    Approve(String, Option<String>),
    Revoke(String),
    List(ListArgs),
    Show(String),
    Inbox(InboxArgs),
    Wait(WaitArgs),
    Export(String),
    Import(super::EntryFile),
}

/// Runs one verb and reports as a command-line tool does: output on stdout, errors on
/// stderr, exit status 0 done, 1 refused by the API server, 2 anything else.
pub fn run(ledger: LedgerArgs, verb: Verb) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jitgate: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let ledger = ApprovalsApi::connect(ledger).await?;
        match verb {
            Verb::Request(args) => ledger.request(*args).await,
            Verb::Approve(id, pin) => ledger.approve(&id, pin.as_deref()).await,
            Verb::Revoke(id) => ledger.revoke(&id).await,
            Verb::List(args) => ledger.list(args).await,
            Verb::Show(id) => ledger.show(&id).await,
            Verb::Inbox(args) => ledger.inbox(args).await,
            Verb::Wait(args) => ledger.wait(args).await,
            Verb::Export(id) => ledger.export(&id).await,
            Verb::Import(file) => ledger.import(&file).await,
        }
    });
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jitgate: {e}");
            e.exit_code()
        }
    }
}
