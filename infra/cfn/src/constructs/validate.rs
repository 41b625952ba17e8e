//! Checks shared by the constructs: numeric ranges and AWS naming rules.

use std::fmt::Display;
use std::ops::RangeInclusive;

use crate::error::{Error, Result};

/// `value` must lie in `range`.
pub fn in_range(
    construct: &impl Display,
    property: &'static str,
    value: u32,
    range: RangeInclusive<u32>,
) -> Result<()> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(
            construct,
            property,
            value,
            format!("must be between {} and {}", range.start(), range.end()),
        ))
    }
}

/// An AWS resource name: its length in `len` and every character allowed by `allowed`,
/// described for the error as `charset`.
pub fn name(
    construct: &impl Display,
    property: &'static str,
    value: &str,
    len: RangeInclusive<usize>,
    allowed: impl Fn(char) -> bool,
    charset: &str,
) -> Result<()> {
    let shown = format!("{value:?}");
    let count = value.chars().count();
    if !len.contains(&count) {
        return Err(Error::invalid(
            construct,
            property,
            shown,
            format!("must be {} to {} characters long, not {count}", len.start(), len.end()),
        ));
    }
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return Err(Error::invalid(construct, property, shown, format!("{bad:?} is not allowed; use only {charset}")));
    }
    Ok(())
}

/// The pattern an e-mail address must match (also the `AllowedPattern` of parameters that
/// take one): one `@`, no spaces, a dot in the domain.
pub const EMAIL_PATTERN: &str = r"^[^@\s]+@[^@\s]+\.[^@\s]+$";

/// An e-mail address for a notification: what [`EMAIL_PATTERN`] accepts, at most 254 characters.
pub fn email(construct: &impl Display, property: &'static str, value: &str) -> Result<()> {
    let shown = format!("{value:?}");
    let ok = value.len() <= 254
        && !value.chars().any(char::is_whitespace)
        && matches!(value.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.contains('@')
                && domain.split_once('.').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.ends_with('.')));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(construct, property, shown, "must be an e-mail address such as ops@example.com"))
    }
}

/// Free text such as a description: at most `max` characters.
pub fn max_chars(construct: &impl Display, property: &'static str, value: &str, max: usize) -> Result<()> {
    let count = value.chars().count();
    if count <= max {
        Ok(())
    } else {
        Err(Error::invalid(
            construct,
            property,
            format!("{count} characters"),
            format!("must be at most {max} characters"),
        ))
    }
}

/// Letters, digits and the given punctuation.
pub fn alnum_or(extra: &'static str) -> impl Fn(char) -> bool {
    move |c| c.is_ascii_alphanumeric() || extra.contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive() {
        assert!(in_range(&"c", "P", 1, 1..=10).is_ok());
        assert!(in_range(&"c", "P", 10, 1..=10).is_ok());
        let err = in_range(&"sqs::Queue `Q`", "P", 11, 1..=10).unwrap_err().to_string();
        assert_eq!(err, "sqs::Queue `Q`: P = 11 is invalid: must be between 1 and 10");
        assert!(in_range(&"c", "P", 0, 1..=10).is_err());
    }

    #[test]
    fn free_text_is_bounded() {
        assert!(max_chars(&"c", "D", "ééé", 3).is_ok(), "characters, not bytes");
        let err = max_chars(&"c", "D", "abcd", 3).unwrap_err().to_string();
        assert_eq!(err, "c: D = 4 characters is invalid: must be at most 3 characters");
    }

    #[test]
    fn names_check_length_and_characters() {
        let ok = alnum_or("-_");
        assert!(name(&"c", "N", "a-b_c", 1..=5, &ok, "x").is_ok());
        let long = name(&"c", "N", "abcdef", 1..=5, &ok, "x").unwrap_err().to_string();
        assert!(long.contains("1 to 5 characters long, not 6"), "{long}");
        let empty = name(&"c", "N", "", 1..=5, &ok, "x").unwrap_err().to_string();
        assert!(empty.contains("not 0"), "{empty}");
        let bad = name(&"c", "N", "a.b", 1..=5, &ok, "letters").unwrap_err().to_string();
        assert!(bad.contains("'.' is not allowed; use only letters"), "{bad}");
    }
}
