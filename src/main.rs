use std::process::ExitCode;

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = jitgate::cli::parse();
    let _logs = jitgate::telemetry::init(cli.log_format, cli.audience());
    jitgate::cli::run(cli)
}
