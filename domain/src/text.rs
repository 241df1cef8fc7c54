//! Bounded free text: notes, reasons, names and addresses.

use crate::error::{DomainError, ErrorCode};

/// Checks that `text` has `min..=max` characters and no control characters
/// (a newline or tab is allowed only where `min` permits free text, i.e.
/// never in names: callers pass the limits of their field).
pub fn bounded_text(
    text: &str,
    min: usize,
    max: usize,
    code: ErrorCode,
    field: &'static str,
) -> Result<(), DomainError> {
    let chars = text.chars().count();
    if chars < min || chars > max {
        return Err(DomainError::invalid(
            code,
            field,
            format!("must be {min}..={max} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(DomainError::invalid(
            code,
            field,
            "must not hold control characters",
        ));
    }
    if min > 0 && text.trim().is_empty() {
        return Err(DomainError::invalid(code, field, "must not be blank"));
    }
    Ok(())
}

/// Like [`bounded_text`] for an optional field.
pub fn optional_text(
    text: Option<&str>,
    max: usize,
    code: ErrorCode,
    field: &'static str,
) -> Result<(), DomainError> {
    text.map_or(Ok(()), |t| bounded_text(t, 1, max, code, field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_bounds_count_characters_not_bytes() {
        let code = ErrorCode::TEXT_INVALID;
        assert!(bounded_text("收货人", 1, 3, code, "f").is_ok());
        assert!(bounded_text("收货人啊", 1, 3, code, "f").is_err());
        assert!(bounded_text("", 1, 3, code, "f").is_err());
        assert!(bounded_text("   ", 1, 3, code, "f").is_err());
        assert!(bounded_text("a\u{0}b", 1, 3, code, "f").is_err());
        assert!(bounded_text("a\nb", 1, 3, code, "f").is_ok());
        assert!(optional_text(None, 3, code, "f").is_ok());
        assert!(optional_text(Some(""), 3, code, "f").is_err());
    }
}
