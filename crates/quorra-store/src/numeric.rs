//! Number parsing and formatting with Redis's rules, for the INCR family.
//!
//! * Integers follow Redis `string2ll`: optional `-`, then decimal digits, no `+`, no
//!   leading zeros (except `0` itself), no `-0`, no spaces, must fit an `i64`.
//! * Floats are parsed with Rust's `f64` parser after rejecting leading/trailing
//!   whitespace and NaN (Redis uses `strtold`, i.e. `long double`).
//! * Float results are printed as the shortest decimal that round-trips the `f64`, never
//!   in exponent notation, with no trailing zeros or dot: `10.5 + 0.1` gives `10.6`,
//!   `5.0e3 + 2.0e2` gives `5200`. Redis computes in 80-bit `long double` and prints
//!   with `%.17Lf` before trimming; for ordinary values both print the same text, but
//!   digits beyond f64 precision (and values below 1e-17, which Redis rounds to `0`)
//!   can differ.

use crate::error::StoreError;

/// Parses a stored value or argument as an `i64` with Redis's strict rules (those of
/// the protocol's own numbers, [`quorra_resp::number::parse_i64`]).
pub fn parse_i64(s: &[u8]) -> Result<i64, StoreError> {
    quorra_resp::number::parse_i64(s).ok_or(StoreError::NotAnInteger)
}

/// Parses a stored value or argument as a finite-or-infinite, non-NaN float.
pub fn parse_f64(s: &[u8]) -> Result<f64, StoreError> {
    let text = std::str::from_utf8(s).map_err(|_| StoreError::NotAFloat)?;
    if text.is_empty() || text.trim() != text {
        return Err(StoreError::NotAFloat);
    }
    let v: f64 = text.parse().map_err(|_| StoreError::NotAFloat)?;
    if v.is_nan() {
        return Err(StoreError::NotAFloat);
    }
    Ok(v)
}

/// Formats an INCRBYFLOAT result (see the module docs).
pub fn format_f64(v: f64) -> String {
    // `Display` for f64 is shortest-round-trip and never uses an exponent.
    format!("{v}")
}

/// Formats an integer as Redis stores it.
pub(crate) fn format_i64(v: i64) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_integers() {
        assert_eq!(parse_i64(b"0"), Ok(0));
        assert_eq!(parse_i64(b"-12"), Ok(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1 ",
            b"1.0",
            b"9223372036854775808",
            b"abc",
        ] {
            assert_eq!(parse_i64(bad), Err(StoreError::NotAnInteger), "{bad:?}");
        }
    }

    #[test]
    fn floats_parse_and_format_like_redis() {
        assert_eq!(parse_f64(b"10.5"), Ok(10.5));
        assert_eq!(parse_f64(b"5.0e3"), Ok(5000.0));
        assert_eq!(parse_f64(b"nan"), Err(StoreError::NotAFloat));
        assert_eq!(parse_f64(b" 1"), Err(StoreError::NotAFloat));
        assert_eq!(parse_f64(b""), Err(StoreError::NotAFloat));
        assert_eq!(format_f64(10.5 + 0.1), "10.6");
        assert_eq!(format_f64(5.0e3 + 2.0e2), "5200");
        assert_eq!(format_f64(3.0), "3");
        assert_eq!(format_f64(-1.5), "-1.5");
        assert_eq!(format_f64(1e21), "1000000000000000000000");
    }
}
