//! Placement hashes: where keys and virtual nodes sit on the ring.
//!
//! The ring is the space of `u64` tokens, read clockwise with wrap-around. Both hashes
//! are xxh3-64 with seed 0: fast (a few ns for short keys), well distributed, and — unlike
//! std's `RandomState` or a seeded hasher — identical in every process, on every platform
//! and in every version. That last property is what lets a client, a node and a node built
//! a year later agree on placement, so these functions must never change; the golden test
//! in `tests/placement.rs` fails loudly if they do.
//!
//! ```text
//! key token   = xxh3_64(key bytes)
//! vnode token = xxh3_64(node id bytes ++ vnode index as u32 little-endian)
//!               +--------------------+-----------+
//!               | node id (n bytes)  | index (4) |
//!               +--------------------+-----------+
//! ```
//!
//! The index is fixed-width and last, so no two (id, index) pairs share an input.

use xxhash_rust::xxh3::xxh3_64;

use crate::node::NodeId;

/// A position on the ring.
pub type Token = u64;

/// The token of a key: xxh3-64 of its bytes. The owner is the node of the first vnode at
/// or clockwise after this token.
#[inline]
pub fn key_token(key: &[u8]) -> Token {
    xxh3_64(key)
}

/// The token of virtual node `index` of node `node`.
pub fn vnode_token(node: &NodeId, index: u32) -> Token {
    let mut input = Vec::with_capacity(node.as_str().len() + 4);
    input.extend_from_slice(node.as_str().as_bytes());
    input.extend_from_slice(&index.to_le_bytes());
    xxh3_64(&input)
}

/// The sorted tokens of vnodes `0..count` of `node`, reusing one input buffer.
pub(crate) fn sorted_vnode_tokens(node: &NodeId, count: u32) -> Vec<Token> {
    let id = node.as_str().as_bytes();
    let mut input = Vec::with_capacity(id.len() + 4);
    input.extend_from_slice(id);
    input.extend_from_slice(&[0; 4]);
    let mut tokens: Vec<Token> = (0..count)
        .map(|index| {
            input[id.len()..].copy_from_slice(&index.to_le_bytes());
            xxh3_64(&input)
        })
        .collect();
    tokens.sort_unstable();
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_tokens_match_single_tokens() {
        let node = NodeId::from("node-a");
        let mut expected: Vec<Token> = (0..40).map(|i| vnode_token(&node, i)).collect();
        expected.sort_unstable();
        assert_eq!(sorted_vnode_tokens(&node, 40), expected);
    }
}
