//! `jitgate audit verify` and `jitgate audit query`.

use super::{AuditCommand, QueryArgs, ReportArgs, ReportFormat};
use crate::audit::anchor;
use crate::audit::read::{self, Filter, Summary};
use crate::audit::report::Reporter;
use crate::audit::verify::Verifier;
use std::io::Write;
use std::process::ExitCode;

pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify {
            files,
            partial,
            anchors,
        } => verify(&files, partial, anchors.as_deref()),
        AuditCommand::Query(args) => query(args),
        AuditCommand::Report(args) => report(args),
    }
}

fn report(args: ReportArgs) -> ExitCode {
    let mut reporter = Reporter::new(Filter {
        user: args.user,
        policy: args.policy,
        namespace: args.namespace,
        since: args.since,
        until: args.until,
        ..Filter::default()
    });
    for file in &args.files {
        let read = if file.as_os_str() == "-" {
            reporter.read(std::io::stdin().lock())
        } else {
            std::fs::File::open(file).and_then(|f| reporter.read(f))
        };
        if let Err(e) = read {
            eprintln!("jitgate audit report: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    }
    let report = reporter.finish();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let _ = match args.format {
        ReportFormat::Text => out.write_all(report.text().as_bytes()),
        ReportFormat::Csv => out.write_all(report.csv().as_bytes()),
        // Straight to stdout: the JSON of a large report is larger than the report.
        ReportFormat::Json => report.write_json(&mut out),
    };
    let _ = out.flush();
    ExitCode::SUCCESS
}

fn verify(files: &[std::path::PathBuf], partial: bool, anchors: Option<&std::path::Path>) -> ExitCode {
    let mut verifier = match anchors {
        None => Verifier::default(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| anchor::parse(&text).map_err(|e| e.to_string()))
        {
            Ok(anchors) => Verifier::with_anchors(anchors),
            Err(e) => {
                eprintln!("jitgate audit verify: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    for file in files {
        if let Err(e) = verifier.read_path(file) {
            eprintln!("jitgate audit verify: {e}");
            return ExitCode::from(2);
        }
    }
    let verdict = verifier.finish(partial);
    print!("{}", verdict.render());
    if verdict.intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
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
