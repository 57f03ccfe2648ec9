//! (placeholder: filled in later)
