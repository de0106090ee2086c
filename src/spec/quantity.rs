//! Kubernetes resource quantities (`500m`, `128Mi`, `1.5`, `1e3`) and int-or-string values.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A resource quantity as written, kept as text so a manifest round-trips unchanged; numbers
/// written without quotes (`cpu: 1`) are accepted as Kubernetes accepts them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(pub String);

/// Why a quantity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// The text is not `<number><suffix>`.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Syntax,
    /// The value does not fit in 63 bits once converted.
    #[error("quantity is too large")]
    TooLarge,
}

/// Decimal suffixes and their power of ten; binary ones are handled separately.
const DECIMAL_SUFFIXES: [(&str, i32); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];

impl Quantity {
    /// The value in thousandths of a unit, rounded up as Kubernetes' `MilliValue` does; for
    /// `cpu` these are millicores.
    pub fn milli_value(&self) -> Result<i64, QuantityError> {
        self.scaled(3)
    }

    /// The value in whole units, rounded up as Kubernetes' `Value` does; for `memory` these
    /// are bytes.
    pub fn value(&self) -> Result<i64, QuantityError> {
        self.scaled(0)
    }

    /// Computes `value * 10^shift`, rounded up (away from zero for positive values).
    fn scaled(&self, shift: i32) -> Result<i64, QuantityError> {
        let (negative, digits, exp10, exp2) = parse(&self.0)?;
        let mut n: i128 = digits;
        let mut e = exp10 + shift;
        for _ in 0..exp2 {
            n = n.checked_mul(2).ok_or(QuantityError::TooLarge)?;
        }
        while e > 0 {
            n = n.checked_mul(10).ok_or(QuantityError::TooLarge)?;
            e -= 1;
        }
        while e < 0 {
            // Ceiling division keeps "1n" of cpu from becoming zero millicores.
            n = n / 10 + i128::from(n % 10 != 0);
            e += 1;
        }
        let n = if negative { -n } else { n };
        i64::try_from(n).map_err(|_| QuantityError::TooLarge)
    }
}

/// Splits a quantity into sign, integer mantissa, power of ten and power of two.
fn parse(s: &str) -> Result<(bool, i128, i32, u32), QuantityError> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = rest.split_at(number_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return Err(QuantityError::Syntax);
    }
    let mut digits: i128 = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        digits = digits
            .checked_mul(10)
            .and_then(|d| d.checked_add(i128::from(b - b'0')))
            .ok_or(QuantityError::TooLarge)?;
    }
    let frac_len = i32::try_from(frac_part.len()).map_err(|_| QuantityError::TooLarge)?;
    if let Some((_, bits)) = BINARY_SUFFIXES.iter().find(|(name, _)| *name == suffix) {
        return Ok((negative, digits, -frac_len, *bits));
    }
    if let Some((_, pow)) = DECIMAL_SUFFIXES.iter().find(|(name, _)| *name == suffix) {
        return Ok((negative, digits, pow - frac_len, 0));
    }
    // Decimal exponent form: `1e3`, `5E-2`.
    let exponent = suffix
        .strip_prefix(['e', 'E'])
        .filter(|e| !e.is_empty())
        .ok_or(QuantityError::Syntax)?;
    let exp_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    let valid = !exp_digits.is_empty() && exp_digits.bytes().all(|b| b.is_ascii_digit());
    let exp: i32 = if valid {
        exponent.parse().map_err(|_| QuantityError::TooLarge)?
    } else {
        return Err(QuantityError::Syntax);
    };
    if !(-64..=64).contains(&exp) {
        return Err(QuantityError::TooLarge);
    }
    Ok((negative, digits, exp - frac_len, 0))
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Quantity(s)),
            serde_json::Value::Number(n) => Ok(Quantity(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "expected a quantity such as \"500m\" or \"128Mi\", got {other}"
            ))),
        }
    }
}

/// A value that Kubernetes accepts as an integer or a string (ports by number or name,
/// `maxUnavailable` as `1` or `"10%"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

impl Default for IntOrString {
    /// Go's zero value, which validation reports as out of range, as Kubernetes does.
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_millicores() {
        let cases = [
            ("1", 1000),
            ("0.5", 500),
            ("100m", 100),
            ("1.5", 1500),
            ("250m", 250),
            ("1n", 1),
            ("2k", 2_000_000),
            ("1e3", 1_000_000),
            ("+1", 1000),
            (".5", 500),
        ];
        for (text, want) in cases {
            assert_eq!(Quantity(text.into()).milli_value(), Ok(want), "{text}");
        }
    }

    #[test]
    fn memory_quantities_in_bytes() {
        let cases = [
            ("128Mi", 128 << 20),
            ("1Gi", 1 << 30),
            ("1G", 1_000_000_000),
            ("512", 512),
            ("1.5Ki", 1536),
            ("100M", 100_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("1500m", 2),
        ];
        for (text, want) in cases {
            assert_eq!(Quantity(text.into()).value(), Ok(want), "{text}");
        }
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in [
            "", "abc", "1K", "1.2.3", "Mi", "1e", "1e+", "1 Gi", "--1", "1iB", "1e1.5",
        ] {
            assert_eq!(
                Quantity(bad.into()).value(),
                Err(QuantityError::Syntax),
                "{bad:?}"
            );
        }
        assert_eq!(Quantity("9Ei".into()).value(), Err(QuantityError::TooLarge));
        assert_eq!(Quantity("1e1000".into()).value(), Err(QuantityError::TooLarge));
    }

    #[test]
    fn quantities_accept_numbers_and_strings() {
        let q: Quantity = serde_json::from_str("2").unwrap();
        assert_eq!(q, Quantity("2".into()));
        let q: Quantity = serde_json::from_str("\"250m\"").unwrap();
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"250m\"");
    }
}
