//! (placeholder: the POP3 connection driver)
