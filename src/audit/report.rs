//! `jitgate audit report`: the story of every approval, told from the records alone.
//!
//! Per approval (an approvals ConfigMap key, `<configmap>/<key>`, which its `approval`
//! records name as `key` and the decisions it allowed name as `approval`): who requested
//! it and why, who approved or signed it and when, what it allowed and until when, every
//! decision that named it (uses, and refusals such as `uses_exhausted`) with its outcome
//! and time, and how it ended: revoked (by whom), removed after expiry, uses spent,
//! expired, or still live at the end of the records; with `serve --grants rbac`, when its
//! Role and RoleBinding were created and removed, by which replica and why. Then
//! break-glass entries with their uses and review, every denial that named no approval,
//! and the grants' records that named no approval (a labelled Role or RoleBinding without
//! jitgate's annotation, or with an empty one: found standing or removed). Whatever a
//! record holds is printed on its line, its control characters as escapes.
//!
//! Records are read from any mix of files and streams, as `audit verify` reads them (run
//! that first: the report believes the records it is given); a record seen twice (same
//! chain and seq) counts once. A key used again after its entry ended starts a new story.

use super::read::Filter;
use super::verify::record_in;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

/// One thing that happened to an approval, or one denial: a row of the report.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// The approval's id; empty for a denial, or a grant's record, that named none.
    pub approval: Arc<str>,
    /// `requested`, `break_glass`, `approved`, `signed`, `reviewed`, `shortened`, `use`
    /// (a decision under it that was not denied), `refused` (one that was), `revoked`,
    /// `removed_expired`, `uses_spent`, `expired`, `live`; `grant_created`,
    /// `grant_found` (its RoleBinding found standing, not marked as recorded) and
    /// `grant_removed` (its Role and RoleBinding, `serve --grants rbac`); `denied` for a
    /// denial that named no approval.
    pub event: &'static str,
    pub time: String,
    /// Who: the editor of an approval change, the requester of a decision, the replica
    /// that created, found or removed a grant's objects.
    pub user: Arc<str>,
    pub operation: Arc<str>,
    pub resource: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// A decision's `decision` (allow, deny, warn, dryrun).
    pub outcome: Arc<str>,
    /// A decision's reason code, or the reason a request gave.
    pub reason: Arc<str>,
    pub policy: Arc<str>,
    /// What else there is to say: for whom, approvers counted, signers, expiry.
    pub detail: String,
}

/// The story of one approval (or break-glass entry).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Story {
    pub id: String,
    pub break_glass: bool,
    /// `user:<name>` or `group:<name>`, as its records say.
    pub requester: Option<String>,
    pub reason: Option<String>,
    /// What it allows: `[operations] resource namespace/name`.
    pub allows: Option<String>,
    pub expires_at: Option<String>,
    /// Everything that happened to it, in time order, the last row saying how it ended.
    pub events: Vec<Row>,
    #[serde(skip)]
    ended: bool,
    #[serde(skip)]
    uses_spent: Option<String>,
    /// One of its grant records passed every filter (under `--user`: named that user).
    #[serde(skip)]
    names_user: bool,
}

/// What `jitgate audit report` prints.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub approvals: Vec<Story>,
    pub break_glass: Vec<Story>,
    /// Denials that named no approval.
    pub denials: Vec<Row>,
    /// Grants' records (`serve --grants rbac`) that named no approval: a Role or
    /// RoleBinding with the grants' label but not jitgate's annotation (or an empty one),
    /// found standing or removed.
    pub grants_without_approval: Vec<Row>,
    /// The time of the last record read: "still live" means live then.
    pub records_end: Option<String>,
}

/// Builds a [`Report`] from records.
#[derive(Debug, Default)]
pub struct Reporter {
    filter: Filter,
    /// Stories by approval id; the last is the current one.
    stories: BTreeMap<String, Vec<Story>>,
    denials: Vec<Row>,
    /// Grants' records that named no approval.
    unclaimed: Vec<Row>,
    seen: HashSet<(u64, u64)>,
    end: Option<Timestamp>,
    /// One copy of each name, however many rows hold it.
    names: Names,
}

/// Interned strings: a report over a million records holds a name once.
#[derive(Debug, Default)]
struct Names(HashSet<Arc<str>>);

impl Names {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(name) = self.0.get(s) {
            return name.clone();
        }
        let name: Arc<str> = s.into();
        self.0.insert(name.clone());
        name
    }
}

fn s<'a>(r: &'a Value, key: &str) -> &'a str {
    r.get(key).and_then(Value::as_str).unwrap_or("")
}

impl Reporter {
    /// Keeps what `filter` keeps; its `policy` is matched by decisions only (approval
    /// records name no policy), and then an approval is shown when one of its decisions
    /// is.
    pub fn new(filter: Filter) -> Reporter {
        Reporter {
            filter,
            ..Reporter::default()
        }
    }

    /// Reads every line of `source`; lines that are not records are skipped.
    pub fn read(&mut self, source: impl Read) -> std::io::Result<()> {
        let mut reader = BufReader::with_capacity(256 * 1024, source);
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            // Sealed records only: other JSON lines (jitgate's own logs) are not records.
            if let Some(record) = record_in(&line)
                && let Ok(r) = serde_json::from_slice::<Value>(record)
                && r.get("hash").is_some_and(Value::is_string)
            {
                self.add(&r);
            }
        }
    }

    /// Takes one sealed record.
    pub fn add(&mut self, r: &Value) {
        if let Some(seq) = r.get("seq").and_then(Value::as_u64) {
            use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
            let chain = BuildHasherDefault::<DefaultHasher>::default().hash_one(s(r, "chain"));
            if !self.seen.insert((chain, seq)) {
                return;
            }
        }
        if let Ok(at) = s(r, "timestamp").parse::<Timestamp>() {
            self.end = Some(self.end.map_or(at, |e| e.max(at)));
        }
        // A grant's removal may name no subject: its records are kept by the story they
        // belong to, not by the user asked for.
        let policy_free = Filter {
            policy: None,
            user: self.filter.user.clone().filter(|_| s(r, "event") != "grant"),
            ..self.filter.clone()
        };
        if !policy_free.keeps(r) {
            return;
        }
        match s(r, "event") {
            "approval" => self.change(r),
            "grant" => self.grant(r),
            "decision" | "authorization" => {
                if !self.filter.keeps(r) {
                    return;
                }
                let row = decision_row(r, &mut self.names);
                match r.get("approval").and_then(Value::as_str) {
                    Some(id) => {
                        let story = self.current(id);
                        if &*row.reason == "uses_exhausted" && story.uses_spent.is_none() {
                            story.uses_spent = Some(row.time.clone());
                        }
                        story.events.push(row);
                    }
                    None if &*row.outcome == "deny" && !row.user.is_empty() => self.denials.push(row),
                    None => {}
                }
            }
            _ => {}
        }
    }

    /// The current story of `id`, begun if there is none.
    fn current(&mut self, id: &str) -> &mut Story {
        let stories = self.stories.entry(id.to_string()).or_default();
        if stories.is_empty() {
            stories.push(Story::new(id));
        }
        stories.last_mut().expect("one at least")
    }

    /// A grant's Role and RoleBinding created, found or removed (`serve --grants rbac`). One
    /// that names no approval (a labelled RoleBinding without jitgate's annotation: made by
    /// hand, or its annotation taken off) is no approval's story, and is told on its own.
    fn grant(&mut self, r: &Value) {
        let id = r
            .get("approval")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        // Whether it passes every filter, `--user` its subject's: a story of grant rows
        // alone is told, under `--user`, when one of them names that user.
        let kept = self.filter.keeps(r);
        if id.is_none() && !kept {
            return;
        }
        let event = match s(r, "action") {
            "created" => "grant_created",
            "found" => "grant_found",
            "removed" => "grant_removed",
            _ => return,
        };
        let mut detail = vec![s(r, "objects").to_string()];
        if let Some(binds) = r.get("binds").and_then(Value::as_str) {
            detail.push(format!("binding {binds}"));
        }
        if let Some(subject) = r.get("subject").and_then(Value::as_str) {
            detail.push(format!("for {subject}"));
        }
        if event != "grant_removed"
            && let Some(until) = r.get("expiresAt").and_then(Value::as_str)
        {
            detail.push(format!("until {until}"));
        }
        let row = Row {
            approval: self.names.get(id.unwrap_or_default()),
            event,
            time: s(r, "timestamp").to_string(),
            user: self.names.get(s(r, "replica")),
            namespace: self.names.get(s(r, "namespace")),
            name: self.names.get(s(r, "name")),
            reason: r.get("why").and_then(Value::as_str).unwrap_or_default().into(),
            detail: detail.join(" "),
            ..Row::default()
        };
        match id {
            Some(id) => {
                let story = self.current(id);
                story.names_user |= kept;
                story.events.push(row);
            }
            None => self.unclaimed.push(row),
        }
    }

    fn change(&mut self, r: &Value) {
        let id = s(r, "key");
        let action = s(r, "action");
        let begins = matches!(action, "requested" | "break_glass");
        if begins
            && self
                .stories
                .get(id)
                .and_then(|v| v.last())
                .is_some_and(|story| story.ended)
        {
            self.stories.get_mut(id).expect("checked").push(Story::new(id));
        }
        let (approval, editor) = (self.names.get(id), self.names.get(s(r, "editor")));
        let story = self.current(id);
        if let Some(requester) = r.get("requester").and_then(Value::as_str) {
            story.requester = Some(requester.to_string());
        }
        if let Some(reason) = r.get("reason").and_then(Value::as_str) {
            story.reason = Some(reason.to_string());
        }
        if let Some(expires) = r.get("expiresAt").and_then(Value::as_str) {
            story.expires_at = Some(expires.to_string());
        }
        if let Some(scope) = r.get("scope").filter(|v| v.is_object()) {
            story.allows = Some(allows(scope));
        }
        story.break_glass |= action == "break_glass";
        let event = match action {
            "requested" => "requested",
            "break_glass" => "break_glass",
            "approved" => "approved",
            "signed" => "signed",
            "reviewed" => "reviewed",
            "shortened" => "shortened",
            "revoked" => "revoked",
            "expired_on_edit" => "removed_expired",
            _ => "changed",
        };
        if matches!(event, "revoked" | "removed_expired") {
            story.ended = true;
        }
        let counted = match (r.get("approvers").and_then(Value::as_u64), r.get("required")) {
            (Some(n), Some(Value::Number(req))) => format!("{n} of {req} approvers"),
            (Some(n), _) => format!("{n} approvers"),
            _ => String::new(),
        };
        let signed = r
            .get("signedBy")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let mut detail = Vec::new();
        if event == "requested" || event == "break_glass" {
            detail.push(format!("for {}", story.requester.as_deref().unwrap_or("-")));
        }
        if !counted.is_empty() && event != "revoked" && event != "removed_expired" {
            detail.push(counted);
        }
        if !signed.is_empty() {
            detail.push(format!("signed by {signed}"));
        }
        if event == "shortened" || event == "requested" || event == "break_glass" {
            detail.push(format!("until {}", story.expires_at.as_deref().unwrap_or("-")));
        }
        story.events.push(Row {
            approval,
            event,
            time: s(r, "timestamp").to_string(),
            user: editor,
            reason: if begins {
                story.reason.as_deref().unwrap_or_default().into()
            } else {
                Arc::default()
            },
            detail: detail.join("; "),
            ..Row::default()
        });
    }

    /// The report, each story closed by how it ended.
    pub fn finish(self) -> Report {
        let end = self.end.map(|t| t.to_string());
        let mut report = Report {
            records_end: end.clone(),
            denials: self.denials,
            grants_without_approval: self.unclaimed,
            ..Report::default()
        };
        for mut story in self.stories.into_values().flatten() {
            if self.filter.policy.is_some() && !story.events.iter().any(|e| !e.outcome.is_empty()) {
                continue;
            }
            if self.filter.user.is_some()
                && !story.names_user
                && story.events.iter().all(|e| e.event.starts_with("grant_"))
            {
                continue;
            }
            story.events.sort_by(|a, b| a.time.cmp(&b.time));
            if !story.ended {
                let expiry = story
                    .expires_at
                    .as_deref()
                    .and_then(|e| e.parse::<Timestamp>().ok())
                    .filter(|e| self.end.is_some_and(|end| *e <= end));
                let (event, time) = if let Some(at) = story.uses_spent.clone() {
                    ("uses_spent", at)
                } else if let Some(at) = expiry {
                    ("expired", at.to_string())
                } else {
                    ("live", end.clone().unwrap_or_default())
                };
                story.events.push(Row {
                    approval: story.id.as_str().into(),
                    event,
                    time,
                    ..Row::default()
                });
            }
            if story.break_glass {
                report.break_glass.push(story);
            } else {
                report.approvals.push(story);
            }
        }
        report.denials.sort_by(|a, b| a.time.cmp(&b.time));
        report.grants_without_approval.sort_by(|a, b| a.time.cmp(&b.time));
        report
    }
}

impl Story {
    fn new(id: &str) -> Story {
        Story {
            id: id.to_string(),
            break_glass: false,
            requester: None,
            reason: None,
            allows: None,
            expires_at: None,
            events: Vec::new(),
            ended: false,
            uses_spent: None,
            names_user: false,
        }
    }
}

/// `s` on one line: every control character (a line break, an escape sequence) written as
/// its escape, so that a name in a record (a RoleBinding's subject is whatever its maker
/// wrote) cannot start a line of the report of its own or paint the terminal.
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

fn allows(scope: &Value) -> String {
    let part = |k: &str| scope.get(k).and_then(Value::as_str).unwrap_or("");
    let ops = scope
        .get("operations")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| "any operation".to_string());
    let group = part("apiGroup");
    let resource = if group.is_empty() {
        part("resource").to_string()
    } else {
        format!("{}.{group}", part("resource"))
    };
    let name = part("name");
    format!(
        "{ops} on {resource} {}/{}",
        part("namespace"),
        if name.is_empty() { "*" } else { name }
    )
}

fn decision_row(r: &Value, names: &mut Names) -> Row {
    let sub = s(r, "subResource");
    let mut name = |k: &str| names.get(s(r, k));
    Row {
        approval: name("approval"),
        event: match (s(r, "approval").is_empty(), s(r, "decision")) {
            (true, _) => "denied",
            (false, "deny") => "refused",
            (false, _) => "use",
        },
        time: s(r, "timestamp").to_string(),
        user: name("user"),
        operation: name("operation"),
        resource: if sub.is_empty() {
            name("resource")
        } else {
            format!("{}/{sub}", s(r, "resource")).into()
        },
        namespace: name("namespace"),
        name: name("name"),
        outcome: name("decision"),
        reason: name("reason"),
        policy: name("policy"),
        detail: String::new(),
    }
}

impl Row {
    fn what(&self) -> String {
        format!(
            "{} {} {}/{}: {} ({})",
            self.operation,
            self.resource,
            if self.namespace.is_empty() {
                "-"
            } else {
                &self.namespace
            },
            if self.name.is_empty() { "-" } else { &self.name },
            self.outcome,
            self.reason
        )
    }

    /// One line for people.
    fn text(&self) -> String {
        let mut line = format!("  {:<16} {}", self.event, self.time);
        let _ = match self.event {
            "use" | "refused" | "denied" => write!(line, "  {} {}", self.user, self.what()),
            "live" => write!(line, "  still live at the end of the records"),
            "expired" => write!(line, "  expired"),
            "uses_spent" => write!(line, "  its uses were spent: first refused then"),
            _ => write!(line, "  by {}", self.user),
        };
        if !self.reason.is_empty() && !matches!(self.event, "use" | "refused" | "denied") {
            let _ = write!(line, ": {:?}", self.reason);
        }
        if !self.detail.is_empty() {
            let _ = write!(line, " ({})", self.detail);
        }
        one_line(&line).into_owned()
    }

    const HEADER: [&'static str; 12] = [
        "approval",
        "event",
        "time",
        "user",
        "operation",
        "resource",
        "namespace",
        "name",
        "outcome",
        "reason",
        "policy",
        "detail",
    ];

    fn cells(&self) -> [&str; 12] {
        [
            &self.approval,
            self.event,
            &self.time,
            &self.user,
            &self.operation,
            &self.resource,
            &self.namespace,
            &self.name,
            &self.outcome,
            &self.reason,
            &self.policy,
            &self.detail,
        ]
    }
}

impl Report {
    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let story = |out: &mut String, kind: &str, st: &Story| {
            let _ = writeln!(out, "{kind} {}", one_line(&st.id));
            let _ = writeln!(
                out,
                "  allows           {} for {}",
                one_line(st.allows.as_deref().unwrap_or("(not in these records)")),
                one_line(st.requester.as_deref().unwrap_or("-"))
            );
            for e in &st.events {
                out.push_str(&e.text());
                out.push('\n');
            }
        };
        for st in &self.approvals {
            story(&mut out, "APPROVAL", st);
        }
        for st in &self.break_glass {
            story(&mut out, "BREAK-GLASS", st);
            if !st.events.iter().any(|e| e.event == "reviewed") {
                out.push_str("  NOT REVIEWED\n");
            }
        }
        let _ = writeln!(out, "DENIED WITHOUT AN APPROVAL ({})", self.denials.len());
        for d in &self.denials {
            let _ = writeln!(out, "{}  [{}]", d.text(), one_line(&d.policy));
        }
        if !self.grants_without_approval.is_empty() {
            let _ = writeln!(
                out,
                "GRANTS NAMING NO APPROVAL ({})",
                self.grants_without_approval.len()
            );
            for g in &self.grants_without_approval {
                let _ = writeln!(
                    out,
                    "{}  [{}/{}]",
                    g.text(),
                    one_line(&g.namespace),
                    one_line(&g.name)
                );
            }
        }
        let _ = writeln!(
            out,
            "records end at {}",
            self.records_end.as_deref().unwrap_or("- (no records)")
        );
        out
    }

    /// Every row, approvals first, then break-glass entries, then denials, then grants that
    /// named no approval.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.approvals
            .iter()
            .chain(&self.break_glass)
            .flat_map(|s| &s.events)
            .chain(&self.denials)
            .chain(&self.grants_without_approval)
    }

    /// One row per event (RFC 4180).
    pub fn csv(&self) -> String {
        let mut out = String::new();
        let mut line = |cells: &[&str]| {
            let quoted: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&quoted.join(","));
            out.push_str("\r\n");
        };
        line(&Row::HEADER);
        for row in self.rows() {
            line(&row.cells());
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The JSON, written to `out` as it is made.
    pub fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        out.write_all(b"\n")
    }
}

fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(seq: u64, at: &str, key: &str, action: &str, editor: &str, expires: &str) -> Value {
        json!({"timestamp": at, "event": "approval", "key": key, "action": action, "editor": editor,
            "requester": "user:alice", "reason": "INC-9", "expiresAt": expires,
            "scope": {"resource": "pods", "namespace": "prod", "name": null, "operations": ["CREATE"]},
            "approvers": 0, "required": 1, "chain": "c_1", "seq": seq, "hash": "h"})
    }

    /// `key` approved by bob at 10:00 (the first record), until 12:00.
    fn approved_at_ten(key: &str) -> Value {
        change(
            1,
            "2026-12-04T10:00:00Z",
            key,
            "approved",
            "bob",
            "2026-12-04T12:00:00Z",
        )
    }

    fn decision(seq: u64, at: &str, approval: Option<&str>, decision: &str, reason: &str) -> Value {
        json!({"timestamp": at, "event": "decision", "user": "alice", "operation": "CREATE",
            "resource": "pods", "namespace": "prod", "name": "debug", "decision": decision,
            "reason": reason, "policy": "prod-exec", "approval": approval,
            "chain": "c_1", "seq": seq, "hash": "h"})
    }

    fn story(records: &[Value]) -> Report {
        story_of(records, Filter::default())
    }

    fn story_of(records: &[Value], filter: Filter) -> Report {
        let mut r = Reporter::new(filter);
        for record in records {
            r.add(record);
        }
        r.finish()
    }

    fn events(s: &Story) -> Vec<(&'static str, &str)> {
        s.events.iter().map(|e| (e.event, e.time.as_str())).collect()
    }

    fn grant(seq: u64, at: &str, key: &str, action: &str, objects: &str, why: Option<&str>) -> Value {
        json!({"timestamp": at, "event": "grant", "action": action, "approval": key,
            "namespace": "prod", "name": "jitgate-grant-1a2b", "objects": objects,
            "subject": (action != "removed").then_some("user:alice"),
            "binds": (action == "found").then_some("Role/jitgate-grant-1a2b"),
            "expiresAt": "2026-12-04T12:00:00Z", "why": why, "replica": "jitgate-0",
            "chain": "c_1", "seq": seq, "hash": "h"})
    }

    /// What whoever made a labelled RoleBinding controls (its approval annotation, its
    /// subjects' names) cannot hide it from the report nor write lines of its own there.
    #[test]
    fn a_hand_made_grant_cannot_hide_from_the_report_or_forge_lines_in_it() {
        let found = |seq: u64, approval: &str, subject: &str| {
            json!({"timestamp": "2026-12-04T10:31:00Z", "event": "grant", "action": "found",
                "approval": approval, "namespace": "prod", "name": "x", "objects": "RoleBinding",
                "subject": subject, "binds": "ClusterRole/admin", "why": "not marked as recorded",
                "replica": "jitgate-0", "chain": "c_1", "seq": seq, "hash": "h"})
        };
        let eve = |user: &str| Filter {
            user: Some(user.into()),
            ..Filter::default()
        };
        // An empty annotation names no approval.
        let report = story(&[found(1, "", "user:eve")]);
        assert!(report.approvals.is_empty());
        assert_eq!(report.grants_without_approval.len(), 1);
        // One that names another's approval is in that story, and under --user eve too.
        let forged = [found(1, "jitgate-approvals/db", "user:eve")];
        assert_eq!(story(&forged).approvals.len(), 1);
        assert_eq!(story_of(&forged, eve("eve")).approvals.len(), 1);
        assert!(story_of(&forged, eve("dave")).approvals.is_empty());
        // A subject's line break or escape sequence is written as its escape.
        let text = story(&[found(
            1,
            "",
            "user:eve\n  grant_removed    2026-12-04T10:40:00Z  by jitgate-0: \"not granted\"\u{1b}[2J",
        )])
        .text();
        assert!(!text.contains("\n  grant_removed"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("for user:eve\\n  grant_removed"), "{text}");
        assert_eq!(text.lines().filter(|l| l.contains("grant_")).count(), 1, "{text}");
    }

    #[test]
    fn a_grants_objects_are_told_in_its_story_when_they_were_created_and_removed_and_why() {
        let key = "jitgate-approvals/g";
        let records = [
            approved_at_ten(key),
            grant(
                2,
                "2026-12-04T10:00:01Z",
                key,
                "created",
                "Role,RoleBinding",
                None,
            ),
            decision(3, "2026-12-04T10:05:00Z", Some(key), "allow", "approved"),
            // Another replica's RoleBinding found standing without a record of its creation.
            grant(
                31,
                "2026-12-04T10:06:00Z",
                key,
                "found",
                "RoleBinding",
                Some("not marked as recorded"),
            ),
            change(
                4,
                "2026-12-04T10:30:00Z",
                key,
                "revoked",
                "carol",
                "2026-12-04T12:00:00Z",
            ),
            grant(
                5,
                "2026-12-04T10:30:01Z",
                key,
                "removed",
                "RoleBinding",
                Some("revoked"),
            ),
            grant(6, "2026-12-04T10:30:01Z", key, "removed", "Role", Some("revoked")),
            // Grant records naming no approval (a labelled RoleBinding without jitgate's
            // annotation, made by hand) are no approval's story, and are told on their own.
            json!({"timestamp": "2026-12-04T10:32:00Z", "event": "grant", "action": "removed",
                "namespace": "prod", "name": "x", "objects": "RoleBinding", "why": "not granted",
                "replica": "jitgate-0", "chain": "c_1", "seq": 8, "hash": "h"}),
            json!({"timestamp": "2026-12-04T10:31:00Z", "event": "grant", "action": "found",
                "namespace": "prod", "name": "x", "objects": "RoleBinding", "subject": "user:eve,user:mallory",
                "binds": "ClusterRole/admin", "why": "not marked as recorded",
                "replica": "jitgate-0", "chain": "c_1", "seq": 7, "hash": "h"}),
        ];
        let report = story(&records);
        assert_eq!(report.approvals.len(), 1);
        let g = &report.approvals[0];
        assert_eq!(
            events(g),
            [
                ("approved", "2026-12-04T10:00:00Z"),
                ("grant_created", "2026-12-04T10:00:01Z"),
                ("use", "2026-12-04T10:05:00Z"),
                ("grant_found", "2026-12-04T10:06:00Z"),
                ("revoked", "2026-12-04T10:30:00Z"),
                ("grant_removed", "2026-12-04T10:30:01Z"),
                ("grant_removed", "2026-12-04T10:30:01Z"),
            ]
        );
        let text = report.text();
        assert!(
            text.contains(
                "grant_created    2026-12-04T10:00:01Z  by jitgate-0 (Role,RoleBinding for user:alice until 2026-12-04T12:00:00Z)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "grant_found      2026-12-04T10:06:00Z  by jitgate-0: \"not marked as recorded\" (RoleBinding binding Role/jitgate-grant-1a2b for user:alice until 2026-12-04T12:00:00Z)"
            ),
            "{text}"
        );
        assert!(
            text.contains("grant_removed    2026-12-04T10:30:01Z  by jitgate-0: \"revoked\" (RoleBinding)"),
            "{text}"
        );
        assert_eq!(&*g.events[1].namespace, "prod");
        assert_eq!(&*g.events[1].name, "jitgate-grant-1a2b");
        let unclaimed: Vec<(&str, &str)> = report
            .grants_without_approval
            .iter()
            .map(|r| (r.event, r.time.as_str()))
            .collect();
        assert_eq!(
            unclaimed,
            [
                ("grant_found", "2026-12-04T10:31:00Z"),
                ("grant_removed", "2026-12-04T10:32:00Z")
            ]
        );
        assert!(
            text.contains(
                "GRANTS NAMING NO APPROVAL (2)\n  grant_found      2026-12-04T10:31:00Z  by jitgate-0: \"not marked as recorded\" (RoleBinding binding ClusterRole/admin for user:eve,user:mallory)  [prod/x]"
            ),
            "{text}"
        );
        assert_eq!(report.rows().count(), 9);
        assert!(
            report
                .csv()
                .contains("grant_found,2026-12-04T10:31:00Z,jitgate-0,,,prod,x"),
            "{}",
            report.csv()
        );

        // Asked for alice's, the story keeps its grant rows (a removal may name no subject);
        // asked for dave's, grant records alone make no story.
        let for_user = |user: &str| {
            let filter = Filter {
                user: Some(user.into()),
                ..Filter::default()
            };
            story_of(&records, filter)
        };
        let alices = for_user("alice");
        assert_eq!(events(&alices.approvals[0]), events(g));
        assert!(alices.grants_without_approval.is_empty());
        assert!(for_user("dave").approvals.is_empty());
        // Asked for mallory's, or eve's, the grant each held with no approval is told, though
        // the RoleBinding named both.
        for user in ["mallory", "eve"] {
            let theirs = for_user(user);
            assert!(theirs.approvals.is_empty());
            assert_eq!(theirs.grants_without_approval.len(), 1, "{user}");
        }
    }

    #[test]
    fn a_break_glass_entry_shows_its_uses_and_its_review_or_the_lack_of_one() {
        let key = "jitgate-approvals/bg";
        let records = [
            change(
                1,
                "2026-12-04T10:00:00Z",
                key,
                "break_glass",
                "alice",
                "2026-12-04T11:00:00Z",
            ),
            decision(2, "2026-12-04T10:01:00Z", Some(key), "allow", "break_glass"),
        ];
        let report = story(&records);
        assert!(report.approvals.is_empty());
        let bg = &report.break_glass[0];
        assert_eq!(
            events(bg),
            [
                ("break_glass", "2026-12-04T10:00:00Z"),
                ("use", "2026-12-04T10:01:00Z"),
                ("live", "2026-12-04T10:01:00Z")
            ]
        );
        assert!(report.text().contains("NOT REVIEWED"), "{}", report.text());
        let mut reviewed = records.to_vec();
        reviewed.push(change(
            3,
            "2026-12-04T10:30:00Z",
            key,
            "reviewed",
            "bob",
            "2026-12-04T11:00:00Z",
        ));
        let report = story(&reviewed);
        assert!(!report.text().contains("NOT REVIEWED"), "{}", report.text());
        assert_eq!(&*report.break_glass[0].events[2].user, "bob");
    }

    #[test]
    fn an_approval_ends_by_its_uses_by_its_expiry_and_a_reused_key_starts_a_new_story() {
        let key = "jitgate-approvals/k";
        let spent = story(&[
            approved_at_ten(key),
            decision(2, "2026-12-04T10:01:00Z", Some(key), "allow", "approved"),
            decision(3, "2026-12-04T10:02:00Z", Some(key), "deny", "uses_exhausted"),
        ]);
        assert_eq!(
            events(&spent.approvals[0])[2..],
            [
                ("refused", "2026-12-04T10:02:00Z"),
                ("uses_spent", "2026-12-04T10:02:00Z")
            ]
        );
        let expired = story(&[
            change(
                1,
                "2026-12-04T10:00:00Z",
                key,
                "approved",
                "bob",
                "2026-12-04T10:30:00Z",
            ),
            decision(2, "2026-12-04T11:00:00Z", None, "deny", "no_approval"),
        ]);
        assert_eq!(
            events(&expired.approvals[0])[1],
            ("expired", "2026-12-04T10:30:00Z")
        );
        assert_eq!(expired.denials.len(), 1);
        let reused = story(&[
            change(
                1,
                "2026-12-04T10:00:00Z",
                key,
                "requested",
                "alice",
                "2026-12-04T12:00:00Z",
            ),
            change(
                2,
                "2026-12-04T10:05:00Z",
                key,
                "revoked",
                "alice",
                "2026-12-04T12:00:00Z",
            ),
            change(
                3,
                "2026-12-04T10:10:00Z",
                key,
                "requested",
                "alice",
                "2026-12-04T12:00:00Z",
            ),
            // The same record again (a repeated log line) counts once.
            change(
                3,
                "2026-12-04T10:10:00Z",
                key,
                "requested",
                "alice",
                "2026-12-04T12:00:00Z",
            ),
        ]);
        assert_eq!(reused.approvals.len(), 2);
        assert_eq!(
            events(&reused.approvals[1]),
            [
                ("requested", "2026-12-04T10:10:00Z"),
                ("live", "2026-12-04T10:10:00Z")
            ]
        );
    }
}
