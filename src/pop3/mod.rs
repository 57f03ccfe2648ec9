//! (placeholder: filled in by the pop3 work)
