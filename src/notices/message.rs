//! A notice written for people, without I/O: a chat message (Markdown, as Mattermost,
//! Rocket.Chat and Slack read it), a Matrix message, a CloudEvent, a mail's subject and
//! body. Written only from the notice's facts: who, what, for how long, why, the pin,
//! what is missing, and the command to run; never object data. Text the requester wrote
//! is quoted as code, so it can neither mention a channel nor pass for jitgate's words.

use crate::news::{Facts, Notice};
use jiff::Timestamp;

/// The words of a notice, from which every format is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// One line: what happened. Break-glass uses start with `🚨 BREAK-GLASS`.
    pub headline: String,
    /// Label and value, in order; values the requester wrote are marked `quoted`.
    pub fields: Vec<Field>,
    /// The commands to run, each complete.
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub label: &'static str,
    pub value: String,
    /// Written or chosen by a person (a reason, a name): shown as code, never as Markdown.
    pub quoted: bool,
}

const LOUD: &str = "🚨 BREAK-GLASS";

/// The message for a notice.
pub fn of(notice: &Notice) -> Message {
    let f = &notice.facts;
    let what = if f.object.is_empty() {
        String::new()
    } else {
        format!("{} {}", f.operations, f.object)
    };
    let requester = f.requester.as_str();
    let headline = match notice.reason {
        "RequestFiled" => format!("{requester} asks for {what}"),
        "Approved" if f.still_needed == 0 && f.missing_levels.is_empty() => format!(
            "{} approved {requester}'s {what}: it is active",
            f.approvers_added.join(", ")
        ),
        "Approved" => format!("{} approved {requester}'s {what}", f.approvers_added.join(", ")),
        "Revoked" => format!("{requester}'s {what} was revoked before it expired"),
        "ExpiringSoon" => format!(
            "{requester}'s {what} expires in {}",
            f.duration
                .map(|d| crate::duration::human(d.max(jiff::SignedDuration::from_mins(1))))
                .unwrap_or_else(|| "a few minutes".into())
        ),
        "Expired" => format!("{requester}'s {what} expired"),
        "BreakGlassUsed" => format!("{LOUD}: {requester} used a break-glass entry for {what}"),
        "Denied" => format!("{what} by {requester} was denied"),
        // Grants and anything newer: the Event's own note.
        _ => notice.note.clone(),
    };
    let headline = if f.break_glass && !headline.starts_with(LOUD) {
        format!("{LOUD}: {headline}")
    } else {
        headline
    };
    Message {
        headline,
        fields: fields(notice.reason, f),
        commands: commands(notice.reason, f),
    }
}

fn fields(reason: &str, f: &Facts) -> Vec<Field> {
    let mut out = Vec::new();
    let mut add = |label: &'static str, value: String, quoted: bool| {
        if !value.is_empty() {
            out.push(Field { label, value, quoted });
        }
    };
    // Names a requester chooses (their name, the verb and object of a review): code too.
    add("Requester", f.requester.clone(), true);
    add("Operations", f.operations.clone(), true);
    add("Object", f.object.clone(), true);
    if let Some(d) = f.duration.filter(|_| reason == "RequestFiled") {
        add("For", crate::duration::human(d), false);
    }
    if let Some(at) = f.expires_at {
        add("Until", at.to_string(), false);
    }
    add("Reason", f.justification.clone(), true);
    if f.key.is_some() && reason != "Denied" {
        add(
            "Change",
            match &f.change {
                Some(pin) => format!("pinned to exactly one change: {pin}"),
                None => "any change within the scope above".into(),
            },
            false,
        );
    }
    add("Policies", f.policies.join(", "), false);
    if matches!(reason, "RequestFiled" | "Approved") {
        if f.still_needed > 0 {
            add(
                "Still needed",
                format!(
                    "{} approver{} other than the requester",
                    f.still_needed,
                    if f.still_needed == 1 { "" } else { "s" }
                ),
                false,
            );
        }
        add("Missing levels", f.missing_levels.join("; "), false);
        add("Approvers", f.approver_groups.join(", "), false);
    }
    out
}

fn commands(reason: &str, f: &Facts) -> Vec<String> {
    let Some(key) = &f.key else {
        return f.ask.iter().cloned().collect();
    };
    match reason {
        "RequestFiled" => vec![
            format!("kubectl jitgate show {key}"),
            format!("kubectl jitgate approve {key}"),
        ],
        "Approved" => vec![format!("kubectl jitgate wait {key}")],
        "BreakGlassUsed" => vec![
            format!("kubectl jitgate show {key}"),
            format!("kubectl jitgate approve {key}"),
        ],
        _ => vec![format!("kubectl jitgate show {key}")],
    }
}

/// The longest message body (bytes): a chat text, a mail's body. The facts are clipped
/// already; this bounds what a message adds up to.
pub const BODY_MAX: usize = 16 * 1024;

/// True for a character that changes how text around it reads without being seen:
/// Unicode's format characters (Cf: bidi overrides and isolates such as U+202E, zero
/// widths, joiners, the soft hyphen, tags) and the line and paragraph separators (Zl,
/// Zp), which some clients break lines at. Their code points, by hand.
pub fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

/// One line of what people read: control characters become spaces, invisible ones go.
fn one_line(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars()
        .filter(|c| !invisible(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
}

/// Code, as Markdown: one line, backticks taken out (a code span cannot hold one
/// safely), and angle brackets made look-alikes (Slack reads `<!channel>` and
/// `<url|text>` even in code).
fn code(s: &str) -> String {
    let one_line: String = one_line(s)
        .map(|c| match c {
            '`' => '\'',
            '<' => '‹',
            '>' => '›',
            c => c,
        })
        .collect();
    format!("`{one_line}`")
}

/// The chat message: Markdown.
pub fn markdown(m: &Message) -> String {
    let mut out = format!("**{}**\n", escape(&m.headline));
    for f in &m.fields {
        let value = if f.quoted {
            code(&f.value)
        } else {
            escape(&f.value)
        };
        out.push_str(&format!("- {}: {value}\n", f.label));
    }
    for c in &m.commands {
        out.push_str(&format!("\n{}", code(c)));
    }
    crate::news::clipped(out, BODY_MAX)
}

/// Markdown's active characters and mentions taken out of our own words (names come from
/// the cluster, and a username could be `@channel`).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut after_word = false;
    for c in one_line(s) {
        let word = c.is_alphanumeric();
        match c {
            '<' => out.push('‹'),
            '>' => out.push('›'),
            // A backslash too: else `\[` would undo the escape of `[`.
            '\\' | '*' | '_' | '`' | '[' | ']' | '(' | ')' | '!' | '~' | '|' | '#' => {
                out.push('\\');
                out.push(c)
            }
            // A word joiner after an @ that starts a word keeps a name from mentioning
            // anyone (`@channel`); `alice@example.com` stays as it is.
            '@' if !after_word => out.push_str("@\u{2060}"),
            c => out.push(c),
        }
        after_word = word;
    }
    out
}

/// Plain text: a mail's body, Matrix's `body`.
pub fn plain(m: &Message) -> String {
    let mut out: String = one_line(&m.headline).collect();
    out.push_str("\n\n");
    for f in &m.fields {
        let value: String = one_line(&f.value).collect();
        out.push_str(&format!("{}: {value}\n", f.label));
    }
    if !m.commands.is_empty() {
        out.push('\n');
        for c in &m.commands {
            let c: String = one_line(c).collect();
            out.push_str(&format!("    {c}\n"));
        }
    }
    crate::news::clipped(out, BODY_MAX)
}

/// A mail's subject.
pub fn subject(m: &Message) -> String {
    let line: String = one_line(&m.headline).collect();
    crate::news::clipped(format!("[jitgate] {line}"), crate::news::NAME_MAX * 2)
}

/// The Slack-compatible body of an incoming webhook.
pub fn chat_body(m: &Message) -> serde_json::Value {
    serde_json::json!({ "text": markdown(m) })
}

/// A Matrix `m.room.message`. Its empty `m.mentions` says it mentions nobody, so no
/// client notifies a room or a user for a name in the text (a reason saying `@room`).
pub fn matrix_body(m: &Message) -> serde_json::Value {
    serde_json::json!({ "msgtype": "m.text", "body": plain(m), "m.mentions": {} })
}

/// The CloudEvents type of a reason: `dev.jitgate.request.filed`, ….
pub fn event_type(reason: &str) -> String {
    let what = match reason {
        "RequestFiled" => "request.filed",
        "Approved" => "request.approved",
        "Revoked" => "approval.revoked",
        "ExpiringSoon" => "approval.expiring",
        "Expired" => "approval.expired",
        "BreakGlassUsed" => "breakglass.used",
        "Denied" => "request.denied",
        "GrantCreated" => "grant.created",
        "GrantFound" => "grant.found",
        "GrantRemoved" => "grant.removed",
        _ => "notice",
    };
    format!("dev.jitgate.{what}")
}

/// A CloudEvent 1.0 in structured mode: its id is the notice's name, the same on every
/// replica and every retry, so a receiver can drop a repeat.
pub fn cloudevent(notice: &Notice, m: &Message, time: Timestamp) -> serde_json::Value {
    let f = &notice.facts;
    serde_json::json!({
        "specversion": "1.0",
        "id": notice.name,
        "source": "jitgate.dev/jitgate",
        "type": event_type(notice.reason),
        "subject": f.object,
        "time": time.to_string(),
        "datacontenttype": "application/json",
        "data": {
            "reason": notice.reason,
            "headline": m.headline,
            "requester": f.requester,
            "operations": f.operations,
            "object": f.object,
            "justification": f.justification,
            "policies": f.policies,
            "approverGroups": f.approver_groups,
            "key": f.key,
            "expiresAt": f.expires_at.map(|t| t.to_string()),
            "change": f.change,
            "stillNeeded": f.still_needed,
            "missingLevels": f.missing_levels,
            "approvedBy": f.approvers_added,
            "breakGlass": f.break_glass,
            "commands": m.commands,
            "note": notice.note,
        },
    })
}

/// A sample notice for `jitgate notify test`.
pub fn sample() -> Notice {
    let now = Timestamp::now();
    Notice {
        name: format!("jitgate.test-{}", now.as_millisecond()),
        namespace: "jitgate-system".into(),
        reason: "RequestFiled",
        warning: false,
        action: "Request",
        note: "a test of jitgate's notifications".into(),
        regarding: crate::news::Regarding {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "jitgate-system".into(),
            name: "jitgate-approvals".into(),
            uid: None,
        },
        related: None,
        facts: Facts {
            requester: "user:jitgate-test".into(),
            operations: "UPDATE".into(),
            object: "example/secrets/example".into(),
            justification: "a test of jitgate's notifications: nothing to approve".into(),
            key: Some("jitgate-notify-test".into()),
            expires_at: Some(now + jiff::SignedDuration::from_hours(1)),
            duration: Some(jiff::SignedDuration::from_hours(1)),
            still_needed: 1,
            ..Facts::default()
        },
    }
}

#[cfg(test)]
mod tests;
