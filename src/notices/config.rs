//! The notifications file (`serve --notifications FILE`, mounted from a Secret): the sinks,
//! the routes and whom to mail. Parsed and checked here, without I/O beyond reading the
//! file, so that `serve` refuses to start with an error naming the sink and the field.
//!
//! URLs and tokens are credentials: they are held as [`Credential`], whose `Debug` shows
//! nothing, and no error here quotes them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The reasons a route may name: those of `news::Notice`.
pub const REASONS: [&str; 10] = [
    "RequestFiled",
    "Approved",
    "Revoked",
    "ExpiringSoon",
    "Expired",
    "BreakGlassUsed",
    "Denied",
    "GrantCreated",
    "GrantFound",
    "GrantRemoved",
];

/// The shortest HMAC key a webhook sink takes (bytes): SHA-256's output length.
pub const SECRET_MIN: usize = 32;

/// A URL or a token: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    pub fn new(value: String) -> Self {
        Credential(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub sinks: Vec<Sink>,
    /// Empty: every sink gets every notice.
    pub routes: Vec<Route>,
    pub mail: Mail,
}

#[derive(Debug, Clone)]
pub struct Sink {
    pub name: String,
    pub kind: Kind,
    /// PEM file of the CAs to trust instead of the system's (an enclave's internal CA).
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// A Slack-compatible incoming webhook: Mattermost, Rocket.Chat, Slack.
    Chat {
        url: Credential,
    },
    Matrix {
        homeserver: String,
        room: String,
        token: Credential,
    },
    /// CloudEvents 1.0 (structured mode), signed with HMAC-SHA256 of `secret`.
    Webhook {
        url: Credential,
        secret: Credential,
    },
    Smtp(Smtp),
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Chat { .. } => "chat",
            Kind::Matrix { .. } => "matrix",
            Kind::Webhook { .. } => "webhook",
            Kind::Smtp(_) => "smtp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain, then STARTTLS (required): port 587.
    Starttls,
    /// TLS from the first byte: port 465.
    Tls,
    /// No TLS: only to a relay on loopback, or without credentials.
    None,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Credential>,
    pub from: String,
}

#[derive(Debug, Clone, Default)]
pub struct Route {
    pub sinks: Vec<String>,
    /// Empty: any. Otherwise the notice's gating policies must include one of these.
    pub policies: Vec<String>,
    /// Empty: any. Otherwise the policies' approver groups must include one of these.
    pub groups: Vec<String>,
    /// Empty: any.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Mail {
    /// Answers and expiry warnings to the requester.
    pub requester: bool,
    /// New requests and break-glass uses to the approver groups (by `addresses`).
    pub approvers: bool,
    /// Username or `group:NAME` → addresses. A username that is an address is used as is.
    pub addresses: BTreeMap<String, Vec<String>>,
    /// When not empty, a username is used as an address only in one of these domains
    /// (anyone may file for any user, `victim@elsewhere` too); `addresses` are used as
    /// written.
    pub domains: Vec<String>,
}

impl Default for Mail {
    fn default() -> Self {
        Mail {
            requester: true,
            approvers: true,
            addresses: BTreeMap::new(),
            domains: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the notifications file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the notifications file is not valid: {0}")]
    Syntax(String),
    #[error("notifications: sink {sink:?}: {field}: {problem}")]
    Sink {
        sink: String,
        field: &'static str,
        problem: String,
    },
    #[error("notifications: routes[{index}]: {field}: {problem}")]
    Route {
        index: usize,
        field: &'static str,
        problem: String,
    },
    #[error("notifications: mail.{0}")]
    Mail(String),
}

/// Reads and checks the notifications file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    sinks: Vec<RawSink>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    mail: Option<RawMail>,
    /// A CA file for every sink without its own.
    ca: Option<PathBuf>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: Option<String>,
    chat: Option<RawChat>,
    matrix: Option<RawMatrix>,
    webhook: Option<RawWebhook>,
    smtp: Option<RawSmtp>,
    ca: Option<PathBuf>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChat {
    url: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    homeserver: Option<String>,
    room: Option<String>,
    token: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Option<String>,
    secret: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: Option<String>,
    port: Option<u16>,
    tls: Option<SmtpTls>,
    username: Option<String>,
    password: Option<String>,
    from: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    sinks: Vec<String>,
    #[serde(default)]
    policies: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    reasons: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    requester: Option<bool>,
    approvers: Option<bool>,
    #[serde(default)]
    addresses: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    domains: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Parses and checks the text of a notifications file.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: RawFile = crate::yaml::from_str(text).map_err(ConfigError::Syntax)?;
    let mut sinks: Vec<Sink> = Vec::new();
    for (i, s) in raw.sinks.into_iter().enumerate() {
        let name = s.name.clone().unwrap_or_default();
        let err = |field: &'static str, problem: &str| ConfigError::Sink {
            sink: if name.is_empty() {
                format!("#{}", i + 1)
            } else {
                name.clone()
            },
            field,
            problem: problem.to_string(),
        };
        if name.is_empty() {
            return Err(err("name", "missing"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(err("name", "may hold only letters, digits, '-', '_' and '.'"));
        }
        if sinks.iter().any(|o| o.name == name) {
            return Err(err("name", "another sink has this name"));
        }
        let kinds = [
            s.chat.is_some(),
            s.matrix.is_some(),
            s.webhook.is_some(),
            s.smtp.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(err(
                "chat|matrix|webhook|smtp",
                "a sink is exactly one of chat, matrix, webhook or smtp",
            ));
        }
        let kind = if let Some(c) = s.chat {
            Kind::Chat {
                url: http_url(c.url, "chat.url").map_err(|(f, p)| err(f, p))?,
            }
        } else if let Some(m) = s.matrix {
            let homeserver = http_url(m.homeserver, "matrix.homeserver").map_err(|(f, p)| err(f, p))?;
            let room = m
                .room
                .filter(|r| !r.is_empty())
                .ok_or_else(|| err("matrix.room", "missing"))?;
            if !room.starts_with('!') && !room.starts_with('#') {
                return Err(err(
                    "matrix.room",
                    "is not a room id (!id:server) or alias (#alias:server)",
                ));
            }
            let token = m
                .token
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| err("matrix.token", "missing"))?;
            if token.chars().any(|c| c.is_control() || c == ' ') {
                return Err(err("matrix.token", "holds spaces or control characters"));
            }
            Kind::Matrix {
                homeserver: homeserver.0.trim_end_matches('/').to_string(),
                room,
                token: Credential(token),
            }
        } else if let Some(w) = s.webhook {
            let url = http_url(w.url, "webhook.url").map_err(|(f, p)| err(f, p))?;
            let secret = w.secret.filter(|t| !t.is_empty()).ok_or_else(|| {
                err(
                    "webhook.secret",
                    "missing (the receiver checks the signature with it)",
                )
            })?;
            if secret.len() < SECRET_MIN {
                return Err(err(
                    "webhook.secret",
                    "is shorter than 32 bytes: use a long random string (openssl rand -hex 32)",
                ));
            }
            Kind::Webhook {
                url,
                secret: Credential(secret),
            }
        } else if let Some(m) = s.smtp {
            let host = m
                .host
                .filter(|h| !h.is_empty())
                .ok_or_else(|| err("smtp.host", "missing"))?;
            let host = relay_host(&host).ok_or_else(|| {
                err(
                    "smtp.host",
                    "is not a host name or address (an IPv6 address is written ::1 or [::1]; the port goes in port:)",
                )
            })?;
            let tls = m.tls.unwrap_or(SmtpTls::Starttls);
            let port = m.port.unwrap_or(match tls {
                SmtpTls::Starttls => 587,
                SmtpTls::Tls => 465,
                SmtpTls::None => 25,
            });
            let from = m.from.ok_or_else(|| err("smtp.from", "missing"))?;
            if !is_address(&from) {
                return Err(err("smtp.from", "is not a mail address"));
            }
            if m.username.is_some() != m.password.is_some() {
                return Err(err("smtp.password", "username and password go together"));
            }
            if tls == SmtpTls::None && m.password.is_some() && !is_loopback(&host) {
                return Err(err(
                    "smtp.tls",
                    "none would send the password in the clear; use starttls or tls",
                ));
            }
            Kind::Smtp(Smtp {
                host,
                port,
                tls,
                username: m.username,
                password: m.password.map(Credential),
                from,
            })
        } else {
            unreachable!("one kind, checked above")
        };
        sinks.push(Sink {
            name,
            kind,
            ca: s.ca.or_else(|| raw.ca.clone()),
        });
    }
    let mut routes = Vec::new();
    for (index, r) in raw.routes.into_iter().enumerate() {
        let err = |field: &'static str, problem: String| ConfigError::Route {
            index,
            field,
            problem,
        };
        if r.sinks.is_empty() {
            return Err(err("sinks", "missing: name the sinks this route sends to".into()));
        }
        if let Some(unknown) = r.sinks.iter().find(|n| !sinks.iter().any(|s| &s.name == *n)) {
            return Err(err("sinks", format!("no sink is named {unknown:?}")));
        }
        if let Some(unknown) = r.reasons.iter().find(|n| !REASONS.contains(&n.as_str())) {
            return Err(err(
                "reasons",
                format!("{unknown:?} is none of {}", REASONS.join(", ")),
            ));
        }
        routes.push(Route {
            sinks: r.sinks,
            policies: r.policies,
            groups: r.groups,
            reasons: r.reasons,
        });
    }
    let mail = match raw.mail {
        None => Mail::default(),
        Some(m) => {
            let mut addresses = BTreeMap::new();
            for (who, to) in m.addresses {
                let list = match to {
                    OneOrMany::One(a) => vec![a],
                    OneOrMany::Many(l) => l,
                };
                if let Some(bad) = list.iter().position(|a| !is_address(a)) {
                    return Err(ConfigError::Mail(format!(
                        "addresses: {who:?}: address #{} is not a mail address",
                        bad + 1
                    )));
                }
                addresses.insert(who, list);
            }
            if let Some(bad) = m
                .domains
                .iter()
                .position(|d| d.is_empty() || !is_address(&format!("x@{d}")))
            {
                return Err(ConfigError::Mail(format!(
                    "domains: #{} is not a mail domain",
                    bad + 1
                )));
            }
            Mail {
                requester: m.requester.unwrap_or(true),
                approvers: m.approvers.unwrap_or(true),
                addresses,
                domains: m.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            }
        }
    };
    Ok(Config { sinks, routes, mail })
}

/// An `https://` URL with a host (`http://` only to loopback: a local relay), checked
/// without quoting it in an error.
fn http_url(url: Option<String>, field: &'static str) -> Result<Credential, (&'static str, &'static str)> {
    let url = url.filter(|u| !u.is_empty()).ok_or((field, "missing"))?;
    let uri: http::Uri = url.parse().map_err(|_| (field, "is not a URL"))?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or((field, "has no host"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback(host) => {}
        Some("http") => return Err((field, "is http://: use https:// (http only to loopback)")),
        _ => return Err((field, "is not an https:// URL")),
    }
    Ok(Credential(url))
}

/// A relay's host as the socket and the TLS name take it: a name, an IPv4 address, or an
/// IPv6 address, written bare or in brackets (`::1`, `[::1]`), kept bare.
fn relay_host(host: &str) -> Option<String> {
    if let Some(inner) = host.strip_prefix('[') {
        let ip = inner.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok()?;
        return Some(ip.to_string());
    }
    if host.contains(':') {
        return host.parse::<std::net::Ipv6Addr>().ok().map(|ip| ip.to_string());
    }
    if host.contains(['/', ' ', '[', ']', '@']) || host.chars().any(|c| c.is_control()) {
        return None;
    }
    Some(host.to_string())
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `local@domain`, without spaces or angle brackets: what a mail address looks like here.
pub fn is_address(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests;
