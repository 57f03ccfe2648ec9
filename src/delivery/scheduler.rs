//! The delivery scheduler (written by the lead).
