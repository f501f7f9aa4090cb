//! Command-line interface. Every `serve` flag can also be set by an environment variable
//! `JITGATE_*`, which is how the Deployment configures it.

use crate::app::ServeConfig;
use crate::sync::ClusterSource;
use crate::telemetry::LogFormat;
use crate::tls;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub mod approvals;
pub mod audit;
mod commands;
pub mod offline;

pub use commands::{parse, run};

#[derive(Debug, Parser)]
#[command(
    name = "jitgate",
    version,
    about = "Kubernetes admission webhook: gated actions need a live, just-in-time approval"
)]
pub struct Cli {
    /// Log format (logs go to stderr; decision records to stdout). Default: json for
    /// serve, text (warnings and errors, each once) for the commands people type.
    #[arg(long, env = "JITGATE_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Who reads this command's logs: a log pipeline for `serve`, a person otherwise.
    pub fn audience(&self) -> crate::telemetry::Audience {
        match self.command {
            Command::Serve(_) => crate::telemetry::Audience::Machines,
            _ => crate::telemetry::Audience::People,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the webhook over HTTPS (POST /validate, POST /authorize, GET /healthz,
    /// /readyz, /metrics).
    Serve(ServeArgs),
    /// Decide one AdmissionReview or SubjectAccessReview offline and print the response
    /// review. Exit status: 0 allowed (for a read: no opinion), 1 denied, 2 error.
    Check(CheckArgs),
    /// Make a CA and a serving certificate for the webhook Service, offline (for clusters
    /// without cert-manager). Prints the caBundle (base64 of ca.crt) on stdout.
    Certs(CertsArgs),
    /// Print manifests rendered from the policies.
    Manifests(ManifestsArgs),
    /// Check or search audit logs written with --audit-log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Ask for an approval: add a pending entry for yourself (or a group of yours) to the
    /// approvals ConfigMap, through the API server.
    Request(RequestArgs),
    /// Add your name to an entry's approvers (for a break-glass entry: review it). Prints
    /// the entry as approved. With --pin (the command `show` and `inbox` print), approves
    /// only if the entry's terms are still those shown.
    Approve(ApproveArgs),
    /// Remove an entry (the ledger allows this to its requester, its approvers, and those
    /// who may approve it).
    Revoke(IdArgs),
    /// List the approval entries as a table.
    List(ListArgs),
    /// Show one entry in full.
    Show(IdArgs),
    /// The requests you may approve (not your own, under the policies' approverGroups,
    /// not signed by you yet), oldest first.
    Inbox(InboxArgs),
    /// Wait until a request is approved (exit 0), refused: revoked or removed (exit 1),
    /// or expired (exit 2). For scripts: request, wait, act.
    Wait(WaitArgs),
    /// Print an entry as a one-key ConfigMap manifest, to carry to an approver who signs
    /// offline (jitgate sign), and back (kubectl jitgate import).
    Export(IdArgs),
    /// Add the signatures of a signed entry (jitgate sign's output) to the entry in the
    /// cluster, through the API server; the ledger checks each. Whoever carries it in.
    Import(ImportArgs),
    /// Offline approval keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Sign an approval entry offline with your own key (no network, no kubeconfig), and
    /// print it with your signature added.
    Sign(SignArgs),
    /// Say which signatures of an entry are valid, and whom they count for (offline).
    VerifyEntry(VerifyEntryArgs),
    /// Notifications (serve --notifications).
    #[command(subcommand)]
    Notify(NotifyCommand),
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send one sample message to each sink of a notifications file, once, and say what
    /// each answered. Exit status: 0 all sent, 1 some failed, 2 the file is not valid.
    Test {
        /// The notifications file, as `serve --notifications` reads it.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Where a mail sink sends its sample (default: its own from address).
        #[arg(long, value_name = "ADDRESS")]
        to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make an Ed25519 key pair: DIR/NAME.key (private, mode 0600) and DIR/NAME.pub (the
    /// public key line to publish); prints the entry an admin adds to the signers
    /// ConfigMap.
    New {
        /// Your signer name (as the signers ConfigMap will know you).
        #[arg(long)]
        name: String,
        /// Where to write the key files.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
}

/// An entry to sign or check: a one-key ConfigMap manifest (as export writes it), or the
/// entry's YAML alone with --id.
#[derive(Debug, Args)]
pub struct EntryFile {
    /// The entry: a ConfigMap manifest with one key, or the entry's YAML ("-": stdin).
    #[arg(short = 'f', long = "file", value_name = "ENTRY")]
    pub file: PathBuf,
    /// The entry's id, CONFIGMAP/KEY (or KEY, in jitgate-approvals), when the file holds
    /// the entry alone. A signature is bound to it.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

/// Where a signature is valid: one cluster, one approvals namespace.
#[derive(Debug, Args)]
pub struct BindingArgs {
    /// The cluster the signature is for: its id as jitgate knows it (serve --cluster-id,
    /// or the uid of its kube-system Namespace; the denial and export name it). Default:
    /// the one the exported entry names.
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
    /// The namespace of the approvals ConfigMaps. Default: the one the exported entry
    /// names, else jitgate-system.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Your private key, as jitgate keys new wrote it.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Your signer name (default: the key file's name without .key).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub binding: BindingArgs,
    /// For a for: entry, when your signature stops counting, whenever its clock starts
    /// (RFC 3339, or a duration from now such as 8h). Default: now + 24h (the default
    /// requestTTL) + the entry's for:. The ledger refuses one beyond now + its policies'
    /// requestTTL + maxDuration.
    #[arg(long, value_name = "TIME")]
    pub not_after: Option<String>,
    #[command(flatten)]
    pub entry: EntryFile,
}

#[derive(Debug, Args)]
pub struct VerifyEntryArgs {
    #[command(flatten)]
    pub entry: EntryFile,
    #[command(flatten)]
    pub binding: BindingArgs,
    /// The trusted signers (the ConfigMap manifest jitgate-signers, as in the cluster).
    #[arg(long, value_name = "FILE", default_value = "manifests/signers.yaml")]
    pub signers: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub entry: EntryFile,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Keep the inbox on screen, redrawn as the approvals ConfigMaps change.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The entry: KEY, or CONFIGMAP/KEY.
    pub id: String,
    /// Give up after this long (exit 3); default: until the request expires.
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_duration)]
    pub timeout: Option<jiff::SignedDuration>,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

/// How to reach the approvals ledger in the cluster.
#[derive(Debug, Clone, Args)]
pub struct LedgerArgs {
    /// kubeconfig to use (default: KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "PATH", env = "JITGATE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the approvals ConfigMaps.
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "JITGATE_APPROVALS_NAMESPACE",
        default_value = "jitgate-system"
    )]
    pub approvals_namespace: String,
    /// The approvals ConfigMap that requests go to.
    #[arg(long, value_name = "NAME", default_value = "jitgate-approvals")]
    pub configmap: String,
    /// The ConfigMap holding the policies, read for approver counts.
    #[arg(long, value_name = "NAME", default_value = "jitgate-policies")]
    pub policies_configmap: String,
    /// The cluster's id as jitgate knows it (its --cluster-id), for checking and
    /// exporting offline signatures. Default: the uid of the kube-system Namespace, when
    /// you may read it.
    #[arg(long, value_name = "ID", env = "JITGATE_CLUSTER_ID")]
    pub cluster_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Plural resource, optionally with a subresource: secrets, deployments/scale, pods/exec.
    #[arg(long, required_unless_present = "file")]
    pub resource: Option<String>,
    /// Namespace of the object (omit for cluster-scoped resources).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// The object's name (omit: any object of the resource in the namespace).
    #[arg(long)]
    pub name: Option<String>,
    /// API group of the resource ("" for the core group; omit: any group).
    #[arg(long)]
    pub api_group: Option<String>,
    /// CREATE, UPDATE, DELETE or CONNECT; repeat or separate with commas (omit both this
    /// and --verb: every gated operation and read).
    #[arg(long, value_delimiter = ',')]
    pub operation: Vec<String>,
    /// A read (get, list, watch) or impersonate; repeat or separate with commas. A list or watch has
    /// no name, so only an approval without --name covers it.
    #[arg(long, value_delimiter = ',')]
    pub verb: Vec<String>,
    /// Ask for a group you belong to rather than for yourself.
    #[arg(long)]
    pub group: Option<String>,
    /// Emergency: write a break-glass entry for yourself, usable at once without an
    /// approver, where a policy's breakGlass lists a group of yours. Every use is flagged,
    /// and an approver must review it afterwards.
    #[arg(long, conflicts_with = "group")]
    pub break_glass: bool,
    /// Allow at most this many requests (counted across all replicas).
    #[arg(long, value_name = "N")]
    pub max_uses: Option<std::num::NonZeroU32>,
    /// Pin the approval to exactly one change: the fingerprint a denial (or jitgate
    /// check) printed, sha256:….
    #[arg(long, value_name = "FINGERPRINT")]
    pub change: Option<String>,
    /// How long the approval should last, from now (or, with --once-approved, from the
    /// moment its last approver signs).
    #[arg(long = "for", value_name = "DURATION", default_value = "30m", value_parser = crate::duration::parse_duration)]
    pub duration: jiff::SignedDuration,
    /// Start the --for clock when the last approver signs (`for:` in the entry) rather
    /// than now: the time spent waiting for approval is not lost.
    #[arg(long)]
    pub once_approved: bool,
    /// Why you need it (a ticket or incident, and what you will do).
    #[arg(long, required_unless_present = "file")]
    pub reason: Option<String>,
    /// The entry a denial printed (KEY: | and the entry under it), saved to a file.
    #[arg(long, short = 'f', value_name = "FILE", conflicts_with_all = ["resource", "namespace", "name", "api_group", "operation", "verb", "group", "break_glass"])]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The entry: KEY, or CONFIGMAP/KEY.
    pub id: String,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The entry: KEY, or CONFIGMAP/KEY.
    pub id: String,
    /// The entry's pin, as `show` or `inbox` printed it: approve only if its terms (whom
    /// for, scope, reason, expiry, limits) are still exactly those, and refuse if they
    /// changed since (a request amended between your reading and your approval).
    #[arg(long, value_name = "PIN")]
    pub pin: Option<String>,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only entries short of approvers.
    #[arg(long)]
    pub pending: bool,
    /// Only approved, unexpired entries.
    #[arg(long)]
    pub active: bool,
    /// Only expired entries.
    #[arg(long)]
    pub expired: bool,
    /// Only break-glass entries (reviewed or not).
    #[arg(long)]
    pub break_glass: bool,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every chain of records in the given files and streams, each on its own: any
    /// mix, in any order (rotated files, `kubectl logs` of every pod, a log pipeline's
    /// export, `-` for stdin), with other log lines between records. Reports per chain its
    /// replica, first and last record, gaps and breaks.
    /// Exit status: 0 every chain intact, 1 a chain broken, cut short, missing or not
    /// anchored, 2 unreadable.
    Verify {
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Accept chains whose first records, or whose predecessor, are not given (older
        /// records archived elsewhere).
        #[arg(long)]
        partial: bool,
        /// The anchors ConfigMap (`kubectl -n jitgate-system get configmap jitgate-anchors
        /// -o yaml`, or -o json): every chain anchored must be present up to its anchored
        /// record, and every chain present must be anchored.
        #[arg(long, value_name = "FILE")]
        anchors: Option<PathBuf>,
    },
    /// Print the records that match every filter given, or a summary of them.
    Query(QueryArgs),
    /// Tell the story of every approval from the records (files, or `-` for stdin, as
    /// verify reads them): who requested it and why, who approved or signed it and when,
    /// what it allowed, every decision taken under it, and how it ended; then every denial
    /// that named no approval, break-glass entries with their review, and grants' records
    /// that named no approval. Run verify first: the report believes its records.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Only what this user did, requested or approved, and the grants bound to them.
    #[arg(long)]
    pub user: Option<String>,
    /// Only decisions of this policy, and approvals that one of them used.
    #[arg(long)]
    pub policy: Option<String>,
    /// Only this namespace (an approval's scope, a decision's object).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Records at or after this time: RFC 3339, or a duration ago such as 2h.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<jiff::Timestamp>,
    /// Records before this time: RFC 3339, or a duration ago such as 30m.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<jiff::Timestamp>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Requester of a decision, editor or requester of an approval change, or a subject of
    /// a grant's creation or of a RoleBinding found standing.
    #[arg(long)]
    pub user: Option<String>,
    /// A policy the decision names.
    #[arg(long)]
    pub policy: Option<String>,
    /// allow, deny, warn or dryrun.
    #[arg(long)]
    pub decision: Option<String>,
    /// A decision's reason code, such as no_approval or approved.
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub namespace: Option<String>,
    /// The record at this place in the chain: the `seq` that an admission response's
    /// `gate.jitgate.dev/record` audit annotation names in the API server's audit log.
    #[arg(long)]
    pub seq: Option<u64>,
    /// Records at or after this time: RFC 3339, or a duration ago such as 2h.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<jiff::Timestamp>,
    /// Records before this time: RFC 3339, or a duration ago such as 30m.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<jiff::Timestamp>,
    /// Print tables (decisions per policy, decision and reason; who approved what)
    /// instead of the records.
    #[arg(long)]
    pub summary: bool,
}

fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let ago = crate::duration::parse_duration(text)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a duration such as 2h"))?;
    jiff::Timestamp::now().checked_sub(ago).map_err(|e| e.to_string())
}

/// A time: RFC 3339, or a duration from `now` such as `8h`.
pub(crate) fn parse_time_ahead(text: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let ahead = crate::duration::parse_duration(text)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a duration such as 8h"))?;
    now.checked_add(ahead).map_err(|e| e.to_string())
}

/// A size such as `100Mi`, `1Gi`, `512Ki` or a number of bytes; `0` for no limit.
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 100Mi"))?;
    let scale: u64 = match unit {
        "" => 1,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        _ => return Err(format!("{text:?}: the unit must be Ki, Mi or Gi")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Where the webhook's Service lives.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The webhook's Service name.
    #[arg(long, default_value = "jitgate", global = true)]
    pub service: String,
    /// The webhook's namespace.
    #[arg(long, default_value = "jitgate-system", global = true)]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub target: ServiceArgs,
    /// Another name or IP address the certificate must hold, beside the Service's names:
    /// the address the API server's authorization webhook kubeconfig uses (a ClusterIP).
    /// Repeat for several.
    #[arg(long, value_name = "NAME|IP")]
    pub san: Vec<String>,
    /// Validity in days (CA and certificate).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Replace an existing tls.key in DIR.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ManifestsArgs {
    #[command(subcommand)]
    pub what: Manifest,
    /// Directory of GatePolicy YAML files.
    #[arg(
        long = "policies",
        value_name = "DIR",
        default_value = "policies",
        global = true
    )]
    pub policies: PathBuf,
    #[command(flatten)]
    pub target: ServiceArgs,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Manifest {
    /// The ValidatingWebhookConfiguration: every policy rule, and the approvals ConfigMaps.
    Webhook,
    /// The ConfigMap that carries the policy files into the cluster.
    Policies,
    /// The API server's AuthorizationConfiguration (--authorization-config) that sends
    /// jitgate the reads its policies gate, between the Node and RBAC authorizers.
    Authorization,
    /// What jitgate's service account needs for `serve --grants rbac`: the union of what
    /// policies with `grant: true` can grant, and managing Roles and RoleBindings, where
    /// those policies apply.
    Grants,
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
    /// Trusted signers of offline approvals (the ConfigMap manifest jitgate-signers),
    /// watched for changes. In cluster mode they come from the ConfigMap jitgate-signers
    /// in the approvals namespace instead (by its name; labels do not matter).
    #[arg(
        long,
        value_name = "PATH",
        env = "JITGATE_SIGNERS_FILE",
        default_value = "manifests/signers.yaml"
    )]
    pub signers_file: PathBuf,
    /// The cluster's identity, which every offline signature must name (jitgate sign
    /// --cluster-id). Default: in cluster mode the uid of the kube-system Namespace, read
    /// at start; in file mode "local".
    #[arg(long, value_name = "ID", env = "JITGATE_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Cluster mode: follow the approvals ConfigMaps in this namespace instead of a file.
    #[arg(long, value_name = "NAMESPACE", env = "JITGATE_APPROVALS_NAMESPACE")]
    pub approvals_namespace: Option<String>,
    /// Cluster mode: label selector of the approvals ConfigMaps.
    #[arg(
        long,
        value_name = "SELECTOR",
        env = "JITGATE_APPROVALS_SELECTOR",
        default_value = "jitgate.dev/approvals=true"
    )]
    pub approvals_selector: String,
    /// Cluster mode: kubeconfig to use instead of the in-cluster configuration (when
    /// absent, KUBECONFIG and ~/.kube/config are tried after the in-cluster one).
    #[arg(long, value_name = "PATH", env = "JITGATE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Cluster mode: the ConfigMap (in the approvals namespace) where uses of maxUses
    /// approvals are counted; only jitgate's service account should be able to update it.
    #[arg(
        long,
        value_name = "NAME",
        env = "JITGATE_USAGE_CONFIGMAP",
        default_value = "jitgate-usage"
    )]
    pub usage_configmap: String,
    /// Cluster mode: grant nothing once the API server has been silent this long.
    #[arg(
        long,
        value_name = "DURATION",
        env = "JITGATE_MAX_STALENESS",
        default_value = "5m",
        value_parser = parse_duration
    )]
    pub max_staleness: Duration,
    /// Also append decision records (JSON lines, hash-chained) to this file.
    #[arg(long, value_name = "PATH", env = "JITGATE_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Rotate the audit log to PATH.1, PATH.2, … when it reaches this size (0: never).
    /// The hash chain runs on across the files.
    #[arg(
        long,
        value_name = "SIZE",
        env = "JITGATE_AUDIT_LOG_MAX_SIZE",
        default_value = "100Mi",
        value_parser = parse_size
    )]
    pub audit_log_max_size: u64,
    /// Room for decision records held at once while they wait to be written, to stdout and
    /// the audit log, in places of 4 KiB (at least 1): a record of up to 4 KiB takes one
    /// place, a larger one (a long user, groups or name) one per started 4 KiB. When stdout's
    /// reader or the log stops taking writes, records wait; once a record finds no room,
    /// its request is denied at once (audit_unavailable), as is one larger than the whole
    /// room, each such answer recorded only in an error log line, rather than held without
    /// bound. The default holds about 64 MiB of records.
    #[arg(
        long,
        value_name = "N",
        env = "JITGATE_AUDIT_QUEUE",
        default_value_t = crate::audit::QUEUE,
        value_parser = parse_audit_queue
    )]
    pub audit_queue: usize,
    /// On SIGTERM, keep serving this long after readiness fails, while endpoints update.
    #[arg(
        long,
        value_name = "DURATION",
        env = "JITGATE_SHUTDOWN_DRAIN",
        default_value = "5s",
        value_parser = parse_duration_or_zero
    )]
    pub shutdown_drain: Duration,
    /// In cluster mode, how long before an approval expires an ExpiringSoon Event tells
    /// its requester.
    #[arg(
        long,
        value_name = "DURATION",
        env = "JITGATE_EXPIRY_WARNING",
        default_value = "10m",
        value_parser = crate::duration::parse_duration
    )]
    pub expiry_warning: jiff::SignedDuration,
    /// Take reviews (POST /validate, /authorize) only from callers whose TLS client
    /// certificate chains to this CA (PEM): the API server's, as its admission and
    /// authorization kubeconfigs present it. Others are refused (401) and recorded; the
    /// probes and /metrics need no certificate. Re-read when the file changes.
    #[arg(long, value_name = "FILE", env = "JITGATE_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// In cluster mode, how often this replica writes the head of its audit chain (when
    /// it moved) to the ConfigMap jitgate-anchors in the approvals namespace; it also does
    /// when it starts and on shutdown. `jitgate audit verify --anchors` checks records
    /// against it.
    #[arg(
        long,
        value_name = "DURATION",
        env = "JITGATE_ANCHOR_EVERY",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub anchor_every: Duration,
    /// How approvals under policies with `grant: true` grant. `webhook` (the default):
    /// through /authorize, which the API server asks only when its authorizer chain names
    /// jitgate; jitgate creates nothing. `rbac` (cluster mode): also a Role and a
    /// RoleBinding per live granting approval, removed when it ends, for clusters whose
    /// authorizer chain cannot be changed (docs/zero-standing-privilege.md).
    #[arg(long, value_name = "WAY", env = "JITGATE_GRANTS", default_value = "webhook")]
    pub grants: GrantsWay,
    /// With --grants rbac: how old a Role and RoleBinding of a grant must be before a
    /// replica that does not see its approval granting removes them (a replica that saw
    /// the approval revoked, or the grant expire, removes them at once), and before a
    /// RoleBinding with no mark of its record is recorded as found standing. Longer than
    /// any watch lag between replicas; at least 10s (a replica waits up to 5s for the record
    /// of a grant it creates, then marks it), at most 24h.
    #[arg(
        long,
        value_name = "DURATION",
        env = "JITGATE_GRANTS_GRACE",
        default_value = "2m",
        value_parser = grants_grace
    )]
    pub grants_grace: jiff::SignedDuration,
    /// Tell people in chat, by a signed webhook and by mail (docs/notifications.md): the
    /// sinks, routes and addresses, in a file mounted from a Secret (it holds URLs and
    /// tokens). Each piece of news is sent by the replica that wrote its Event.
    #[arg(long, value_name = "FILE", env = "JITGATE_NOTIFICATIONS")]
    pub notifications: Option<PathBuf>,
}

/// `serve --grants`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GrantsWay {
    Webhook,
    Rbac,
}

/// What a hostile client meets (see `jitgate_connections*` and `jitgate_body_*` metrics).
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Open connections at most. When all are taken, the one quiet longest (idle, or
    /// trickling a body) is closed to make room; one deciding a request never is.
    #[arg(long, value_name = "N", env = "JITGATE_MAX_CONNECTIONS", default_value_t = crate::server::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// With --client-ca-file: connections without a verified client certificate (probes,
    /// scrapers, anyone else) at most; they make room only among themselves.
    #[arg(
        long,
        value_name = "N",
        env = "JITGATE_MAX_UNVERIFIED_CONNECTIONS",
        default_value_t = 64
    )]
    pub max_unverified_connections: usize,
    /// Close a connection with no request open for this long.
    #[arg(long, value_name = "DURATION", env = "JITGATE_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// A request's body must arrive whole within this long after its headers, or it is
    /// refused (408).
    #[arg(long, value_name = "DURATION", env = "JITGATE_BODY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Bytes of request bodies held at once, all requests together (at least 7Mi, the
    /// largest body). A request that cannot get its share within a second is refused (503).
    #[arg(long, value_name = "SIZE", env = "JITGATE_BODY_BUDGET", default_value = "64Mi", value_parser = parse_size)]
    pub body_budget: u64,
}

impl From<LimitArgs> for crate::server::Limits {
    fn from(a: LimitArgs) -> Self {
        crate::server::Limits {
            max_connections: a.max_connections.max(1),
            max_unverified_connections: a.max_unverified_connections.max(1),
            idle_timeout: a.idle_timeout,
            body_timeout: a.body_timeout,
            body_budget: usize::try_from(a.body_budget).unwrap_or(usize::MAX),
            ..crate::server::Limits::default()
        }
    }
}

fn parse_audit_queue(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (one record of up to 4 KiB waiting to be written)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "{text:?} is not a number of places (of 4 KiB) such as 16384"
        )),
    }
}

fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    if text.trim_end_matches(['s', 'm', 'h']) == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse_duration(text).and_then(|d| Duration::try_from(d).map_err(|e| e.to_string()))
}

impl From<ServeArgs> for ServeConfig {
    fn from(a: ServeArgs) -> Self {
        ServeConfig {
            listen: a.listen,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            policies_dir: a.policies,
            approvals_file: a.approvals_file,
            signers_file: a.signers_file,
            cluster_id: a.cluster_id.filter(|id| !id.is_empty()),
            cluster: a.approvals_namespace.map(|namespace| ClusterSource {
                namespace,
                selector: a.approvals_selector,
                kubeconfig: a.kubeconfig,
                usage_configmap: a.usage_configmap,
            }),
            max_staleness: a.max_staleness,
            audit_log: a.audit_log,
            audit_log_max_bytes: (a.audit_log_max_size > 0).then_some(a.audit_log_max_size),
            audit_queue: a.audit_queue,
            records_to_stdout: true,
            shutdown_drain: a.shutdown_drain,
            cert_check_every: Duration::from_secs(2),
            expiry_warning: a.expiry_warning,
            client_ca_file: a.client_ca_file,
            limits: a.limits.into(),
            anchor_every: a.anchor_every,
            grants: match a.grants {
                GrantsWay::Webhook => crate::grants::Way::Webhook,
                GrantsWay::Rbac => crate::grants::Way::Rbac,
            },
            grants_grace: a.grants_grace,
            notifications: a.notifications,
            notification_retry: crate::notices::Retry::default(),
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// AdmissionReview or SubjectAccessReview JSON file, as the API server would send it.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// Directory of GatePolicy YAML files.
    #[arg(long = "policies", value_name = "DIR", default_value = "policies")]
    pub policies: PathBuf,
    /// Approvals ConfigMap manifest(s).
    #[arg(long, value_name = "PATH", default_value = "manifests/approvals.yaml")]
    pub approvals_file: PathBuf,
    /// Trusted signers (the ConfigMap manifest jitgate-signers); a missing file trusts
    /// nobody.
    #[arg(long, value_name = "PATH", default_value = "manifests/signers.yaml")]
    pub signers_file: PathBuf,
    /// The cluster id signatures must be made for, as serve --cluster-id.
    #[arg(long, value_name = "ID", default_value = crate::signing::DEFAULT_CLUSTER_ID)]
    pub cluster_id: String,
    /// Decide as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<jiff::Timestamp>,
}

/// `--grants-grace`: a duration of at least [`GRANTS_GRACE_LEAST`], at most a day.
fn grants_grace(text: &str) -> Result<jiff::SignedDuration, String> {
    let grace = crate::duration::parse_duration(text)?;
    if grace < GRANTS_GRACE_LEAST {
        return Err(format!(
            "{text:?} is shorter than 10s: a replica waits up to 5s for the record of a grant it creates before it marks it, and another must not take it for one whose record was lost"
        ));
    }
    if grace > jiff::SignedDuration::from_hours(24) {
        return Err(format!("{text:?} is longer than 24h"));
    }
    Ok(grace)
}

/// The shortest `--grants-grace`: more than a creation's record wait and its mark.
const GRANTS_GRACE_LEAST: jiff::SignedDuration = jiff::SignedDuration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("100Mi"), Ok(100 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("10MB").unwrap_err().contains("Ki, Mi or Gi"));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        assert_eq!(
            parse_time("2026-11-21T10:00:00Z").unwrap().to_string(),
            "2026-11-21T10:00:00Z"
        );
        let ago = parse_time("2h").unwrap();
        let diff = jiff::Timestamp::now().duration_since(ago).as_secs();
        assert!((7199..=7201).contains(&diff), "{diff}");
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn a_grants_grace_shorter_than_a_creations_record_and_mark_is_refused() {
        assert!(grants_grace("5s").unwrap_err().contains("shorter than 10s"));
        assert_eq!(grants_grace("10s").unwrap(), GRANTS_GRACE_LEAST);
        assert!(grants_grace("later").is_err());
        assert!(
            grants_grace("100000000h")
                .unwrap_err()
                .contains("longer than 24h")
        );
    }
}
