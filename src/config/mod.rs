//! Configuration: TOML with `${VAR}` interpolation, strict keys, and every error reported at once.
//!
//! [`load`] turns a file into a validated [`Config`]; [`read`] keeps what it could read beside
//! the errors, so `serve` and `check` can also compile that and report everything at once. Secrets in
//! the file are held in `secret::Secret` / `SecretUrl`, so they never print.

mod interpolate;
mod load;
mod model;
mod units;

use std::fmt;

pub use load::{load, parse, read, read_text, Read, CHANNEL_TYPES};
pub use model::*;
pub use units::{HumanDuration, Rate};

/// One config error, with where it is: a key path like `rules[2].channels[0]`, or a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests;
