//! FNV-1a (64-bit): a stable, dependency-free fingerprint for short keys. Not
//! for security: it only has to be the same in every build and every process,
//! which `std::hash` does not promise.
//!
//! Used for the configuration's ETag and the worker's staging directory name;
//! both are visible outside the process (HTTP caches, a tmpfs that outlives a
//! run), so the values must not change between releases.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0100_0000_01b3;

/// The 64-bit FNV-1a hash of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv, section 8).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
