//! Sticky, stateless assignment: a unit (customer, key, session or request id) hashed together
//! with the experiment id lands in one of 10 000 buckets, and the variants own consecutive
//! ranges of buckets in proportion to their shares. The same unit always gets the same variant
//! while the shares stay the same, on every replica, with nothing stored.

use sha2::{Digest, Sha256};

use super::model::Variant;

/// Buckets per experiment: shares are whole basis points.
pub const BUCKETS: u32 = 10_000;

/// The unit's bucket in `0..BUCKETS` for one experiment.
pub fn bucket(experiment_id: &str, unit: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(experiment_id.as_bytes());
    // A separator so ("ab", "c") and ("a", "bc") differ.
    h.update([0u8]);
    h.update(unit.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u32
}

/// The variant owning `bucket`, given shares in basis points summing to `BUCKETS`.
pub fn pick(variants: &[Variant], bucket: u32) -> Option<&Variant> {
    let mut upper = 0u32;
    for v in variants {
        upper += v.share_bp;
        if bucket < upper {
            return Some(v);
        }
    }
    variants.last()
}
