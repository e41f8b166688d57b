//! Configuration: TOML with `${VAR}` interpolation, strict keys, and every error reported at once.
//!
//! `load` turns a file into a validated [`Config`]; it is the same code for `serve` and `check`.

mod model;

pub use model::*;
