//! The layout of a compiled vocabulary, shared by the build script that writes the tables into
//! the binary and by the counter that reads them in place.
//!
//! Three little-endian byte tables per vocabulary:
//! * `arena`: every token's bytes, back to back, in rank order (ranks are dense from zero);
//! * `ends`: a `u32` per rank, where that token ends in the arena (it starts where the previous
//!   one ends);
//! * `slots`: an open-addressing hash index with linear probing, a power-of-two number of `u32`
//!   slots, each [`EMPTY`] or a rank in its low [`RANK_BITS`] bits with a tag from the token's
//!   hash above them, so most probes that miss are told apart without reading the arena.

/// A slot that holds no token.
pub const EMPTY: u32 = u32::MAX;
/// Bits of a slot that hold the rank (o200k has under 2¹⁸ tokens).
pub const RANK_BITS: u32 = 18;
pub const RANK_MASK: u32 = (1 << RANK_BITS) - 1;

/// A hash of a token's bytes that is the same on every platform and in every build, since the
/// build script places tokens by it and the counter looks them up by it.
pub fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    // Mix the high bits down: the slot index is taken from the low ones.
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 32)
}

/// The tag a token's hash leaves in its slot, above the rank.
pub fn tag(h: u64) -> u32 {
    ((h >> 40) as u32) << RANK_BITS
}

pub fn read_u32(table: &[u8], i: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&table[i * 4..i * 4 + 4]);
    u32::from_le_bytes(word)
}

/// The rank of the token `bytes` in `slots`, probing as [`compile`] placed it; `token` gives a
/// rank's bytes (from the arena), read only when a slot's tag matches.
pub fn find<'a>(slots: &[u8], bytes: &[u8], token: impl Fn(u32) -> &'a [u8]) -> Option<u32> {
    let h = hash(bytes);
    let mask = slots.len() / 4 - 1;
    let mut i = h as usize & mask;
    loop {
        let slot = read_u32(slots, i);
        if slot == EMPTY {
            return None;
        }
        if slot & !RANK_MASK == tag(h) && token(slot & RANK_MASK) == bytes {
            return Some(slot & RANK_MASK);
        }
        i = (i + 1) & mask;
    }
}

/// The three tables of a vocabulary whose token of rank `r` is the `r`-th of `tokens`, or
/// `None` when it has too many tokens or bytes for the layout.
#[cfg_attr(not(test), allow(dead_code))] // the build script's, and the tests'
pub fn compile<'a>(tokens: impl ExactSizeIterator<Item = &'a [u8]>) -> Option<Tables> {
    let count = tokens.len();
    if count > RANK_MASK as usize {
        return None;
    }
    // A load of at most about 0.4 keeps probe sequences short.
    let slot_count = (count * 5 / 2).next_power_of_two().max(16);
    let mut arena = Vec::new();
    let mut ends = Vec::with_capacity(count * 4);
    let mut slots = vec![EMPTY; slot_count];
    for (rank, token) in tokens.enumerate() {
        arena.extend_from_slice(token);
        ends.extend_from_slice(&u32::try_from(arena.len()).ok()?.to_le_bytes());
        let h = hash(token);
        let mut i = h as usize & (slot_count - 1);
        while slots[i] != EMPTY {
            i = (i + 1) & (slot_count - 1);
        }
        slots[i] = tag(h) | rank as u32;
    }
    Some(Tables {
        arena,
        ends,
        slots: slots.iter().flat_map(|s| s.to_le_bytes()).collect(),
    })
}

#[cfg_attr(not(test), allow(dead_code))]
pub struct Tables {
    pub arena: Vec<u8>,
    pub ends: Vec<u8>,
    pub slots: Vec<u8>,
}
