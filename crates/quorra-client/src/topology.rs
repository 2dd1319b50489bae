//! What the client knows of the cluster — its members, its ring, how many copies each key
//! has — learned from any node, so that each key goes straight to its primary.
//!
//! A node describes the cluster with `QUORRA NODES` (each member's state and RESP
//! address), `QUORRA RING` (each ring member's vnodes and zone) and `QUORRA CONSISTENCY`
//! (the copies per key). The ring's tokens are a function of the members' ids and vnode
//! counts, so the client rebuilds the very ring the nodes use, and picks a key's primary
//! with the same rule ([`Ring::primary_for_token`]). A node not in cluster mode answers
//! `QUORRA NODES` with an error: then it holds every key.

use std::collections::HashMap;
use std::net::SocketAddr;

use quorra_ring::{NodeId, NodeSpec, Ring, key_token};

use crate::Error;

/// The cluster as one node described it.
#[derive(Debug, Clone)]
pub struct Topology {
    /// `None`: a single node, which holds every key.
    ring: Option<Ring>,
    copies: usize,
    /// The RESP address of each member that serves.
    serving: HashMap<NodeId, SocketAddr>,
    /// The ring's version, as the nodes count it.
    pub ring_version: u64,
    /// Every member's RESP address, serving or not, to ask again later.
    pub addresses: Vec<SocketAddr>,
}

impl Topology {
    /// A single node at `addr`.
    pub fn single(addr: SocketAddr) -> Topology {
        Topology {
            ring: None,
            copies: 1,
            serving: HashMap::new(),
            ring_version: 0,
            addresses: vec![addr],
        }
    }

    /// The topology described by `QUORRA NODES` (`nodes`), `QUORRA RING` (`ring`) and the
    /// copies per key.
    pub fn parse(nodes: &str, ring: &str, copies: usize) -> Result<Topology, Error> {
        let malformed = |what: &str| Error::Topology(format!("unexpected {what}"));
        let mut members = ring.lines();
        let header = members
            .next()
            .ok_or_else(|| malformed("empty QUORRA RING"))?;
        let ring_version = field(header, "version")
            .and_then(|version| version.parse().ok())
            .ok_or_else(|| malformed("QUORRA RING header"))?;
        let mut specs = Vec::new();
        for line in members.filter(|line| !line.is_empty()) {
            let id = line
                .split(' ')
                .next()
                .ok_or_else(|| malformed("ring line"))?;
            let vnodes = field(line, "vnodes")
                .and_then(|vnodes| vnodes.parse().ok())
                .ok_or_else(|| malformed("ring line"))?;
            let mut spec = NodeSpec::new(id).with_vnodes(vnodes);
            if let Some(zone) = field(line, "zone").filter(|zone| *zone != "-") {
                spec = spec.with_zone(zone);
            }
            specs.push(spec);
        }
        let ring = Ring::from_nodes(specs).map_err(|error| Error::Topology(error.to_string()))?;
        let mut serving = HashMap::new();
        let mut addresses = Vec::new();
        for line in nodes.lines().filter(|line| !line.is_empty()) {
            let mut words = line.split(' ');
            let (Some(id), Some(state)) = (words.next(), words.next()) else {
                return Err(malformed("QUORRA NODES line"));
            };
            let addr: SocketAddr = field(line, "resp")
                .and_then(|addr| addr.parse().ok())
                .ok_or_else(|| malformed("QUORRA NODES address"))?;
            addresses.push(addr);
            let id = NodeId::from(id);
            if state.split(',').next() == Some("up") && ring.member(&id).is_some() {
                serving.insert(id, addr);
            }
        }
        Ok(Topology {
            ring: Some(ring),
            copies: copies.max(1),
            serving,
            ring_version,
            addresses,
        })
    }

    /// The RESP address of `key`'s primary; `None` when none of its candidates serves.
    pub fn primary(&self, key: &[u8]) -> Option<SocketAddr> {
        let Some(ring) = &self.ring else {
            return self.addresses.first().copied();
        };
        let primary = ring.primary_for_token(key_token(key), self.copies, |id| {
            self.serving.contains_key(id)
        })?;
        self.serving.get(primary).copied()
    }

    /// The serving members' addresses, sorted: what a change of topology is judged by.
    pub fn serving(&self) -> Vec<SocketAddr> {
        let mut serving: Vec<SocketAddr> = match &self.ring {
            Some(_) => self.serving.values().copied().collect(),
            None => self.addresses.clone(),
        };
        serving.sort();
        serving
    }
}

/// The value of `name=value` among the space-separated words of `line`.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: &str = "version=4 nodes=3 vnodes=768\n\
        a vnodes=256 share=0.3300 zone=-\n\
        b vnodes=256 share=0.3300 zone=-\n\
        c vnodes=256 share=0.3400 zone=-\n";

    fn nodes(c_state: &str) -> String {
        format!(
            "a up,myself resp=127.0.0.1:7001 http=127.0.0.1:8001 cluster=127.0.0.1:9001 zone=- generation=1\n\
             b up resp=127.0.0.1:7002 http=127.0.0.1:8002 cluster=127.0.0.1:9002 zone=- generation=1\n\
             c {c_state} resp=127.0.0.1:7003 http=127.0.0.1:8003 cluster=127.0.0.1:9003 zone=- generation=1\n"
        )
    }

    #[test]
    fn keys_go_to_the_primary_the_nodes_would_pick() {
        let topology = Topology::parse(&nodes("up"), RING, 3).unwrap();
        assert_eq!(topology.ring_version, 4);
        let ring =
            Ring::from_nodes(["a", "b", "c"].map(|id| NodeSpec::new(id).with_vnodes(256))).unwrap();
        let port = |id: &NodeId| 7001 + u16::from(id.as_str().as_bytes()[0] - b'a');
        for i in 0..200 {
            let key = format!("key:{i}");
            let owner = ring.lookup(key.as_bytes()).unwrap();
            assert_eq!(
                topology.primary(key.as_bytes()).unwrap().port(),
                port(owner)
            );
        }
        // With c down, c's keys go to their next replica, as the nodes route them.
        let topology = Topology::parse(&nodes("down"), RING, 3).unwrap();
        for i in 0..200 {
            let key = format!("key:{i}");
            let expected = ring
                .preference_list(key.as_bytes(), 3)
                .into_iter()
                .find(|id| id.as_str() != "c")
                .unwrap();
            assert_eq!(
                topology.primary(key.as_bytes()).unwrap().port(),
                port(expected)
            );
        }
        assert_eq!(topology.serving().len(), 2);
    }

    #[test]
    fn a_garbled_description_is_an_error_not_a_panic() {
        assert!(Topology::parse("a up\n", RING, 3).is_err());
        assert!(Topology::parse(&nodes("up"), "nonsense", 3).is_err());
        assert!(Topology::parse(&nodes("up"), "", 3).is_err());
    }
}
