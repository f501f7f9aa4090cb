//! How much may wait, without I/O. Each sink's queue holds at most [`SINK_QUEUE`] notices
//! (a notice mailed to many recipients is one) and [`SINK_BYTES`] bytes, of which denials
//! (news anyone can make, by being denied) take at most a quarter: a flood of denials
//! cannot push out a request or a break-glass use. And a user's denials make at most
//! [`DENIALS_PER_USER`] messages a minute, however they vary the object to dodge the
//! once-a-minute limit of the Events.

use std::collections::HashMap;

/// Notices waiting for one sink (a notice mailed to many recipients is one); past this,
/// new ones for it are dropped.
pub const SINK_QUEUE: usize = 256;
/// Bytes of messages waiting for one sink; past this, new ones for it are dropped.
pub const SINK_BYTES: usize = 1024 * 1024;
/// The part of a sink's queue denials may take: messages, and bytes.
pub const DENIED_QUEUE: usize = SINK_QUEUE / 4;
pub const DENIED_BYTES: usize = SINK_BYTES / 4;
/// Denial notices told of one user in a minute; the rest are dropped.
pub const DENIALS_PER_USER: u32 = 5;
/// Users whose denials are counted in one minute; past this, further users' denials
/// that minute are dropped (the map stays bounded).
const USERS_PER_MINUTE: usize = 10_000;

/// What waits for one sink.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Queued {
    jobs: usize,
    bytes: usize,
    denied_jobs: usize,
    denied_bytes: usize,
}

impl Queued {
    /// Takes a message of `bytes` into the queue if it fits (a denial, in the denials'
    /// part); false: drop it.
    pub fn admit(&mut self, denied: bool, bytes: usize) -> bool {
        let fits = self.jobs < SINK_QUEUE
            && self.bytes.saturating_add(bytes) <= SINK_BYTES
            && (!denied
                || (self.denied_jobs < DENIED_QUEUE
                    && self.denied_bytes.saturating_add(bytes) <= DENIED_BYTES));
        if fits {
            self.jobs += 1;
            self.bytes += bytes;
            if denied {
                self.denied_jobs += 1;
                self.denied_bytes += bytes;
            }
        }
        fits
    }

    /// A message taken with [`Queued::admit`] is done with (sent or dropped).
    pub fn release(&mut self, denied: bool, bytes: usize) {
        self.jobs = self.jobs.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
        if denied {
            self.denied_jobs = self.denied_jobs.saturating_sub(1);
            self.denied_bytes = self.denied_bytes.saturating_sub(bytes);
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// How many denials of each user were told this minute.
#[derive(Debug, Default)]
pub struct Denials {
    minute: i64,
    told: HashMap<String, u32>,
}

impl Denials {
    /// True when a denial of `user` in `minute` (minutes since the epoch) may be told.
    pub fn allow(&mut self, user: &str, minute: i64) -> bool {
        if minute != self.minute {
            self.minute = minute;
            // A new map, not a cleared one: a minute of many users leaves no capacity behind.
            self.told = HashMap::new();
        }
        if let Some(n) = self.told.get_mut(user) {
            *n += 1;
            return *n <= DENIALS_PER_USER;
        }
        if self.told.len() >= USERS_PER_MINUTE {
            return false;
        }
        self.told.insert(user.to_string(), 1);
        true
    }
}

#[cfg(test)]
mod tests;
