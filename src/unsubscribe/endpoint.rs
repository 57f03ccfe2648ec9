//! The one-click unsubscribe endpoint as a transport-independent function: the HTTP server
//! (the control plane on the sidecar) hands it the request target and body and writes back
//! the [`Response`]. `POST /unsubscribe/TOKEN` with the body `List-Unsubscribe=One-Click`
//! (RFC 8058 §3.2) suppresses the token's recipient for the token's list at once.
//!
//! A GET never unsubscribes (RFC 8058 §4: link scanners follow every URL in a message); it
//! answers a page with a button that POSTs.
//!
//! [`handle_post`] appends to the suppression file and fsyncs: it blocks, so the HTTP server
//! calls it from `tokio::task::spawn_blocking`.

use super::headers::Unsubscriber;
use super::token::TokenError;
use crate::suppression::{SuppressionList, Target};

/// What to answer: an HTTP status and a short text/plain (or HTML for GET) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// The token in a request target `/unsubscribe/TOKEN[?query]`.
fn token_of(target: &str) -> Option<&str> {
    let path = target.split(['?', '#']).next()?;
    let token = path.strip_prefix("/unsubscribe/")?;
    (!token.is_empty() && !token.contains('/')).then_some(token)
}

/// Whether a form body (`application/x-www-form-urlencoded` or `multipart/form-data`, both
/// seen in the wild) carries `List-Unsubscribe=One-Click`.
fn is_one_click(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.split(['&', '\r', '\n'])
        .any(|field| field.trim() == "List-Unsubscribe=One-Click")
        || (text.contains("name=\"List-Unsubscribe\"") && text.contains("One-Click"))
}

/// `POST target` with `body`: 200 and the recipient suppressed for the list; 403 for a token
/// that does not verify; 400 for a body that is not a one-click request; 404 for another path;
/// 500 if the suppression could not be recorded (the provider may retry).
pub fn handle_post(
    unsubscriber: &Unsubscriber,
    suppression: &SuppressionList,
    target: &str,
    body: &[u8],
    now: u64,
) -> Response {
    let Some(token) = token_of(target) else {
        return Response::text(404, "Not found\n");
    };
    let claim = match unsubscriber.key.verify(token) {
        Ok(claim) => claim,
        Err(e) => {
            let why = match e {
                TokenError::Malformed => "malformed",
                TokenError::BadSignature => "bad signature",
            };
            log::warn!("unsubscribe: refused a token ({why})");
            return Response::text(403, "This unsubscribe link is not valid.\n");
        }
    };
    if !is_one_click(body) {
        return Response::text(
            400,
            "Expected the body List-Unsubscribe=One-Click (RFC 8058).\n",
        );
    }
    let Ok(target) = Target::parse(&claim.recipient) else {
        return Response::text(403, "This unsubscribe link is not valid.\n");
    };
    let reason = format!("one-click unsubscribe (link of {})", claim.issued);
    match suppression.add(target, Some(claim.list.clone()), &reason, now) {
        Ok(()) => {
            log::info!(
                "unsubscribe: {} from list {} (one-click)",
                claim.recipient,
                claim.list
            );
            Response::text(
                200,
                format!("{} is unsubscribed from {}.\n", claim.recipient, claim.list),
            )
        }
        Err(e) => {
            log::error!("unsubscribe: cannot record {}: {e}", claim.recipient);
            Response::text(500, "Could not record the unsubscribe; please try again.\n")
        }
    }
}

/// `GET target`: a page with a one-click button for a valid token (nothing is changed), 403
/// for an invalid one.
pub fn handle_get(unsubscriber: &Unsubscriber, target: &str) -> Response {
    let Some(token) = token_of(target) else {
        return Response::text(404, "Not found\n");
    };
    match unsubscriber.key.verify(token) {
        Ok(claim) => Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: format!(
                "<!doctype html><title>Unsubscribe</title>\
                 <form method=post action=\"/unsubscribe/{token}\">\
                 <input type=hidden name=List-Unsubscribe value=One-Click>\
                 <p>Unsubscribe {} from {}?</p><button>Unsubscribe</button></form>\n",
                html_escape(&claim.recipient),
                html_escape(&claim.list)
            ),
        },
        Err(_) => Response::text(403, "This unsubscribe link is not valid.\n"),
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unsubscribe::TokenKey;

    #[test]
    fn a_valid_post_suppresses_for_the_list_and_a_forged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let list = SuppressionList::open(&dir.path().join("suppression")).unwrap();
        let u = Unsubscriber::new(
            TokenKey::new(b"0123456789abcdef").unwrap(),
            "https://m.example.com",
            "",
            &[],
        );
        let url = u.url("weekly", "bob@example.org", 5);
        let target = url.strip_prefix("https://m.example.com").unwrap();
        let one_click = b"List-Unsubscribe=One-Click";

        // GET changes nothing.
        assert_eq!(handle_get(&u, target).status, 200);
        assert!(list.snapshot().is_empty());
        // A wrong body, a forged token, another path.
        assert_eq!(handle_post(&u, &list, target, b"x=y", 6).status, 400);
        use base64::Engine;
        let (_, mac) = target.split_once('.').unwrap();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode("weekly\nmallory@example.org\n5");
        let forged = format!("/unsubscribe/{payload}.{mac}");
        let other = TokenKey::new(b"not the server's secret").unwrap();
        let foreign = format!(
            "/unsubscribe/{}",
            other.issue("weekly", "bob@example.org", 5)
        );
        for bad in [forged.as_str(), &foreign, "/unsubscribe/abc.def"] {
            assert_eq!(
                handle_post(&u, &list, bad, one_click, 6).status,
                403,
                "{bad}"
            );
        }
        assert_eq!(handle_post(&u, &list, "/other", one_click, 6).status, 404);
        assert!(list.snapshot().is_empty());

        let response = handle_post(&u, &list, &format!("{target}?x=1"), one_click, 6);
        assert_eq!(response.status, 200, "{response:?}");
        let snapshot = list.snapshot();
        let (key, entry) = snapshot.iter().next().unwrap();
        assert_eq!(
            key,
            &(
                Target::Address("bob@example.org".into()),
                Some("weekly".into())
            )
        );
        assert_eq!(entry.since, 6);
    }
}
