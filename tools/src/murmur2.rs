//! Kafka's murmur2 hash and the Java client's default partitioner for keyed records:
//! `partition = toPositive(murmur2(key)) % numPartitions` (`Utils.murmur2`,
//! `BuiltInPartitioner.partitionForKey`).

/// `org.apache.kafka.common.utils.Utils.murmur2`: 32-bit MurmurHash2 with seed 0x9747b28c,
/// little-endian 4-byte blocks.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// `Utils.toPositive`: clears the sign bit (not `abs`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition the Java producer's default partitioner picks for a keyed record.
/// `partitions` must be positive.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    to_positive(murmur2(key)) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed by the Java client's `Utils.murmur2` (Kafka's UtilsTest and
    /// third-party ports that check against it).
    #[test]
    fn matches_java_murmur2() {
        let cases: &[(&[u8], i32)] = &[
            (b"1", -1993445489),
            (b"12", 126087238),
            (b"123", -267702483),
            (b"1234", -1614185708),
            (b"12345", -1188365604),
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, want) in cases {
            assert_eq!(murmur2(data), *want, "{:?}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn partition_is_positive_modulo() {
        // toPositive(-1993445489) = 154038159; 154038159 % 6 = 3.
        assert_eq!(partition_for_key(b"1", 6), 154038159 % 6);
        for key in [&b"a"[..], b"bb", b"ccc", b"", b"\xff\xfe"] {
            let p = partition_for_key(key, 7);
            assert!((0..7).contains(&p));
        }
    }
}
