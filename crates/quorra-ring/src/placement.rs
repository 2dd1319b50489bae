//! Placement hashes: where keys and virtual nodes sit on the ring.
//!
//! The ring is the space of `u64` tokens, read clockwise with wrap-around. Both hashes
//! are xxh3-64 with seed 0: fast (a few ns for short keys), well distributed, and — unlike
//! std's `RandomState` or a seeded hasher — identical in every process, on every platform
//! and in every version. That last property is what lets a client, a node and a node built
//! a year later agree on placement, so these functions must never change; the golden test
//! in `tests/placement.rs` fails loudly if they do.
//!
//! A key with a hash tag is placed by its tag alone, as Redis Cluster places it: the
//! bytes between the first `{` and the next `}`, when there are any. `{user1}:a` and
//! `{user1}:b` therefore have one owner and one replica list, which is what lets a
//! transaction, a script or RENAME use both. A key without a tag (no `{`, no `}` after
//! it, or `{}`) hashes whole.
//!
//! ```text
//! key token   = xxh3_64(hash_tag(key bytes))
//! vnode token = xxh3_64(node id bytes ++ vnode index as u32 little-endian)
//!               +--------------------+-----------+
//!               | node id (n bytes)  | index (4) |
//!               +--------------------+-----------+
//! ```
//!
//! The index is fixed-width and last, so no two (id, index) pairs share an input.
//!
//! Keys here are stored keys: a key of a database other than 0 carries a prefix
//! ([`crate::database`]) that placement skips, so a key has the same replicas in every
//! database.

use xxhash_rust::xxh3::xxh3_64;

use crate::node::NodeId;

/// A position on the ring.
pub type Token = u64;

/// The token of a key: xxh3-64 of its [`hash_tag`]. The owner is the node of the first
/// vnode at or clockwise after this token.
#[inline]
pub fn key_token(key: &[u8]) -> Token {
    xxh3_64(hash_tag(key))
}

/// xxh3-64 of the whole key: the store's table hash. It equals [`key_token`] for a key
/// without a hash tag; keys that share a tag share a token but not this hash, so a
/// popular tag does not pile its keys into one probe sequence of a hash table.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// [`key_token`] of `key`, given its [`key_hash`]: free for a key without a hash tag.
#[inline]
pub fn key_token_from_hash(key: &[u8], hash: u64) -> Token {
    let tag = hash_tag(key);
    if tag.len() == key.len() {
        hash
    } else {
        xxh3_64(tag)
    }
}

/// The part of the stored key `key` that placement hashes: of the client's key (without
/// a [database](crate::database) prefix), the bytes between the first `{` and the first
/// `}` after it, if that is not empty; otherwise the whole client's key. The same rule as
/// Redis Cluster's key hash slot.
#[inline]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let key = crate::database::user_key(key);
    let Some(open) = key.iter().position(|&byte| byte == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|&byte| byte == b'}') {
        Some(0) | None => key,
        Some(close) => &rest[..close],
    }
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
    fn hash_tags_follow_redis_cluster() {
        assert_eq!(hash_tag(b"{user1}:a"), b"user1");
        assert_eq!(hash_tag(b"x{user1}y{z}"), b"user1");
        // Empty, unclosed and closing-before-opening tags: the whole key.
        assert_eq!(hash_tag(b"{}:a"), b"{}:a");
        assert_eq!(hash_tag(b"{user1"), b"{user1");
        assert_eq!(hash_tag(b"}a{"), b"}a{");
        // Only the first `{` counts: `{{a}}` is tagged `{a`.
        assert_eq!(hash_tag(b"{{a}}"), b"{a");
        assert_eq!(hash_tag(b"plain"), b"plain");
        for key in [&b"{user1}:a"[..], b"plain", b"{}", b"a{b}c"] {
            assert_eq!(key_token_from_hash(key, key_hash(key)), key_token(key));
        }
    }

    #[test]
    fn batch_tokens_match_single_tokens() {
        let node = NodeId::from("node-a");
        let mut expected: Vec<Token> = (0..40).map(|i| vnode_token(&node, i)).collect();
        expected.sort_unstable();
        assert_eq!(sorted_vnode_tokens(&node, 40), expected);
    }
}
