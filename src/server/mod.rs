//! (placeholder: filled in by the server work)
