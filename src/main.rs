use clap::Parser;
use jitgate::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    jitgate::telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(jitgate::app::run(args.into())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "jitgate cannot start");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => {
            let now = args.now.unwrap_or_else(jiff::Timestamp::now);
            match jitgate::check::check(&args.request, &args.policies, &args.approvals_file, now) {
                Ok((json, allowed)) => {
                    println!("{json}");
                    ExitCode::from(if allowed { 0 } else { 1 })
                }
                Err(e) => {
                    eprintln!("jitgate check: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
