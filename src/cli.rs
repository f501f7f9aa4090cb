//! Command-line interface. Every `serve` flag can also be set by an environment variable
//! `JITGATE_*`, which is how the Deployment configures it.

use crate::app::ServeConfig;
use crate::tls;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "jitgate",
    version,
    about = "Kubernetes admission webhook: gated actions need a live, just-in-time approval"
)]
pub struct Cli {
    /// Log format (logs go to stderr; decision records to stdout).
    #[arg(long, env = "JITGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the webhook over HTTPS (POST /validate, GET /healthz, GET /readyz).
    Serve(ServeArgs),
    /// Decide one AdmissionReview offline and print the response review.
    /// Exit status: 0 allowed, 1 denied, 2 error.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "JITGATE_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Serving certificate chain (PEM). With the default paths, a development CA and
    /// certificate are generated in certs-dev/ when absent.
    #[arg(long, env = "JITGATE_TLS_CERT", default_value = tls::DEV_CERT)]
    pub tls_cert: PathBuf,
    /// Serving private key (PEM).
    #[arg(long, env = "JITGATE_TLS_KEY", default_value = tls::DEV_KEY)]
    pub tls_key: PathBuf,
    /// Directory of GatePolicy YAML files.
    #[arg(
        long = "policies",
        value_name = "DIR",
        env = "JITGATE_POLICIES",
        default_value = "policies"
    )]
    pub policies: PathBuf,
    /// Approvals ConfigMap manifest(s), watched for changes.
    #[arg(
        long,
        value_name = "PATH",
        env = "JITGATE_APPROVALS_FILE",
        default_value = "manifests/approvals.yaml"
    )]
    pub approvals_file: PathBuf,
    /// Also append decision records (JSON lines) to this file.
    #[arg(long, value_name = "PATH", env = "JITGATE_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
}

impl From<ServeArgs> for ServeConfig {
    fn from(a: ServeArgs) -> Self {
        ServeConfig {
            listen: a.listen,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            policies_dir: a.policies,
            approvals_file: a.approvals_file,
            audit_log: a.audit_log,
            records_to_stdout: true,
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// AdmissionReview JSON file, as the API server would send it.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// Directory of GatePolicy YAML files.
    #[arg(long = "policies", value_name = "DIR", default_value = "policies")]
    pub policies: PathBuf,
    /// Approvals ConfigMap manifest(s).
    #[arg(long, value_name = "PATH", default_value = "manifests/approvals.yaml")]
    pub approvals_file: PathBuf,
    /// Decide as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<jiff::Timestamp>,
}
