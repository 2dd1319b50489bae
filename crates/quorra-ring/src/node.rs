//! Node identity and the description of a node joining the ring.

use std::fmt;
use std::sync::Arc;

/// The stable identity of a physical node. Its bytes decide where the node's virtual
/// nodes sit ([`vnode_token`](crate::vnode_token)), so renaming a node moves its keys.
///
/// Cloning is cheap (a reference count), so lists of owners can be handed out freely.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> Self {
        NodeId(id.into())
    }
}

impl From<String> for NodeId {
    fn from(id: String) -> Self {
        NodeId(id.into())
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// How many virtual nodes a joining node gets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum VnodeCount {
    /// The ring's default ([`Ring::with_default_vnodes`](crate::Ring::with_default_vnodes)).
    RingDefault,
    /// Exactly this many.
    Exactly(u32),
    /// The ring default times this factor, rounded to the nearest integer.
    Weight(f64),
}

/// A node as it joins the ring: its id, optional zone and vnode count.
///
/// ```
/// use quorra_ring::NodeSpec;
/// let big = NodeSpec::new("node-7").with_zone("eu-west-1a").with_weight(2.0);
/// let small = NodeSpec::new("node-8").with_vnodes(50);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSpec {
    pub(crate) id: NodeId,
    pub(crate) zone: Option<Arc<str>>,
    pub(crate) vnodes: VnodeCount,
}

impl NodeSpec {
    /// A node in no zone with the ring's default number of vnodes.
    pub fn new(id: impl Into<NodeId>) -> Self {
        NodeSpec {
            id: id.into(),
            zone: None,
            vnodes: VnodeCount::RingDefault,
        }
    }

    /// Places the node in a failure zone (rack, availability zone). Preference lists
    /// cover as many zones as they can before they put two copies in one zone.
    pub fn with_zone(mut self, zone: impl Into<Arc<str>>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Gives the node exactly `vnodes` virtual nodes. A node's share of keys is
    /// proportional to its vnodes, so this is how a bigger node takes more load.
    pub fn with_vnodes(mut self, vnodes: u32) -> Self {
        self.vnodes = VnodeCount::Exactly(vnodes);
        self
    }

    /// Gives the node `weight` times the ring's default vnodes (rounded): a node with
    /// twice the memory gets weight 2.0.
    pub fn with_weight(mut self, weight: f64) -> Self {
        self.vnodes = VnodeCount::Weight(weight);
        self
    }
}
