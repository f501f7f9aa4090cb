//! Multi-level approval: a policy may ask for approvers from several groups at once (one
//! team lead *and* one security officer). Each level names groups and a count; an approval
//! meets the levels when distinct people fill every level's count, each person in one
//! level only, each counted under the groups they approve as.

use crate::pattern::{self, Pattern};

/// One level of `spec.approval.levels`: `count` distinct approvers from `groups`.
#[derive(Debug, Clone)]
pub struct Level {
    pub groups: Vec<Pattern>,
    pub count: u32,
}

impl PartialEq for Level {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.same_groups(other)
    }
}

impl Eq for Level {}

impl Level {
    fn same_groups(&self, other: &Level) -> bool {
        self.groups.len() == other.groups.len()
            && self
                .groups
                .iter()
                .zip(&other.groups)
                .all(|(a, b)| a.as_str() == b.as_str())
    }

    /// True when someone approving as `groups` may fill this level.
    pub fn admits<'g>(&self, mut groups: impl Iterator<Item = &'g str>) -> bool {
        groups.any(|g| pattern::any_matches(&self.groups, g))
    }

    /// `1 of team-leads`, `2 of security or audit`.
    pub fn describe(&self, count: u32) -> String {
        let groups: Vec<&str> = self.groups.iter().map(Pattern::as_str).collect();
        format!("{count} of {}", groups.join(" or "))
    }
}

/// The levels of several gating policies together: a level that two policies both ask
/// for (the same groups) is asked once, with the larger count; different levels all apply.
pub fn merge<'p>(levels: impl IntoIterator<Item = &'p Level>) -> Vec<Level> {
    let mut merged: Vec<Level> = Vec::new();
    for level in levels {
        match merged.iter_mut().find(|m| m.same_groups(level)) {
            Some(m) => m.count = m.count.max(level.count),
            None => merged.push(level.clone()),
        }
    }
    merged
}

/// A level not met, and how many approvers it still lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    pub level: usize,
    pub missing: u32,
}

/// The levels that distinct people, each approving as the groups given, leave unmet: a
/// maximum matching of people to the levels' seats, so that one person fills one seat.
/// Empty when every level is met.
pub fn unmet<'g, P: AsRef<[&'g str]>>(levels: &[Level], people: &[P]) -> Vec<Unmet> {
    // One seat per approver a level needs. Counts are small; a level asking for more
    // seats than there are people cannot be met anyway, so seats are capped by people.
    let cap = people.len() as u32;
    let seats: Vec<usize> = levels
        .iter()
        .enumerate()
        .flat_map(|(i, l)| std::iter::repeat_n(i, l.count.min(cap + 1) as usize))
        .collect();
    let fits: Vec<Vec<bool>> = people
        .iter()
        .map(|groups| {
            levels
                .iter()
                .map(|l| l.admits(groups.as_ref().iter().copied()))
                .collect()
        })
        .collect();
    // seat → person holding it.
    let mut holder: Vec<Option<usize>> = vec![None; seats.len()];
    for person in 0..people.len() {
        let mut seen = vec![false; seats.len()];
        seat(person, &seats, &fits, &mut holder, &mut seen);
    }
    let mut out = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        let filled = seats
            .iter()
            .zip(&holder)
            .filter(|(l, h)| **l == i && h.is_some())
            .count() as u32;
        if filled < level.count {
            out.push(Unmet {
                level: i,
                missing: level.count - filled,
            });
        }
    }
    out
}

/// Kuhn's augmenting path: gives `person` a seat, moving others along if need be.
fn seat(
    person: usize,
    seats: &[usize],
    fits: &[Vec<bool>],
    holder: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    for s in 0..seats.len() {
        if seen[s] || !fits[person][seats[s]] {
            continue;
        }
        seen[s] = true;
        let free = match holder[s] {
            None => true,
            Some(other) => seat(other, seats, fits, holder, seen),
        };
        if free {
            holder[s] = Some(person);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn level(groups: &[&str], count: u32) -> Level {
        Level {
            groups: groups.iter().map(|g| Pattern::new(g).unwrap()).collect(),
            count,
        }
    }

    #[test]
    fn each_level_needs_its_own_people() {
        let levels = [level(&["team-leads"], 1), level(&["security"], 1)];
        assert_eq!(
            unmet(&levels, &[vec!["team-leads"]]),
            [Unmet { level: 1, missing: 1 }]
        );
        assert!(unmet(&levels, &[vec!["team-leads"], vec!["security"]]).is_empty());
        // One person in both groups fills one seat, not two.
        assert_eq!(unmet(&levels, &[vec!["team-leads", "security"]]).len(), 1);
        assert!(unmet(&levels, &[vec!["team-leads", "security"], vec!["team-leads"]]).is_empty());
        // A person with no groups (an approver whose groups were not recorded) fills none.
        assert_eq!(unmet(&levels, &[vec![], vec![]]).len(), 2);
    }

    #[test]
    fn a_level_can_ask_for_several_and_globs_match() {
        let levels = [level(&["sec-*"], 2)];
        assert_eq!(
            unmet(&levels, &[vec!["sec-eu"]]),
            [Unmet { level: 0, missing: 1 }]
        );
        assert!(unmet(&levels, &[vec!["sec-eu"], vec!["sec-us"]]).is_empty());
    }

    #[test]
    fn merging_keeps_the_larger_count_of_the_same_level() {
        let a = [level(&["leads"], 1), level(&["security"], 1)];
        let b = [level(&["leads"], 2)];
        let merged = merge(a.iter().chain(&b));
        assert_eq!(merged, [level(&["leads"], 2), level(&["security"], 1)]);
    }

    proptest! {
        /// The matching is as good as any assignment: when some way of seating the people
        /// meets every level, it is found (checked against brute force on small cases).
        #[test]
        fn matching_finds_a_seating_whenever_one_exists(
            counts in prop::collection::vec(1u32..3, 1..4),
            memberships in prop::collection::vec(prop::collection::vec(any::<bool>(), 3), 0..5),
        ) {
            let names = ["g0", "g1", "g2"];
            let levels: Vec<Level> = counts.iter().enumerate().map(|(i, c)| level(&[names[i]], *c)).collect();
            let people: Vec<Vec<&str>> = memberships
                .iter()
                .map(|m| names.iter().zip(m).filter(|(_, i)| **i).map(|(n, _)| *n).collect())
                .collect();
            // Brute force: every person picks one level or none.
            let choices = levels.len() + 1;
            let mut possible = false;
            for mut code in 0..choices.pow(people.len() as u32) {
                let mut filled = vec![0u32; levels.len()];
                let mut ok = true;
                for p in &people {
                    let pick = code % choices;
                    code /= choices;
                    if pick < levels.len() {
                        if !levels[pick].admits(p.iter().copied()) { ok = false; break; }
                        filled[pick] += 1;
                    }
                }
                if ok && filled.iter().zip(&levels).all(|(f, l)| *f >= l.count) {
                    possible = true;
                    break;
                }
            }
            prop_assert_eq!(unmet(&levels, &people).is_empty(), possible);
        }
    }
}
