//! Errors of ring changes. Lookups never fail: an empty ring answers `None` or an empty list.

use crate::node::NodeId;

/// Why a change to the ring was refused. The ring is unchanged after any error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RingError {
    /// The node is already a member; remove it first to change its vnodes or zone.
    #[error("node {0} is already on the ring")]
    DuplicateNode(NodeId),
    /// The node is not a member, so there is nothing to remove.
    #[error("node {0} is not on the ring")]
    UnknownNode(NodeId),
    /// Node ids are hashed into vnode positions and shown to operators; an empty one is
    /// almost certainly a configuration mistake.
    #[error("node id must not be empty")]
    EmptyNodeId,
    /// A vnode count (given directly, as a ring default, or computed from a weight) must
    /// be between 1 and [`MAX_VNODES_PER_NODE`](crate::MAX_VNODES_PER_NODE).
    #[error("{count} vnodes is outside 1..={max}", max = crate::MAX_VNODES_PER_NODE)]
    InvalidVnodeCount {
        /// The count that was asked for (rounded and saturated, for weights).
        count: u64,
    },
    /// A weight must be a finite number greater than zero.
    #[error("weight {0} must be a finite number greater than zero")]
    InvalidWeight(f64),
}
