//! Reading TOML files (agent and coordinator configs, containers files) into typed values,
//! with errors that name the file, and the field where one is wrong.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The toml crate's message carries line, column and the offending key.
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

impl ConfigError {
    pub fn field(field: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError::Field {
            field,
            message: message.into(),
        }
    }
}

/// Parses `text` as the contents of `path`.
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let err = parse_toml::<Sample>(Path::new("x.toml"), "name = \"a\"\nnmae = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.toml") && err.contains("nmae") && err.contains("line 2"),
            "{err}"
        );
        let err = load_toml::<Sample>(Path::new("/nonexistent/x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read config file /nonexistent/x.toml"),
            "{err}"
        );
    }
}
