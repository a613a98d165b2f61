//! Host labels (`role=mainpc`, `gpu=true`): keys and values a placement
//! constraint can match exactly, so both are restricted to a safe alphabet.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("label '{0}' has no '='; write labels as KEY=VALUE, e.g. role=mainpc")]
    NoEquals(String),
    #[error("label key '{key}' is invalid: {rule}")]
    BadKey { key: String, rule: &'static str },
    #[error("value '{value}' of label '{key}' is invalid: {rule}")]
    BadValue {
        key: String,
        value: String,
        rule: &'static str,
    },
}

const KEY_RULE: &str =
    "use 1-63 characters: letters, digits, '-', '_', '.', '/', starting with a letter or digit";
const VALUE_RULE: &str = "use at most 63 characters: letters, digits, '-', '_', '.'";

/// Checks one KEY and VALUE.
pub fn validate_label(key: &str, value: &str) -> Result<(), LabelError> {
    let key_ok = !key.is_empty()
        && key.len() <= 63
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !key_ok {
        return Err(LabelError::BadKey {
            key: key.to_string(),
            rule: KEY_RULE,
        });
    }
    let value_ok = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !value_ok {
        return Err(LabelError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            rule: VALUE_RULE,
        });
    }
    Ok(())
}

/// Parses `KEY=VALUE` as given on a command line.
pub fn parse_label(text: &str) -> Result<(String, String), LabelError> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| LabelError::NoEquals(text.to_string()))?;
    validate_label(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert_eq!(
            parse_label("role=mainpc"),
            Ok(("role".into(), "mainpc".into()))
        );
        assert!(parse_label("nvidia.com/gpu=true").is_ok());
        assert!(parse_label("empty=").is_ok());
        assert_eq!(
            parse_label("role"),
            Err(LabelError::NoEquals("role".into()))
        );
        assert!(matches!(
            parse_label("-x=1"),
            Err(LabelError::BadKey { .. })
        ));
        assert!(matches!(
            parse_label("x=a b"),
            Err(LabelError::BadValue { .. })
        ));
        assert!(parse_label(&format!("{}=1", "k".repeat(64))).is_err());
    }
}
