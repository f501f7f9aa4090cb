//! Durations as policies, approvals and flags write them (`4h`, `30m`, `1h30m`), read and
//! written back. Imports nothing of the crate.

use jiff::SignedDuration;

/// A positive duration such as `4h`, `30m` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let d: SignedDuration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like 4h or 30m: {e}"))?;
    if d <= SignedDuration::ZERO {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(d)
}

/// `4h`, `90m`, `1h30m`.
pub fn human(d: SignedDuration) -> String {
    let mins = d.as_mins();
    match (mins / 60, mins % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written_and_are_written_in_hours_and_minutes() {
        assert_eq!(parse_duration("1h30m").unwrap(), SignedDuration::from_mins(90));
        assert!(parse_duration("0s").unwrap_err().contains("longer than zero"));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
        assert_eq!(human(SignedDuration::from_mins(90)), "1h30m");
        assert_eq!(human(SignedDuration::from_hours(4)), "4h");
        assert_eq!(human(SignedDuration::from_mins(45)), "45m");
    }
}
