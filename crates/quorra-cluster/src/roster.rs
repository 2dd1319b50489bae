//! The roster: the members a cluster counts, whether they are up or down.
//!
//! Quorum sizes and replica sets must not depend on who happens to be reachable: a node
//! cut off from the others that counted only the members it can hear would shrink its
//! quorum to itself and acknowledge writes alone. So the cluster keeps a roster of
//! every member that has served (published `up`), and a member leaves it only when it
//! leaves gracefully (publishes `leaving`) or an operator forgets it (`QUORRA FORGET`),
//! never because a timer ran out on one side of a partition.
//!
//! The roster is a replicated set that only grows, except through tombstones:
//!
//! - an entry is a member id with the generation (start time) it was seen serving in,
//!   its addresses and zone;
//! - a tombstone (`gone`) says that an id's generations up to `g` have left or were
//!   forgotten. A restarted member has a higher generation and is admitted again.
//!
//! Every node publishes its roster in its own gossip state (`roster.<id>` and
//! `gone.<id>` keys) and merges what the others publish, so a node that joins learns of
//! members that died before it arrived, and a removal reaches nodes that were
//! partitioned when it happened. Merging is a union with "newest generation wins" and
//! "a tombstone beats every generation up to its own", which is commutative and
//! idempotent: every node that has heard the same gossip holds the same roster.
//!
//! A node keeps its roster in `<data-dir>/<node-id>.roster` so that, after a restart, it knows the
//! cluster it belongs to before any gossip arrives: it counts the members it remembers
//! (as down until heard from) and uses their addresses as extra seeds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use quorra_ring::NodeId;

use crate::membership::NodeAddresses;

/// Gossip key prefix of a published roster entry: `roster.<id>`.
pub const MEMBER_KEY_PREFIX: &str = "roster.";

/// Gossip key prefix of a published tombstone: `gone.<id>`.
pub const GONE_KEY_PREFIX: &str = "gone.";

/// One counted member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterEntry {
    /// The generation it was seen serving in.
    pub generation: u64,
    /// Its addresses in that generation.
    pub addresses: NodeAddresses,
    /// Its zone, if any.
    pub zone: Option<String>,
}

impl RosterEntry {
    /// The gossip value: `generation cluster resp http [zone]`.
    pub fn encode(&self) -> String {
        let mut text = format!(
            "{} {} {} {}",
            self.generation, self.addresses.cluster, self.addresses.resp, self.addresses.http
        );
        if let Some(zone) = &self.zone {
            let _ = write!(text, " {zone}");
        }
        text
    }

    /// Reads a gossip value written by [`encode`](Self::encode); `None` if malformed.
    pub fn decode(text: &str) -> Option<RosterEntry> {
        let mut words = text.splitn(5, ' ');
        let generation = words.next()?.parse().ok()?;
        let cluster = words.next()?.parse().ok()?;
        let resp = words.next()?.parse().ok()?;
        let http = words.next()?.parse().ok()?;
        let zone = words
            .next()
            .filter(|zone| !zone.is_empty())
            .map(str::to_owned);
        Some(RosterEntry {
            generation,
            addresses: NodeAddresses {
                resp,
                http,
                cluster,
            },
            zone,
        })
    }
}

/// The counted members and the tombstones of those that left or were forgotten.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roster {
    members: BTreeMap<NodeId, RosterEntry>,
    gone: BTreeMap<NodeId, u64>,
}

impl Roster {
    /// Counts `id` in `entry`'s generation, unless a tombstone covers that generation or
    /// a newer generation is already counted. Returns true if the roster changed.
    pub fn admit(&mut self, id: &NodeId, entry: RosterEntry) -> bool {
        if self
            .gone
            .get(id)
            .is_some_and(|&gone| gone >= entry.generation)
        {
            return false;
        }
        match self.members.get(id) {
            Some(kept) if kept.generation > entry.generation || *kept == entry => false,
            _ => {
                self.members.insert(id.clone(), entry);
                true
            }
        }
    }

    /// Records that `id`'s generations up to `generation` left or were forgotten, and
    /// stops counting it if the counted generation is one of them. Returns true if the
    /// roster changed.
    pub fn remove(&mut self, id: &NodeId, generation: u64) -> bool {
        let known = self.gone.get(id).copied();
        if known.is_some_and(|known| known >= generation) {
            return false;
        }
        self.gone.insert(id.clone(), generation);
        if self
            .members
            .get(id)
            .is_some_and(|kept| kept.generation <= generation)
        {
            self.members.remove(id);
        }
        true
    }

    /// Takes in everything `other` holds (the union, under the rules above). Returns true
    /// if the roster changed.
    pub fn merge(&mut self, other: &Roster) -> bool {
        let mut changed = false;
        for (id, &generation) in &other.gone {
            changed |= self.remove(id, generation);
        }
        for (id, entry) in &other.members {
            changed |= self.admit(id, entry.clone());
        }
        changed
    }

    /// The counted members, sorted by id.
    pub fn members(&self) -> impl Iterator<Item = (&NodeId, &RosterEntry)> {
        self.members.iter()
    }

    /// The counted entry of `id`.
    pub fn get(&self, id: &NodeId) -> Option<&RosterEntry> {
        self.members.get(id)
    }

    /// The tombstones: each id with the newest generation that is gone.
    pub fn gone(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.gone.iter().map(|(id, &generation)| (id, generation))
    }

    /// The generation up to which `id` is gone, if it has a tombstone.
    pub fn gone_generation(&self, id: &NodeId) -> Option<u64> {
        self.gone.get(id).copied()
    }

    /// Members counted.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True if no member is counted.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The roster as published in gossip: `(key, value)` pairs.
    pub fn gossip_pairs(&self) -> Vec<(String, String)> {
        let members = self
            .members
            .iter()
            .map(|(id, entry)| (format!("{MEMBER_KEY_PREFIX}{id}"), entry.encode()));
        let gone = self
            .gone
            .iter()
            .map(|(id, generation)| (format!("{GONE_KEY_PREFIX}{id}"), generation.to_string()));
        members.chain(gone).collect()
    }

    /// Reads one gossip pair into the roster (a published entry or tombstone); other
    /// keys and malformed values are ignored. Returns true if the roster changed.
    pub fn take_gossip_pair(&mut self, key: &str, value: &str) -> bool {
        if let Some(id) = key.strip_prefix(MEMBER_KEY_PREFIX) {
            match RosterEntry::decode(value) {
                Some(entry) => self.admit(&NodeId::from(id), entry),
                None => false,
            }
        } else if let Some(id) = key.strip_prefix(GONE_KEY_PREFIX) {
            match value.parse() {
                Ok(generation) => self.remove(&NodeId::from(id), generation),
                Err(_) => false,
            }
        } else {
            false
        }
    }

    /// The file form: one line per entry, `member <id> <gossip value>` or
    /// `gone <id> <generation>`.
    pub fn to_file_text(&self) -> String {
        let mut text = String::new();
        for (id, entry) in &self.members {
            let _ = writeln!(text, "member {id} {}", entry.encode());
        }
        for (id, generation) in &self.gone {
            let _ = writeln!(text, "gone {id} {generation}");
        }
        text
    }

    /// Reads [`to_file_text`](Self::to_file_text)'s form. A malformed line is an error
    /// naming it: a node must not start with half of its cluster forgotten.
    pub fn from_file_text(text: &str) -> Result<Roster, String> {
        let mut roster = Roster::default();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut words = line.splitn(3, ' ');
            let parsed = match (words.next(), words.next(), words.next()) {
                (Some("member"), Some(id), Some(value)) => RosterEntry::decode(value)
                    .map(|entry| roster.admit(&NodeId::from(id), entry))
                    .is_some(),
                (Some("gone"), Some(id), Some(generation)) => generation
                    .parse()
                    .map(|generation| roster.remove(&NodeId::from(id), generation))
                    .is_ok(),
                _ => false,
            };
            if !parsed {
                return Err(format!("line {} is malformed: {line:?}", number + 1));
            }
        }
        Ok(roster)
    }

    /// Reads the roster kept at `path`; an empty roster if there is no such file.
    pub fn load(path: &Path) -> std::io::Result<Roster> {
        match std::fs::read_to_string(path) {
            Ok(text) => Roster::from_file_text(&text).map_err(|reason| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {reason}", path.display()),
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Roster::default()),
            Err(error) => Err(error),
        }
    }

    /// Writes the roster to `path` atomically (a temporary file renamed over it), so a
    /// crash mid-write leaves the previous roster, never half of one.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, self.to_file_text())?;
        std::fs::rename(&temporary, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn entry(generation: u64, port: u16) -> RosterEntry {
        let addr = |offset: u16| SocketAddr::from(([10, 0, 0, 1], port + offset));
        RosterEntry {
            generation,
            addresses: NodeAddresses {
                resp: addr(0),
                http: addr(1000),
                cluster: addr(2000),
            },
            zone: (port % 2 == 0).then(|| "zone a".to_owned()),
        }
    }

    fn id(name: &str) -> NodeId {
        NodeId::from(name)
    }

    #[test]
    fn entries_round_trip_through_gossip_and_file_forms() {
        let mut roster = Roster::default();
        assert!(roster.admit(&id("a"), entry(5, 7000)));
        assert!(roster.admit(&id("b"), entry(6, 7001)));
        assert!(roster.remove(&id("c"), 9));
        assert_eq!(
            RosterEntry::decode(&entry(5, 7000).encode()),
            Some(entry(5, 7000))
        );
        let mut from_gossip = Roster::default();
        for (key, value) in roster.gossip_pairs() {
            assert!(from_gossip.take_gossip_pair(&key, &value), "{key}");
        }
        assert_eq!(from_gossip, roster);
        assert_eq!(Roster::from_file_text(&roster.to_file_text()), Ok(roster));
        assert!(Roster::from_file_text("member a 1 nonsense\n").is_err());
        assert!(!Roster::default().take_gossip_pair("roster.a", "garbage"));
        assert!(!Roster::default().take_gossip_pair("state", "up"));
    }

    #[test]
    fn a_member_stays_counted_until_it_leaves_and_a_restart_brings_it_back() {
        let mut roster = Roster::default();
        roster.admit(&id("a"), entry(5, 7000));
        // An older generation never replaces a newer one.
        assert!(!roster.admit(&id("a"), entry(4, 7000)));
        assert_eq!(roster.get(&id("a")).unwrap().generation, 5);
        // Leaving in generation 5 removes it, and its generation 5 cannot come back...
        assert!(roster.remove(&id("a"), 5));
        assert!(roster.is_empty());
        assert!(!roster.admit(&id("a"), entry(5, 7000)));
        // ...but a restart (generation 7) is a new member.
        assert!(roster.admit(&id("a"), entry(7, 7000)));
        // A tombstone of an older generation does not remove the newer one.
        roster.remove(&id("a"), 6);
        assert_eq!(roster.get(&id("a")).unwrap().generation, 7);
    }

    #[test]
    fn merging_is_order_free() {
        let mut one = Roster::default();
        one.admit(&id("a"), entry(5, 7000));
        one.admit(&id("b"), entry(2, 7001));
        let mut two = Roster::default();
        two.remove(&id("a"), 5);
        two.admit(&id("b"), entry(3, 7001));
        two.admit(&id("c"), entry(1, 7002));
        let mut left = one.clone();
        left.merge(&two);
        let mut right = two.clone();
        right.merge(&one);
        assert_eq!(left, right);
        let ids: Vec<&str> = left.members().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(left.get(&id("b")).unwrap().generation, 3);
        assert!(!left.clone().merge(&right), "merging again changes nothing");
    }

    #[test]
    fn the_roster_survives_a_restart_on_disk() {
        let dir = std::env::temp_dir().join(format!("quorra-roster-{}", std::process::id()));
        let path = dir.join("roster");
        assert_eq!(Roster::load(&path).unwrap(), Roster::default());
        let mut roster = Roster::default();
        roster.admit(&id("a"), entry(5, 7000));
        roster.remove(&id("z"), 3);
        roster.save(&path).unwrap();
        assert_eq!(Roster::load(&path).unwrap(), roster);
        std::fs::write(&path, "what\n").unwrap();
        assert!(Roster::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
