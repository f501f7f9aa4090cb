//! Notifications: the news (`news`) told where people already are: chat (Mattermost,
//! Rocket.Chat, Slack through a Slack-compatible incoming webhook; Matrix), a signed
//! CloudEvents webhook, and mail through an SMTP relay. Configured from a file mounted
//! from a Secret (`serve --notifications FILE`): its URLs, tokens and passwords are
//! credentials and appear in no log line, record or error.
//!
//! What a notice says and whom it reaches is decided without I/O ([`config`], [`message`],
//! [`route`]); [`send`] delivers it, off the request path. Across replicas, a notice is
//! handed here only by the replica whose Event was created (`news::emit::write`), so it is
//! sent once; in file mode there are no Events, and each process sends what it sees.

pub mod budget;
pub mod config;
pub mod message;
pub mod route;
pub mod send;

pub use config::{Config, ConfigError, load};
pub use send::{Failure, Retry, SetupError};

use config::Kind;

/// `jitgate notify test`: one sample message to each sink, once, no retry; what each
/// answered. Mail goes to `to`, else to the sink's own `from` address.
pub async fn test(cfg: &Config, to: Option<&str>) -> Vec<(String, Result<String, String>)> {
    let retry = Retry::default();
    let sample = message::sample();
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    for sink in &cfg.sinks {
        let result = match send::Target::new(sink, retry.attempt) {
            Err(e) => Err(e.to_string()),
            Ok(target) => {
                let payload = match &sink.kind {
                    Kind::Smtp(s) => {
                        let m = message::of(&sample);
                        Some(send::Payload::Mail {
                            to: to.unwrap_or(&s.from).to_string(),
                            subject: message::subject(&m),
                            body: message::plain(&m),
                        })
                    }
                    _ => send::payloads(cfg, sink, &sample, now).pop(),
                };
                match payload {
                    Some(p) => target.deliver(&p, retry.attempt).await.map_err(|f| f.to_string()),
                    None => Err("nothing to send".into()),
                }
            }
        };
        out.push((sink.name.clone(), result));
    }
    out
}
