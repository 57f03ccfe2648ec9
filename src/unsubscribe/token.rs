//! The unsubscribe token: who unsubscribes from what, signed so only ringmail can make one.
//!
//! `token = base64url(list "\n" recipient "\n" time) "." base64url(HMAC-SHA256(secret, same))`
//!
//! The endpoint needs no state to check a token: it recomputes the MAC. A forged or altered
//! token fails the constant-time comparison. Tokens do not expire: an unsubscribe link in an
//! old message must still work (the time is kept for the log).

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::suppression::check_list_name;

/// The smallest secret accepted (bytes).
pub const MIN_SECRET_LEN: usize = 16;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub list: String,
    pub recipient: String,
    /// When the message carrying the token was sent (unix seconds).
    pub issued: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not `payload.mac`, bad base64, or a payload that is not three fields.
    Malformed,
    /// The MAC does not match: forged, altered, or made with another secret.
    BadSignature,
}

/// Makes and checks tokens with one secret.
pub struct TokenKey {
    key: hmac::Key,
}

impl TokenKey {
    pub fn new(secret: &[u8]) -> Result<TokenKey, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the secret is {} bytes; at least {MIN_SECRET_LEN} are needed",
                secret.len()
            ));
        }
        Ok(TokenKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// The token for `recipient` of `list` at `issued`.
    pub fn issue(&self, list: &str, recipient: &str, issued: u64) -> String {
        let payload = format!("{list}\n{}\n{issued}", recipient.to_ascii_lowercase());
        let mac = hmac::sign(&self.key, payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(mac.as_ref())
        )
    }

    /// Checks a token and returns what it says.
    pub fn verify(&self, token: &str) -> Result<Claim, TokenError> {
        let (payload, mac) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, &payload, &mac).map_err(|_| TokenError::BadSignature)?;
        let text = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
        let mut fields = text.split('\n');
        let (Some(list), Some(recipient), Some(issued), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(TokenError::Malformed);
        };
        check_list_name(list).map_err(|_| TokenError::Malformed)?;
        Ok(Claim {
            list: list.to_string(),
            recipient: recipient.to_string(),
            issued: issued.parse().map_err(|_| TokenError::Malformed)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_forgeries_do_not() {
        let key = TokenKey::new(b"0123456789abcdef-secret").unwrap();
        let token = key.issue("news", "Bob@Example.com", 1_764_790_000);
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        assert_eq!(
            key.verify(&token),
            Ok(Claim {
                list: "news".into(),
                recipient: "bob@example.com".into(),
                issued: 1_764_790_000,
            })
        );

        // Another secret, an altered payload, a truncated or swapped MAC: all refused.
        let other = TokenKey::new(b"another secret of 16+ bytes").unwrap();
        assert_eq!(other.verify(&token), Err(TokenError::BadSignature));
        let (payload, mac) = token.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode("news\nmallory@example.com\n1764790000");
        assert_eq!(
            key.verify(&format!("{forged_payload}.{mac}")),
            Err(TokenError::BadSignature)
        );
        assert!(
            key.verify(&format!("{payload}.{}", &mac[..mac.len() - 4]))
                .is_err()
        );
        let mallory = key.issue("news", "mallory@example.com", 1);
        let (_, mallory_mac) = mallory.split_once('.').unwrap();
        assert_eq!(
            key.verify(&format!("{payload}.{mallory_mac}")),
            Err(TokenError::BadSignature)
        );
        for bad in ["", "nodot", "!!.??", "a.b.c"] {
            assert!(key.verify(bad).is_err(), "{bad:?}");
        }
        assert!(TokenKey::new(b"short").is_err());
    }
}
