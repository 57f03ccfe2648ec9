//! (placeholder: filled in by the logging work)
