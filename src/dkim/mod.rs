//! DKIM signing of relayed mail (RFC 6376 RSA-SHA256, RFC 8463 Ed25519-SHA256): the keys of
//! `[[dkim.keys]]` and their choice by From: domain (`signer`), and `ringmail dkim keygen`
//! (`keygen`). When and where a message is signed is `delivery::prepare`'s business.

pub mod keygen;
mod signer;

pub use signer::{DkimKeys, KeyError, check_key_file, from_domain};
