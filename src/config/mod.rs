//! ringmail's configuration: one TOML file of plain data, read and validated once at startup.
//!
//! `schema` holds the structs (and their defaults), `load` turns a file into a validated
//! [`Config`] with errors that name the file, line and key (`spans` finds the lines, `words`
//! phrases serde's messages for operators, `validate` checks values, files and programs), and
//! `cidr` parses network ranges.
//! Running with no file uses [`EMBEDDED_DEFAULT`].

mod cidr;
mod deliverability;
mod load;
mod schema;
mod spans;
mod validate;
mod words;

pub use cidr::Cidr;
pub use deliverability::*;
pub use load::{ConfigError, MAX_ERRORS, check_file, check_str, key_error, load_file, load_str};
pub use schema::*;

/// The configuration `ringmail serve` runs with when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");
