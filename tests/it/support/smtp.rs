//! A real SMTP server for the tests: aiosmtpd 1.4.6 (PyPI), run as a child process from
//! `smtp_receiver.py` beside this file, by the Python that `JITGATE_TEST_SMTP_PYTHON`
//! names, else by `python3` if it has aiosmtpd. What it received, and every AUTH command
//! it was sent, are read from its standard output as they come.
//!
//! Without such a Python, [`Relay::start`] prints [`NOT_RUN`] and gives `None`: the caller
//! skips its mail assertions. With `JITGATE_TEST_SMTP_PYTHON` set (as CI sets it), a
//! receiver that does not start is a failure, never a skip.

use super::Certs;
use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const NOT_RUN: &str =
    "mail tests did not run: set JITGATE_TEST_SMTP_PYTHON to a python with aiosmtpd==1.4.6 (see .ci/run)";

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/smtp_receiver.py");

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tls {
    /// No TLS offered at all.
    #[default]
    None,
    /// Plain, then STARTTLS, which the receiver requires before anything else.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// How to run the receiver.
#[derive(Default)]
pub struct Relay<'a> {
    /// On `::1` rather than 127.0.0.1.
    pub ipv6: bool,
    pub tls: Tls,
    /// The certificate and key it serves (with TLS).
    pub certs: Option<&'a Certs>,
    /// The one user and password it takes (535 to any other). Offered only over TLS when
    /// `tls` is `Starttls`; with `Tls::None` offered in the clear, so that a client that
    /// would send its password in the clear is seen doing so.
    pub login: Option<(&'a str, &'a str)>,
    /// Recipients it answers 550 to.
    pub refuse: &'a [&'a str],
}

/// One mail it accepted.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    /// The envelope's recipients (RCPT TO) it accepted.
    pub to: Vec<String>,
    /// The message as sent.
    pub data: String,
    /// As a mail reader shows it: the subject and `To:` decoded, then the body decoded.
    pub text: String,
    pub tls: bool,
    /// Who logged in, if anyone.
    pub user: Option<String>,
    pub at: Instant,
}

/// One AUTH command it was sent, whatever it answered (except one before STARTTLS on a
/// relay that requires it, which aiosmtpd refuses itself).
#[derive(Clone, Debug)]
pub struct Auth {
    /// Whether the connection was TLS by then.
    pub tls: bool,
    /// The login it carried, if it got that far.
    pub user: Option<String>,
    pub ok: bool,
}

/// The running receiver; killed when dropped.
pub struct SmtpServer {
    pub port: u16,
    pub host: &'static str,
    child: Child,
    events: Arc<Mutex<Vec<(Value, Instant)>>>,
    _dir: tempfile::TempDir,
}

/// The Python to run the receiver with: `JITGATE_TEST_SMTP_PYTHON`, else `python3` if it
/// imports aiosmtpd.
fn python() -> Option<String> {
    if let Some(p) = std::env::var_os("JITGATE_TEST_SMTP_PYTHON").filter(|p| !p.is_empty()) {
        return Some(p.to_string_lossy().into_owned());
    }
    let found = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then(|| "python3".to_string())
}

/// Whether this machine can listen on `::1`.
pub fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

impl Relay<'_> {
    /// Starts the receiver; `None` (having said so) when there is no Python to run it.
    pub fn start(&self) -> Option<SmtpServer> {
        let Some(python) = python() else {
            println!("{NOT_RUN}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let host = if self.ipv6 { "::1" } else { "127.0.0.1" };
        let mut cmd = Command::new(&python);
        cmd.arg(SCRIPT).args(["--host", host]);
        cmd.args([
            "--tls",
            match self.tls {
                Tls::None => "none",
                Tls::Starttls => "starttls",
                Tls::Implicit => "implicit",
            },
        ]);
        if self.tls != Tls::None {
            let certs = self.certs.expect("a TLS receiver needs certs");
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&cert, &certs.cert_pem).unwrap();
            std::fs::write(&key, &certs.key_pem).unwrap();
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some((user, password)) = self.login {
            cmd.args(["--user", user, "--password", password]);
        }
        for address in self.refuse {
            cmd.args(["--refuse", address]);
        }
        let stderr = dir.path().join("stderr");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} (JITGATE_TEST_SMTP_PYTHON): {e}"));
        let stdout = child.stdout.take().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let kept = events.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if event["event"] == "ready" {
                    let _ = ready_tx.send(event["port"].as_u64());
                } else {
                    kept.lock().unwrap().push((event, Instant::now()));
                }
            }
        });
        match ready.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => Some(SmtpServer {
                port: port as u16,
                host,
                child,
                events,
                _dir: dir,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the SMTP receiver did not start with {python}: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
        }
    }
}

impl SmtpServer {
    /// A plain receiver on 127.0.0.1, taking any mail.
    pub fn start() -> Option<SmtpServer> {
        Relay::default().start()
    }

    fn events(&self, kind: &str) -> Vec<(Value, Instant)> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|(e, _)| e["event"] == kind)
            .cloned()
            .collect()
    }

    /// Every mail it accepted, in order.
    pub fn all(&self) -> Vec<Mail> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        self.events("mail")
            .into_iter()
            .map(|(e, at)| Mail {
                from: text(&e["from"]),
                to: e["to"].as_array().unwrap().iter().map(text).collect(),
                data: text(&e["data"]),
                text: text(&e["text"]),
                tls: e["tls"] == true,
                user: e["user"].as_str().map(str::to_string),
                at,
            })
            .collect()
    }

    /// The mails whose envelope had `address` among its recipients.
    pub fn to(&self, address: &str) -> Vec<Mail> {
        self.all()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == address))
            .collect()
    }

    /// Every AUTH command it was sent.
    pub fn auths(&self) -> Vec<Auth> {
        self.events("auth")
            .into_iter()
            .map(|(e, _)| Auth {
                tls: e["tls"] == true,
                user: e["user"].as_str().map(str::to_string),
                ok: e["ok"] == true,
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
