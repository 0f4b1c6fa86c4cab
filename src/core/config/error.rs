//! What can go wrong with a configuration: per-field problems and I/O.

use super::*;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", self.render())]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    pub fn push(&mut self, field: &str, message: &str) {
        self.errors.push(FieldError {
            field: field.to_string(),
            message: message.to_string(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    fn render(&self) -> String {
        let lines: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        format!("invalid configuration:\n  {}", lines.join("\n  "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid {format}: {message}")]
    Parse {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("{path}: {errors}")]
    Invalid {
        path: PathBuf,
        errors: ValidationErrors,
    },
    #[error("cannot serialize the configuration: {0}")]
    Serialize(String),
}

impl ConfigError {
    /// The per-field problems, when that is what went wrong.
    pub fn validation_errors(&self) -> Option<&ValidationErrors> {
        match self {
            ConfigError::Invalid { errors, .. } => Some(errors),
            _ => None,
        }
    }
}
