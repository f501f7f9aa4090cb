//! Delivery, the only I/O of notifications: a bounded queue and a worker per sink, each
//! attempt within a deadline, retried with backoff, then dropped with a log line and a
//! metric. Nothing here is on the request path: answers hand notices to `news::emit`,
//! which hands the ones this replica wrote on with `try_send`.
//!
//! Log lines and errors name the sink and the notice, never a URL, a token or a password:
//! an error's text is scrubbed of them before it goes anywhere.

use super::budget::{Denials, Queued};
use super::config::{Config, Credential, Kind, Sink, SmtpTls};
use super::{message, route};
use crate::metrics::Metrics;
use crate::news::Notice;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Notices waiting for the dispatcher; past this, new ones are dropped.
pub const QUEUE: usize = 1024;
pub use super::budget::{SINK_BYTES, SINK_QUEUE};

/// How hard a worker tries.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub tries: u32,
    /// The first pause; each next one is twice as long.
    pub first: Duration,
    /// How long one attempt may take.
    pub attempt: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            tries: 5,
            first: Duration::from_secs(1),
            attempt: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("notifications: sink {sink:?}: ca: cannot read {path}: {problem}")]
    Ca {
        sink: String,
        path: PathBuf,
        problem: String,
    },
    #[error("notifications: sink {sink:?}: no trusted CA: the system has none; set ca: to a PEM file")]
    NoRoots { sink: String },
}

/// Why one attempt failed, in words safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("HTTP {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The relay refused this mail for good (an SMTP 5xx reply, such as an address it
    /// does not take), or the mail could not be built: another try cannot help.
    #[error("{0}")]
    Permanent(String),
    /// The relay refused jitgate's login (SMTP 530, 534, 535 or 538): every mail to it
    /// would be refused alike until someone fixes the Secret, and each try is one more
    /// failed login on the relay's account.
    #[error("{0}")]
    Login(String),
    #[error("{0}")]
    Other(String),
}

impl Failure {
    /// Whether another try might succeed.
    fn worth_retrying(&self) -> bool {
        !matches!(self, Failure::Permanent(_) | Failure::Login(_))
    }

    /// The same failure, its words (if any) passed through `f`.
    fn map_text(self, f: impl FnOnce(String) -> String) -> Failure {
        match self {
            Failure::Permanent(text) => Failure::Permanent(f(text)),
            Failure::Login(text) => Failure::Login(f(text)),
            Failure::Other(text) => Failure::Other(f(text)),
            Failure::Status(_) | Failure::Timeout(_) => self,
        }
    }
}

/// After a relay refuses jitgate's login, its mail waits this long untried (dropped,
/// counted, logged once): a login with the same password fails alike, and relays lock an
/// account out, or ban an address, after a few failed logins.
pub const LOGIN_PAUSE: Duration = Duration::from_secs(300);

/// One message for one sink, ready to send.
#[derive(Debug, Clone)]
pub enum Payload {
    Http {
        method: http::Method,
        /// Holds credentials (a hook's path, a token): never logged.
        url: Credential,
        headers: Vec<(&'static str, Credential)>,
        body: Vec<u8>,
    },
    /// To one address: a mail is sent to each recipient on its own (its own SMTP
    /// transaction), so that a relay refusing one address keeps no other from its mail,
    /// and no recipient learns the others' addresses.
    Mail {
        to: String,
        subject: String,
        body: String,
    },
}

/// What `notice` is for `sink`: one message for a chat, Matrix or webhook sink; one mail
/// per recipient for a mail sink, none when it has nobody to tell.
pub fn payloads(cfg: &Config, sink: &Sink, notice: &Notice, time: jiff::Timestamp) -> Vec<Payload> {
    let m = message::of(notice);
    let json = |v: serde_json::Value| serde_json::to_vec(&v).unwrap_or_default();
    vec![match &sink.kind {
        Kind::Chat { url } => Payload::Http {
            method: http::Method::POST,
            url: url.clone(),
            headers: vec![("content-type", plain("application/json"))],
            body: json(message::chat_body(&m)),
        },
        Kind::Matrix {
            homeserver,
            room,
            token,
        } => Payload::Http {
            // The transaction id is the notice's name: a retry, or a second replica, is
            // the same transaction, which the homeserver keeps once.
            method: http::Method::PUT,
            url: plain(&format!(
                "{homeserver}/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                path_segment(room),
                path_segment(&notice.name)
            )),
            headers: vec![
                ("content-type", plain("application/json")),
                (
                    "authorization",
                    plain_secret(format!("Bearer {}", token.expose())),
                ),
            ],
            body: json(message::matrix_body(&m)),
        },
        Kind::Webhook { url, secret } => {
            let body = json(message::cloudevent(notice, &m, time));
            Payload::Http {
                method: http::Method::POST,
                url: url.clone(),
                headers: vec![
                    (
                        "content-type",
                        plain("application/cloudevents+json; charset=utf-8"),
                    ),
                    ("x-jitgate-signature", plain(&signature(secret, &body))),
                ],
                body,
            }
        }
        Kind::Smtp(_) => {
            let (subject, body) = (message::subject(&m), message::plain(&m));
            return route::recipients(&cfg.mail, notice)
                .into_iter()
                .map(|to| Payload::Mail {
                    to,
                    subject: subject.clone(),
                    body: body.clone(),
                })
                .collect();
        }
    }]
}

impl Payload {
    /// What it holds, in bytes: what it weighs in a queue.
    pub fn size(&self) -> usize {
        match self {
            Payload::Http {
                url, headers, body, ..
            } => {
                url.expose().len()
                    + headers
                        .iter()
                        .map(|(n, v)| n.len() + v.expose().len())
                        .sum::<usize>()
                    + body.len()
            }
            Payload::Mail { to, subject, body } => to.len() + subject.len() + body.len(),
        }
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &Credential, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes());
    format!(
        "sha256={}",
        crate::digest::hex_of(ring::hmac::sign(&key, body).as_ref())
    )
}

fn plain(s: &str) -> Credential {
    plain_secret(s.to_string())
}

fn plain_secret(s: String) -> Credential {
    Credential::new(s)
}

/// Percent-encodes everything but the unreserved characters.
fn path_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A sink with its client, ready to deliver.
pub struct Target {
    pub sink: Sink,
    http: Option<Client<Https, Full<Bytes>>>,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    /// Credentials to scrub from any error text.
    secrets: Vec<String>,
}

impl Target {
    pub fn new(sink: &Sink, attempt: Duration) -> Result<Target, SetupError> {
        let ca_pem = match &sink.ca {
            Some(path) => Some(std::fs::read(path).map_err(|e| SetupError::Ca {
                sink: sink.name.clone(),
                path: path.clone(),
                problem: e.to_string(),
            })?),
            None => None,
        };
        let mut secrets = Vec::new();
        let (http, smtp) = match &sink.kind {
            Kind::Smtp(s) => {
                if let Some(p) = &s.password {
                    secrets.push(p.expose().to_string());
                }
                let tls = |host: &str| -> Result<lettre::transport::smtp::client::TlsParameters, SetupError> {
                    use lettre::transport::smtp::client::{Certificate, CertificateStore, TlsParameters};
                    let mut b = TlsParameters::builder(host.to_string());
                    if let Some(pem) = &ca_pem {
                        let cert = Certificate::from_pem(pem).map_err(|e| SetupError::Ca {
                            sink: sink.name.clone(),
                            path: sink.ca.clone().unwrap_or_default(),
                            problem: e.to_string(),
                        })?;
                        b = b
                            .certificate_store(CertificateStore::None)
                            .add_root_certificate(cert);
                    }
                    b.build_rustls().map_err(|e| SetupError::Ca {
                        sink: sink.name.clone(),
                        path: sink.ca.clone().unwrap_or_default(),
                        problem: e.to_string(),
                    })
                };
                use lettre::transport::smtp::client::Tls;
                let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
                    .port(s.port)
                    .timeout(Some(attempt))
                    .tls(match s.tls {
                        SmtpTls::Starttls => Tls::Required(tls(&s.host)?),
                        SmtpTls::Tls => Tls::Wrapper(tls(&s.host)?),
                        SmtpTls::None => Tls::None,
                    });
                if let (Some(user), Some(password)) = (&s.username, &s.password) {
                    b = b.credentials(lettre::transport::smtp::authentication::Credentials::new(
                        user.clone(),
                        password.expose().to_string(),
                    ));
                }
                (None, Some(b.build()))
            }
            other => {
                match other {
                    Kind::Chat { url } => secrets.push(url.expose().to_string()),
                    Kind::Matrix { token, .. } => secrets.push(token.expose().to_string()),
                    Kind::Webhook { url, secret } => {
                        secrets.push(url.expose().to_string());
                        secrets.push(secret.expose().to_string());
                    }
                    Kind::Smtp(_) => {}
                }
                let mut roots = rustls::RootCertStore::empty();
                match &ca_pem {
                    Some(pem) => {
                        use rustls_pki_types::pem::PemObject;
                        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
                            .filter_map(Result::ok)
                            .collect();
                        roots.add_parsable_certificates(certs);
                    }
                    None => {
                        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                    }
                }
                // No roots at all is only a problem for https; a loopback http sink needs none.
                let needs_tls = match other {
                    Kind::Chat { url } | Kind::Webhook { url, .. } => url.expose().starts_with("https:"),
                    Kind::Matrix { homeserver, .. } => homeserver.starts_with("https:"),
                    Kind::Smtp(_) => false,
                };
                if roots.is_empty() && needs_tls {
                    return Err(if sink.ca.is_some() {
                        SetupError::Ca {
                            sink: sink.name.clone(),
                            path: sink.ca.clone().unwrap_or_default(),
                            problem: "no certificate in it".into(),
                        }
                    } else {
                        SetupError::NoRoots {
                            sink: sink.name.clone(),
                        }
                    });
                }
                let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| SetupError::Ca {
                    sink: sink.name.clone(),
                    path: PathBuf::new(),
                    problem: e.to_string(),
                })?
                .with_root_certificates(roots)
                .with_no_client_auth();
                let mut connector = HttpConnector::new();
                connector.enforce_http(false);
                connector.set_connect_timeout(Some(attempt));
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(connector);
                let client = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(https);
                (Some(client), None)
            }
        };
        Ok(Target {
            sink: sink.clone(),
            http,
            smtp,
            secrets,
        })
    }

    /// One attempt: what the sink answered (`HTTP 200`, `250 …`), or why it failed.
    pub async fn deliver(&self, payload: &Payload, within: Duration) -> Result<String, Failure> {
        match tokio::time::timeout(within, self.attempt(payload)).await {
            Ok(result) => result.map_err(|f| f.map_text(|text| self.scrub(text))),
            Err(_) => Err(Failure::Timeout(within)),
        }
    }

    async fn attempt(&self, payload: &Payload) -> Result<String, Failure> {
        match payload {
            Payload::Http {
                method,
                url,
                headers,
                body,
            } => {
                let client = self
                    .http
                    .as_ref()
                    .ok_or_else(|| Failure::Other("not an HTTP sink".into()))?;
                let mut req = http::Request::builder()
                    .method(method.clone())
                    .uri(url.expose())
                    .header("user-agent", "jitgate");
                for (name, value) in headers {
                    req = req.header(*name, value.expose());
                }
                let req = req
                    .body(Full::new(Bytes::from(body.clone())))
                    .map_err(|_| Failure::Other("the request could not be built".into()))?;
                let resp = client.request(req).await.map_err(|e| Failure::Other(chain(&e)))?;
                let status = resp.status();
                // Read (a little of) the answer, so the connection can be used again.
                let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
                    .collect()
                    .await;
                if status.is_success() {
                    Ok(format!("HTTP {}", status.as_u16()))
                } else {
                    Err(Failure::Status(status.as_u16()))
                }
            }
            Payload::Mail { to, subject, body } => {
                let smtp = self
                    .smtp
                    .as_ref()
                    .ok_or_else(|| Failure::Other("not a mail sink".into()))?;
                let Kind::Smtp(s) = &self.sink.kind else {
                    return Err(Failure::Other("not a mail sink".into()));
                };
                let mail = lettre::Message::builder()
                    .from(
                        s.from
                            .parse()
                            .map_err(|_| Failure::Permanent("bad from address".into()))?,
                    )
                    .to(to
                        .parse()
                        .map_err(|_| Failure::Permanent("the recipient is not a mail address".into()))?)
                    .subject(subject.as_str())
                    .header(lettre::message::header::ContentType::TEXT_PLAIN)
                    .body(body.clone())
                    .map_err(|e| Failure::Permanent(format!("the mail could not be built: {e}")))?;
                let answer = smtp.send(mail).await.map_err(|e| smtp_failure(&e))?;
                Ok(format!(
                    "{} {}",
                    answer.code(),
                    answer.message().collect::<Vec<_>>().join(" ")
                ))
            }
        }
    }

    fn scrub(&self, mut text: String) -> String {
        for s in &self.secrets {
            if !s.is_empty() {
                text = text.replace(s.as_str(), "<redacted>");
            }
        }
        text
    }
}

/// What a relay's error means for trying again.
fn smtp_failure(e: &lettre::transport::smtp::Error) -> Failure {
    let text = chain(e);
    let code = e.status().map(|c| c.to_string());
    match code.as_deref() {
        Some("530" | "534" | "535" | "538") => Failure::Login(text),
        _ if e.is_permanent() => Failure::Permanent(text),
        _ => Failure::Other(text),
    }
}

/// An error and its sources, in one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// One message for a worker.
struct Job {
    notice: String,
    /// The notice's messages for the sink: one, or a mail per recipient. A notice takes
    /// one place in the queue however many it mails.
    payloads: Vec<Payload>,
    /// A denial's (in the denials' part of the queue), and its size: what to give back
    /// to the queue's budget when it is done with.
    denied: bool,
    size: usize,
}

/// A sink's queue: where its worker takes messages from, and what waits in it.
struct Queue {
    name: String,
    tx: mpsc::Sender<Job>,
    queued: Arc<std::sync::Mutex<Queued>>,
}

impl Queue {
    /// Hands `job` to the worker if the queue's budget takes it; false: dropped.
    fn offer(&self, job: Job) -> bool {
        let (denied, size) = (job.denied, job.size);
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        if !queued.admit(denied, size) {
            return false;
        }
        if self.tx.try_send(job).is_err() {
            queued.release(denied, size);
            return false;
        }
        true
    }
}

/// Starts the dispatcher and a worker per sink. Returns where notices are handed, for
/// `news::emit` to `try_send` to.
pub fn start(
    cfg: Arc<Config>,
    metrics: Arc<Metrics>,
    retry: Retry,
) -> Result<(mpsc::Sender<Notice>, Vec<JoinHandle<()>>), SetupError> {
    let mut tasks = Vec::new();
    let mut queues = Vec::new();
    for sink in &cfg.sinks {
        let target = Target::new(sink, retry.attempt)?;
        let (tx, rx) = mpsc::channel::<Job>(SINK_QUEUE);
        let queued = Arc::new(std::sync::Mutex::new(Queued::default()));
        queues.push(Queue {
            name: sink.name.clone(),
            tx,
            queued: queued.clone(),
        });
        tasks.push(tokio::spawn(work(target, rx, queued, metrics.clone(), retry)));
    }
    let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
    tasks.push(tokio::spawn(async move {
        let mut denials = Denials::default();
        while let Some(notice) = rx.recv().await {
            dispatch(&cfg, &queues, &mut denials, &metrics, notice);
        }
    }));
    Ok((tx, tasks))
}

/// Hands `notice`'s message to each sink it goes to, within each queue's budget and the
/// user's budget of denials; what does not fit is dropped, counted and logged.
fn dispatch(cfg: &Config, queues: &[Queue], denials: &mut Denials, metrics: &Metrics, notice: Notice) {
    let now = jiff::Timestamp::now();
    let denied = notice.reason == "Denied";
    let sinks = route::sinks_for(cfg, &notice);
    if sinks.is_empty() {
        return;
    }
    if denied {
        let user = notice
            .facts
            .requester_user
            .as_deref()
            .unwrap_or(&notice.facts.requester);
        if !denials.allow(user, now.as_second().div_euclid(60)) {
            metrics.notification("queue", "dropped");
            tracing::warn!(notice = %notice.name, "notification dropped: this user's denials this minute were told already");
            return;
        }
    }
    for sink in sinks {
        let Some(queue) = queues.iter().find(|q| q.name == sink.name) else {
            continue;
        };
        let payloads = payloads(cfg, sink, &notice, now);
        if payloads.is_empty() {
            continue;
        }
        let (count, size) = (payloads.len(), payloads.iter().map(Payload::size).sum::<usize>());
        let job = Job {
            notice: notice.name.clone(),
            payloads,
            size,
            denied,
        };
        if !queue.offer(job) {
            for _ in 0..count {
                metrics.notification(&sink.name, "dropped");
            }
            tracing::warn!(sink = %sink.name, notice = %notice.name, messages = count, "notification dropped: the sink's queue is full");
        }
    }
}

async fn work(
    target: Target,
    mut rx: mpsc::Receiver<Job>,
    queued: Arc<std::sync::Mutex<Queued>>,
    metrics: Arc<Metrics>,
    retry: Retry,
) {
    let name = target.sink.name.clone();
    let mut paused_until: Option<tokio::time::Instant> = None;
    while let Some(job) = rx.recv().await {
        let (mut paused, mut unreachable) = (0, 0);
        let mut gave_up = false;
        for payload in &job.payloads {
            if paused_until.is_some_and(|until| tokio::time::Instant::now() < until) {
                metrics.notification(&name, "dropped");
                paused += 1;
            } else if gave_up {
                metrics.notification(&name, "dropped");
                unreachable += 1;
            } else {
                match deliver(&target, &name, &job.notice, payload, &metrics, retry).await {
                    Delivered::LoginRefused => {
                        paused_until = Some(tokio::time::Instant::now() + LOGIN_PAUSE);
                    }
                    // Not this recipient's fault (no answer, a connection error, a 4xx
                    // after every try): the rest of this notice would wait as long for
                    // the same, holding up the news behind it.
                    Delivered::GaveUp => gave_up = true,
                    Delivered::Sent | Delivered::Refused => {}
                }
            }
        }
        if paused > 0 {
            tracing::warn!(sink = %name, notice = %job.notice, messages = paused, "notification dropped untried: the relay refused jitgate's login less than 5 minutes ago (check the sink's username and password)");
        }
        if unreachable > 0 {
            tracing::warn!(sink = %name, notice = %job.notice, messages = unreachable, "notification dropped untried: the sink did not take this notice's previous message after every try");
        }
        queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(job.denied, job.size);
    }
}

/// How one message went.
#[derive(Debug, PartialEq, Eq)]
enum Delivered {
    Sent,
    /// Dropped: the sink refused this message for good (a relay refusing its recipient).
    Refused,
    /// Dropped after every try: the sink did not answer, or not with a yes.
    GaveUp,
    /// Dropped, and the relay refused jitgate's login: its next mail waits.
    LoginRefused,
}

/// Delivers one message, retrying what another try might fix, and counts how it went.
async fn deliver(
    target: &Target,
    name: &str,
    notice: &str,
    payload: &Payload,
    metrics: &Metrics,
    retry: Retry,
) -> Delivered {
    let mut pause = retry.first;
    let mut attempt = 1;
    loop {
        match target.deliver(payload, retry.attempt).await {
            Ok(answer) => {
                metrics.notification(name, "sent");
                tracing::debug!(sink = %name, %notice, %answer, "notification sent");
                return Delivered::Sent;
            }
            Err(failure) if attempt < retry.tries && failure.worth_retrying() => {
                metrics.notification(name, "retried");
                tracing::info!(sink = %name, %notice, attempt, error = %failure, "notification not delivered; trying again");
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
                attempt += 1;
            }
            Err(failure) => {
                metrics.notification(name, "dropped");
                tracing::warn!(sink = %name, %notice, attempts = attempt, error = %failure, "notification dropped: the sink did not take it");
                return match failure {
                    Failure::Login(_) => Delivered::LoginRefused,
                    Failure::Permanent(_) => Delivered::Refused,
                    Failure::Status(_) | Failure::Timeout(_) | Failure::Other(_) => Delivered::GaveUp,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests;
