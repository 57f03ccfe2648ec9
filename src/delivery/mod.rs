//! (placeholder: filled in by the delivery work)
