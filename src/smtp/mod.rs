//! (placeholder: filled in by the smtp work)
