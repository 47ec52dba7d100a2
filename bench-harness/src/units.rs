//! Parsing of human-friendly command-line quantities: byte sizes (`4096`, `4k`, `128KiB`, `1G`)
//! and core lists (`1`, `0-1`, `0,2-3`). Pure functions, no threading concerns.

use std::fmt;

/// Why a size or core list could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitsError {
    #[error("empty value")]
    Empty,
    #[error("invalid number {text:?}")]
    Number { text: String },
    #[error("unknown size suffix {suffix:?} (use b, k/KiB, m/MiB, g/GiB, t/TiB)")]
    Suffix { suffix: String },
    #[error("size {text:?} overflows 64 bits")]
    Overflow { text: String },
    #[error("invalid core range {text:?} (expected N or N-M with N <= M)")]
    CoreRange { text: String },
    #[error("core {core} listed twice")]
    DuplicateCore { core: u32 },
}

/// Parses a byte size. Suffixes are binary multiples, case-insensitive, with or without a
/// trailing `b`/`ib`: `4k` = `4K` = `4KB` = `4KiB` = 4096 (the convention of `spdk_nvme_perf`
/// and `fio`'s `bs`).
pub fn parse_size(text: &str) -> Result<u64, UnitsError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(UnitsError::Empty);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    if digits.is_empty() {
        return Err(UnitsError::Number {
            text: t.to_string(),
        });
    }
    let n: u64 = digits.parse().map_err(|_| UnitsError::Overflow {
        text: t.to_string(),
    })?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(UnitsError::Suffix {
                suffix: suffix.to_string(),
            })
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| UnitsError::Overflow {
            text: t.to_string(),
        })
}

/// A CPU core number (as the kernel numbers logical CPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct CoreId(pub u32);

impl fmt::Display for CoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses a core list such as `1`, `0-1` or `0,2-3` into a sorted, duplicate-free list.
pub fn parse_core_list(text: &str) -> Result<Vec<CoreId>, UnitsError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(UnitsError::Empty);
    }
    let mut cores = Vec::new();
    for part in t.split(',') {
        let part = part.trim();
        let bad = || UnitsError::CoreRange {
            text: part.to_string(),
        };
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u32>().map_err(|_| bad())?,
                b.trim().parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let n = part.parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi || hi - lo > 4096 {
            return Err(bad());
        }
        for c in lo..=hi {
            if cores.contains(&CoreId(c)) {
                return Err(UnitsError::DuplicateCore { core: c });
            }
            cores.push(CoreId(c));
        }
    }
    cores.sort();
    Ok(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_the_usual_spellings() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4KB"), Ok(4096));
        assert_eq!(parse_size("128KiB"), Ok(128 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("512b"), Ok(512));
        assert_eq!(parse_size(" 8 KiB "), Ok(8192));
    }

    #[test]
    fn sizes_reject_garbage_with_a_reason() {
        assert_eq!(parse_size(""), Err(UnitsError::Empty));
        assert!(matches!(parse_size("k"), Err(UnitsError::Number { .. })));
        assert!(matches!(parse_size("-4k"), Err(UnitsError::Number { .. })));
        assert!(matches!(parse_size("4x"), Err(UnitsError::Suffix { .. })));
        assert!(matches!(parse_size("1.5k"), Err(UnitsError::Suffix { .. })));
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(UnitsError::Overflow { .. })
        ));
        assert!(matches!(
            parse_size("17179869184TiB"),
            Err(UnitsError::Overflow { .. })
        ));
    }

    #[test]
    fn core_lists_expand_ranges_and_sort() {
        assert_eq!(parse_core_list("1"), Ok(vec![CoreId(1)]));
        assert_eq!(parse_core_list("0-1"), Ok(vec![CoreId(0), CoreId(1)]));
        assert_eq!(
            parse_core_list("3,0-1"),
            Ok(vec![CoreId(0), CoreId(1), CoreId(3)])
        );
    }

    #[test]
    fn core_lists_reject_bad_ranges_and_duplicates() {
        assert!(matches!(
            parse_core_list("1-0"),
            Err(UnitsError::CoreRange { .. })
        ));
        assert!(matches!(
            parse_core_list("a"),
            Err(UnitsError::CoreRange { .. })
        ));
        assert!(matches!(
            parse_core_list("1,,2"),
            Err(UnitsError::CoreRange { .. })
        ));
        assert_eq!(
            parse_core_list("1,0-2"),
            Err(UnitsError::DuplicateCore { core: 1 })
        );
        assert_eq!(parse_core_list(""), Err(UnitsError::Empty));
    }
}
