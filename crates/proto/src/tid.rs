//! Timestamp identifiers: 64 bits (top bit zero, 53 bits of microseconds since
//! the Unix epoch, 10 bits of clock id) written as 13 base32-sortable
//! characters, so that string order is time order.

use std::fmt;
use std::str::FromStr;

const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
const LEN: usize = 13;
const CLOCK_ID_BITS: u32 = 10;
const MAX_MICROS: u64 = (1 << 53) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tid(u64);

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("TID {input:?}: {reason}")]
pub struct TidError {
    pub input: String,
    pub reason: &'static str,
}

impl Tid {
    /// Microseconds outside 0..2^53 are clamped and the clock id is taken
    /// modulo 1024, because a TID has no room for more.
    pub fn new(micros: i64, clock_id: u16) -> Tid {
        let micros = u64::try_from(micros).unwrap_or(0).min(MAX_MICROS);
        let clock = u64::from(clock_id) & ((1 << CLOCK_ID_BITS) - 1);
        Tid((micros << CLOCK_ID_BITS) | clock)
    }

    pub fn micros(self) -> i64 {
        // At most 53 bits, so it always fits.
        (self.0 >> CLOCK_ID_BITS) as i64
    }

    pub fn clock_id(self) -> u16 {
        (self.0 & ((1 << CLOCK_ID_BITS) - 1)) as u16
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The TID whose value is `value`, as the index stores record keys
    /// (a TID's top bit is clear, so every TID fits an `i64`); none for a
    /// negative value.
    pub fn from_value(value: i64) -> Option<Tid> {
        u64::try_from(value).ok().map(Tid)
    }

    pub fn parse(text: &str) -> Result<Tid, TidError> {
        let fail = |reason| TidError {
            input: text.to_owned(),
            reason,
        };
        if text.len() != LEN {
            return Err(fail("must be 13 characters"));
        }
        let mut value: u64 = 0;
        for byte in text.bytes() {
            let digit = ALPHABET
                .iter()
                .position(|&a| a == byte)
                .ok_or_else(|| fail("characters must be from 234567a-z"))?;
            value = (value << 5) | digit as u64;
        }
        // 13 × 5 = 65 bits: the first character carries one bit that must be zero.
        if text.as_bytes().first().is_some_and(|&b| b > b'j') {
            return Err(fail("top bit must be zero (first character 2-7 or a-j)"));
        }
        Ok(Tid(value))
    }
}

impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; LEN];
        let mut value = self.0;
        for slot in out.iter_mut().rev() {
            *slot = ALPHABET[(value & 31) as usize];
            value >>= 5;
        }
        // Every byte comes from the ASCII alphabet.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for Tid {
    type Err = TidError;
    fn from_str(s: &str) -> Result<Tid, TidError> {
        Tid::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_by_time() {
        let early = Tid::new(1_700_000_000_000_000, 7);
        let late = Tid::new(1_700_000_000_000_001, 0);
        assert_eq!(early.to_string().len(), 13);
        assert!(early.to_string() < late.to_string());
        let back = Tid::parse(&early.to_string()).unwrap();
        assert_eq!(back, early);
        assert_eq!(back.micros(), 1_700_000_000_000_000);
        assert_eq!(back.clock_id(), 7);
        assert!(crate::syntax::is_tid(&early.to_string()));
    }

    #[test]
    fn known_value_and_rejections() {
        assert_eq!(
            Tid::parse("3jzfcijpj2z2a").unwrap().to_string(),
            "3jzfcijpj2z2a"
        );
        assert!(Tid::parse("3jzfcijpj2z2").is_err());
        assert!(Tid::parse("3jzfcijpj2z21").is_err());
        assert!(Tid::parse("zzzzzzzzzzzzz").is_err());
    }
}
