//! RFC 8058 one-click unsubscribe: the signed per-recipient token (`token`), the
//! `List-Unsubscribe` and `List-Unsubscribe-Post` header fields ringmail adds to relayed list
//! mail (`headers`), and the endpoint that a mailbox provider POSTs to (`endpoint`), which
//! suppresses the recipient for that list at once.

mod endpoint;
mod headers;
mod token;

pub use endpoint::{Response, handle_get, handle_post};
pub use headers::{LIST_HEADER, Unsubscriber};
pub use token::{Claim, MIN_SECRET_LEN, TokenError, TokenKey};
