//! Synthetic time: RFC 3339 datetimes and TIDs derived from microsecond timestamps,
//! so identical configs give identical bytes regardless of the wall clock.

const TID_ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// A TID (13 chars, base32-sortable) from a microsecond timestamp and a 10-bit clock id.
pub fn tid(micros: i64, clock_id: u16) -> String {
    let value = ((micros as u64 & ((1u64 << 53) - 1)) << 10) | (clock_id as u64 & 0x3ff);
    let mut out = String::with_capacity(13);
    for i in 0..13u32 {
        let shift = 60 - 5 * i;
        out.push(TID_ALPHABET[((value >> shift) & 0x1f) as usize] as char);
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a Unix timestamp in microseconds.
pub fn rfc3339(micros: i64) -> String {
    skyhose_proto::datetime::format_utc_millis(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_730_419_200_123_456), "2024-11-01T00:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn tids_sort_by_time() {
        let a = tid(1_730_419_200_000_000, 5);
        let b = tid(1_730_419_200_000_001, 0);
        assert_eq!(a.len(), 13);
        assert!(a < b);
        assert!(a.starts_with('3'));
    }
}
