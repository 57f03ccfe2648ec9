//! The deliverability sections of the configuration: `[dkim]` (signing keys), `[suppression]`,
//! `[unsubscribe]` (RFC 8058 one-click) and `[feedback]` (ARF complaint reports).

use serde::Deserialize;
use std::path::PathBuf;

/// `[dkim]`: DKIM signing of mail that leaves by relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DkimSection {
    /// `[[dkim.keys]]`: one signing key each. Mail whose From: domain (or a parent domain of
    /// it) has a key is signed by every key of that domain.
    pub keys: Vec<DkimKeyConfig>,
    /// Header fields to sign (`h=`), when present in the message. Fields ringmail adds itself
    /// (List-Unsubscribe, List-Unsubscribe-Post) are signed too.
    pub headers: Vec<String>,
    /// `relaxed/relaxed` (the default), `relaxed/simple`, `simple/relaxed` or `simple/simple`
    /// (header/body, RFC 6376 §3.4).
    pub canonicalization: String,
}

impl Default for DkimSection {
    fn default() -> Self {
        DkimSection {
            keys: Vec::new(),
            headers: [
                "From",
                "To",
                "Cc",
                "Subject",
                "Date",
                "Message-ID",
                "Reply-To",
                "In-Reply-To",
                "References",
                "MIME-Version",
                "Content-Type",
                "Content-Transfer-Encoding",
                "List-Id",
                "List-Unsubscribe",
                "List-Unsubscribe-Post",
            ]
            .map(String::from)
            .to_vec(),
            canonicalization: "relaxed/relaxed".into(),
        }
    }
}

/// One `[[dkim.keys]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyConfig {
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`): the key's record is `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    #[serde(default)]
    pub algorithm: DkimAlgorithm,
    /// The private key, PEM (PKCS#8, or PKCS#1 for RSA), as `ringmail dkim keygen` writes it.
    pub key_file: PathBuf,
}

/// The signing algorithm of a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    /// rsa-sha256 (RFC 6376); every verifier knows it.
    #[default]
    Rsa,
    /// ed25519-sha256 (RFC 8463); sign with an RSA key as well for older verifiers.
    Ed25519,
}

/// `[suppression]`: recipients never sent to (`<data_dir>/suppression`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuppressionSection {
    /// A remote refusal that says the mailbox is bad (5.1.x, 5.2.1: a hard bounce) adds the
    /// recipient to the list.
    pub auto_on_hard_bounce: bool,
}

impl Default for SuppressionSection {
    fn default() -> Self {
        SuppressionSection {
            auto_on_hard_bounce: true,
        }
    }
}

/// `[unsubscribe]`: RFC 8058 one-click unsubscribe headers on relayed list mail.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnsubscribeSection {
    /// A file holding the HMAC secret for the tokens (at least 16 bytes; its whole content is
    /// the key). Unset: no headers are added.
    pub secret_file: Option<PathBuf>,
    /// Where the endpoint is reached from outside, e.g. `https://mail.example.com`; the header
    /// carries `<base_url>/unsubscribe/<token>`.
    pub base_url: String,
    /// The mailto address offered beside the URL (RFC 2369), e.g. `unsubscribe@example.com`;
    /// empty: the https URL only.
    pub mailto: String,
    /// Sender domains (the From: domain) whose relayed mail always gets the headers, with the
    /// sender domain as the list name. Any message with an `X-Ringmail-List: NAME` header gets
    /// them too, for list NAME (the header is removed before sending).
    pub domains: Vec<String>,
}

/// `[feedback]`: ARF complaint reports (RFC 5965) from the mailbox providers' feedback loops.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackSection {
    /// The address the feedback loops send to; each report delivered to it suppresses the
    /// complaining recipient and counts against the sending domain. Empty: off.
    pub address: String,
}
