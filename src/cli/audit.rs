//! `jitgate audit verify` and `jitgate audit query`.

use super::{AuditCommand, QueryArgs};
use crate::audit::read::{self, Filter, ReadError, Summary};
use std::io::Write;
use std::process::ExitCode;

pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify { files, partial } => verify(&files, partial),
        AuditCommand::Query(args) => query(args),
    }
}

fn verify(files: &[std::path::PathBuf], partial: bool) -> ExitCode {
    match read::verify(files, partial) {
        Ok(v) => {
            println!(
                "ok: {} records, seq {}..{}, in {} file(s); last hash {}",
                v.records,
                v.first_seq,
                v.last.seq,
                v.files.len(),
                v.last.hash
            );
            if v.first_seq > 1 {
                println!(
                    "note: the chain starts at seq {}; earlier records are not in these files",
                    v.first_seq
                );
            }
            ExitCode::SUCCESS
        }
        Err(e @ ReadError::Headless { .. }) => {
            println!("BROKEN at {e}");
            ExitCode::from(1)
        }
        Err(e @ ReadError::Broken { .. }) => {
            let seq = match &e {
                ReadError::Broken { seq: Some(s), .. } => format!(" (record seq {s})"),
                _ => String::new(),
            };
            println!("BROKEN at {e}{seq}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("jitgate audit verify: {e}");
            ExitCode::from(2)
        }
    }
}

fn query(args: QueryArgs) -> ExitCode {
    let filter = Filter {
        user: args.user,
        policy: args.policy,
        decision: args.decision,
        reason: args.reason,
        namespace: args.namespace,
        seq: args.seq,
        since: args.since,
        until: args.until,
    };
    let mut summary = Summary::default();
    let mut out = std::io::stdout().lock();
    let result = read::query(&args.files, &filter, |line, record| {
        if args.summary {
            summary.add(record);
        } else {
            let _ = out.write_all(line);
            let _ = out.write_all(b"\n");
        }
    });
    if let Err(e) = result {
        eprintln!("jitgate audit query: {e}");
        return ExitCode::from(2);
    }
    if args.summary {
        let _ = out.write_all(summary.render().as_bytes());
    }
    ExitCode::SUCCESS
}
