//! Durations and sizes as people write them: `30s`, `2m`, `1h30m`, `14d`, `500ms`; `512Mi`,
//! `1Gi`, `100MB`, `4096`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("'{0}' is not a duration; write it like 500ms, 30s, 2m, 1h30m or 14d")]
    Duration(String),
    #[error("'{0}' is not a size; write it like 512Mi, 1Gi, 100MB or 4096")]
    Size(String),
}

/// A duration written the way people write it. Wraps `std::time::Duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("w", 604_800_000_000_000),
];

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    pub fn as_std(self) -> std::time::Duration {
        self.0
    }

    pub fn as_nanos_i64(self) -> i64 {
        i64::try_from(self.0.as_nanos()).unwrap_or(i64::MAX)
    }

    /// Parses `1h30m`, `500ms`, `14d`. A bare number is refused: a duration needs a unit.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let err = || QuantityError::Duration(text.to_string());
        let s = text.trim();
        if s.is_empty() {
            return Err(err());
        }
        let mut total: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if digits == 0 {
                return Err(err());
            }
            let value: u128 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            let (_, factor) = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(err)?;
            total = total
                .checked_add(value.checked_mul(*factor).ok_or_else(err)?)
                .ok_or_else(err)?;
            rest = &rest[unit_len..];
        }
        let nanos = u64::try_from(total).map_err(|_| err())?;
        Ok(Self(std::time::Duration::from_nanos(nanos)))
    }
}

impl fmt::Display for Duration {
    /// Writes the shortest exact form: `90s` as `1m30s`, `500ms`, `14d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (unit, factor) in UNITS.iter().rev() {
            if *unit == "w" {
                continue;
            }
            if nanos >= *factor {
                write!(f, "{}{}", nanos / factor, unit)?;
                nanos %= factor;
            }
        }
        Ok(())
    }
}

impl FromStr for Duration {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

/// A size in bytes, written with binary (`Ki`, `Mi`, `Gi`, `Ti`) or decimal (`k`, `KB`, `MB`,
/// `GB`, `TB`) suffixes, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("B", 1),
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("k", 1_000),
    ("K", 1_000),
    ("KB", 1_000),
    ("M", 1_000_000),
    ("MB", 1_000_000),
    ("G", 1_000_000_000),
    ("GB", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("TB", 1_000_000_000_000),
];

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let err = || QuantityError::Size(text.to_string());
        let s = text.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        if split == 0 {
            return Err(err());
        }
        let value: u64 = s[..split].parse().map_err(|_| err())?;
        let unit = &s[split..];
        let (_, factor) = SIZE_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(err)?;
        value.checked_mul(*factor).map(Self).ok_or_else(err)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    /// Writes the largest binary unit that divides the size exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in [
            ("Ti", 1u64 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{}", self.0 / factor, unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        let cases = [
            ("30s", 30_000),
            ("2m", 120_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("14d", 1_209_600_000),
        ];
        for (text, ms) in cases {
            let d = Duration::parse(text).unwrap();
            assert_eq!(d.0.as_millis(), ms, "{text}");
            assert_eq!(d.to_string(), text);
        }
        assert_eq!(Duration::parse("90s").unwrap().to_string(), "1m30s");
        for bad in ["", "30", "s", "3x", "1.5s", "-1s", "99999999999999999999d"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(ByteSize::parse("512Mi").unwrap().0, 512 << 20);
        assert_eq!(ByteSize::parse("1Gi").unwrap().to_string(), "1Gi");
        assert_eq!(ByteSize::parse("100MB").unwrap().0, 100_000_000);
        assert_eq!(ByteSize::parse("4096").unwrap().to_string(), "4Ki");
        for bad in ["", "Mi", "1.5Gi", "12 parsecs", "99999999999Ti"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
    }
}
