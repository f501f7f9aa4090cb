//! Runs a parsed command line: `serve`, and the commands people type.

use super::approvals::Verb;
use super::{Cli, Command, Manifest};
use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

/// How long `serve`, once it has stopped, waits for blocked tasks before it exits.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs one command and says how it ended.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => {
            crate::memory::configure();
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            let ended = runtime.block_on(crate::app::run(args.into()));
            // A task still blocked (a grant record waiting on a stuck audit trail) does not
            // keep the process from ending.
            runtime.shutdown_timeout(SHUTDOWN_WAIT);
            match ended {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "jitgate cannot start");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Notify(super::NotifyCommand::Test { config, to }) => notify_test(&config, to.as_deref()),
        Command::Certs(args) => {
            let mut names = crate::tls::service_names(&args.target.service, &args.target.namespace);
            names.extend(args.san.iter().cloned());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            match crate::tls::write_pair(&args.out, &names, args.days, args.force) {
                Ok(generated) => {
                    use base64::Engine;
                    let dir = args.out.display();
                    eprintln!(
                        "wrote {dir}/ca.crt, {dir}/tls.crt and {dir}/tls.key (ECDSA P-256, {} days) for {}",
                        args.days,
                        names.join(", ")
                    );
                    eprintln!(
                        "next: kubectl -n {ns} create secret tls jitgate-tls --cert={dir}/tls.crt --key={dir}/tls.key
                               and set clientConfig.caBundle of every webhook of the ValidatingWebhookConfiguration to the line below (README, \"Install\")",
                        ns = args.target.namespace
                    );
                    println!(
                        "{}",
                        base64::engine::general_purpose::STANDARD.encode(generated.ca_pem)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("jitgate certs: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Manifests(args) => {
            let target = crate::manifests::Service {
                service: &args.target.service,
                namespace: &args.target.namespace,
            };
            let rendered = match args.what {
                Manifest::Webhook => crate::sync::policies::load_dir(&args.policies)
                    .map(|policies| crate::manifests::webhook_yaml(&policies, &target))
                    .map_err(|e| e.to_string()),
                Manifest::Policies => {
                    crate::manifests::policies_configmap_yaml(&args.policies, &args.target.namespace)
                        .map_err(|e| e.to_string())
                }
                Manifest::Authorization => crate::sync::policies::load_dir(&args.policies)
                    .map(|policies| crate::manifests::authorization::yaml(&policies, &args.target.namespace))
                    .map_err(|e| e.to_string()),
                Manifest::Grants => match crate::sync::policies::load_dir(&args.policies) {
                    Ok(policies) => crate::manifests::grants::yaml(&policies, &args.target.namespace)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
            };
            match rendered {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("jitgate manifests: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Audit(command) => crate::cli::audit::run(command),
        Command::Request(args) => {
            crate::cli::approvals::run(args.ledger.clone(), Verb::Request(Box::new(args)))
        }
        Command::Approve(a) => crate::cli::approvals::run(a.ledger, Verb::Approve(a.id, a.pin)),
        Command::Revoke(a) => crate::cli::approvals::run(a.ledger, Verb::Revoke(a.id)),
        Command::Show(a) => crate::cli::approvals::run(a.ledger, Verb::Show(a.id)),
        Command::Inbox(a) => crate::cli::approvals::run(a.ledger.clone(), Verb::Inbox(a)),
        Command::Wait(a) => crate::cli::approvals::run(a.ledger.clone(), Verb::Wait(a)),
        Command::List(args) => crate::cli::approvals::run(args.ledger.clone(), Verb::List(args)),
        Command::Export(a) => crate::cli::approvals::run(a.ledger, Verb::Export(a.id)),
        Command::Import(a) => crate::cli::approvals::run(a.ledger.clone(), Verb::Import(a.entry)),
        Command::Keys(command) => crate::cli::offline::keys(command),
        Command::Sign(args) => crate::cli::offline::sign(args),
        Command::VerifyEntry(args) => crate::cli::offline::verify(args),
        Command::Check(args) => {
            let now = args.now.unwrap_or_else(jiff::Timestamp::now);
            match crate::check::check(
                &args.request,
                &args.policies,
                &args.approvals_file,
                &args.signers_file,
                &args.cluster_id,
                now,
            ) {
                Ok(checked) => {
                    println!("{}", checked.json);
                    match &checked.change {
                        Some(c) => eprintln!("change: {} ({})", c.fingerprint, c.summary()),
                        None if checked.read => {}
                        None => eprintln!("change: none (the review lacks the objects it needs)"),
                    }
                    ExitCode::from(if checked.allowed { 0 } else { 1 })
                }
                Err(e) => {
                    eprintln!("jitgate check: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Parses the command line. Installed as `kubectl-jitgate`, the binary is a kubectl plugin,
/// and its help says `kubectl jitgate`.
pub fn parse() -> Cli {
    let command = Cli::command().bin_name(crate::program::name());
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `jitgate notify test`: what each sink answered, one line each.
fn notify_test(path: &std::path::Path, to: Option<&str>) -> ExitCode {
    let config = match crate::notices::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jitgate notify test: {e}");
            return ExitCode::from(2);
        }
    };
    if config.sinks.is_empty() {
        eprintln!("jitgate notify test: the file names no sinks");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jitgate notify test: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let results = runtime.block_on(crate::notices::test(&config, to));
    let mut failed = false;
    for (sink, result) in results {
        match result {
            Ok(answer) => println!("{sink}: sent ({answer})"),
            Err(why) => {
                failed = true;
                println!("{sink}: failed: {why}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
