//! The SASL exchanges of SMTP AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN (the de-facto
//! mechanism of draft-murchison-sasl-login, which Outlook and many devices still use). Sans-IO:
//! the session feeds the initial response and each client line, and gets back the next
//! challenge, the finished credentials, or the client's error.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

/// The mechanisms we offer, in the order the EHLO reply lists them.
pub const OFFERED: &str = "PLAIN LOGIN";

/// A SASL mechanism name from `AUTH <mechanism>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// Case-insensitive, as SASL mechanism names are (RFC 4422 3.1).
    pub fn parse(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// A user name and password the client sent. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub mechanism: Mechanism,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

/// How the client broke the exchange; each is answered with a 501 and the exchange ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*` (RFC 4954 4: cancel the exchange).
    Cancelled,
    /// A response that is not valid base64.
    BadBase64,
    /// Decoded, but not what the mechanism expects (no NULs in PLAIN, not UTF-8, empty user).
    Malformed,
}

/// What happens next in an exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `334 <challenge>` (already base64) and wait for the client's next line.
    Challenge(&'static str),
    /// The credentials are complete: check them.
    Done(Credentials),
    /// The client broke the exchange.
    Failed(SaslError),
}

/// "Username:" and "Password:" in base64, the prompts every LOGIN client expects.
const LOGIN_USER_PROMPT: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// An exchange in progress.
#[derive(Debug)]
pub struct Exchange {
    mechanism: Mechanism,
    /// LOGIN's user name, once sent.
    login_user: Option<String>,
}

impl Exchange {
    /// Starts an exchange with the optional initial response from the AUTH line (RFC 4954 4:
    /// `=` stands for an empty one).
    pub fn start(mechanism: Mechanism, initial: Option<&str>) -> (Exchange, Step) {
        let mut exchange = Exchange {
            mechanism,
            login_user: None,
        };
        let step = match (mechanism, initial) {
            (Mechanism::Plain, None) => Step::Challenge(""),
            (Mechanism::Login, None) => Step::Challenge(LOGIN_USER_PROMPT),
            (_, Some(initial)) => exchange.step(initial.as_bytes()),
        };
        (exchange, step)
    }

    /// Takes the client's next line (CRLF removed).
    pub fn step(&mut self, line: &[u8]) -> Step {
        if line == b"*" {
            return Step::Failed(SaslError::Cancelled);
        }
        let decoded = match decode(line) {
            Ok(d) => d,
            Err(e) => return Step::Failed(e),
        };
        match self.mechanism {
            Mechanism::Plain => match parse_plain(&decoded) {
                Some((user, password)) => Step::Done(Credentials {
                    user,
                    password,
                    mechanism: Mechanism::Plain,
                }),
                None => Step::Failed(SaslError::Malformed),
            },
            Mechanism::Login => {
                let Ok(text) = String::from_utf8(decoded) else {
                    return Step::Failed(SaslError::Malformed);
                };
                match self.login_user.take() {
                    None if text.is_empty() => Step::Failed(SaslError::Malformed),
                    None => {
                        self.login_user = Some(text);
                        Step::Challenge(LOGIN_PASSWORD_PROMPT)
                    }
                    Some(user) => Step::Done(Credentials {
                        user,
                        password: text,
                        mechanism: Mechanism::Login,
                    }),
                }
            }
        }
    }
}

/// `=` is the empty response (RFC 4954 4); anything else is base64 with padding.
fn decode(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    if line == b"=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(line).map_err(|_| SaslError::BadBase64)
}

/// RFC 4616 2: `[authzid] NUL authcid NUL passwd`. An authorization identity other than the
/// user itself would let one login act as another: refused.
fn parse_plain(message: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(message).ok()?;
    let mut parts = text.split('\0');
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || !(authzid.is_empty() || authzid == user) {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    fn done(user: &str, password: &str, mechanism: Mechanism) -> Step {
        Step::Done(Credentials {
            user: user.into(),
            password: password.into(),
            mechanism,
        })
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64("\0bob\0pw")));
        assert_eq!(step, done("bob", "pw", Mechanism::Plain));
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64("bob\0bob\0pw")));
        assert_eq!(step, done("bob", "pw", Mechanism::Plain));
        let (mut ex, step) = Exchange::start(Mechanism::Plain, None);
        assert_eq!(step, Step::Challenge(""));
        assert_eq!(
            ex.step(b64("\0bob\0").as_bytes()),
            done("bob", "", Mechanism::Plain)
        );
    }

    #[test]
    fn plain_refusals() {
        let cases: &[(&[u8], SaslError)] = &[
            (b"*", SaslError::Cancelled),
            (b"not base64!", SaslError::BadBase64),
            (b"=", SaslError::Malformed),
        ];
        for (line, want) in cases {
            let (mut ex, _) = Exchange::start(Mechanism::Plain, None);
            assert_eq!(ex.step(line), Step::Failed(*want), "{line:?}");
        }
        for message in ["alice\0bob\0pw", "\0\0pw", "bob\0pw", "\0bob\0pw\0x"] {
            let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64(message)));
            assert_eq!(step, Step::Failed(SaslError::Malformed), "{message:?}");
        }
    }

    #[test]
    fn login_prompts_then_credentials() {
        let (mut ex, step) = Exchange::start(Mechanism::Login, None);
        assert_eq!(step, Step::Challenge(LOGIN_USER_PROMPT));
        assert_eq!(
            ex.step(b64("bob@example.test").as_bytes()),
            Step::Challenge(LOGIN_PASSWORD_PROMPT)
        );
        assert_eq!(
            ex.step(b64("secret").as_bytes()),
            done("bob@example.test", "secret", Mechanism::Login)
        );
        // The user name as initial response (what some clients send).
        let (mut ex, step) = Exchange::start(Mechanism::Login, Some(&b64("bob")));
        assert_eq!(step, Step::Challenge(LOGIN_PASSWORD_PROMPT));
        assert_eq!(ex.step(b"*"), Step::Failed(SaslError::Cancelled));
        assert_eq!(STANDARD.decode(LOGIN_USER_PROMPT).unwrap(), b"Username:");
        assert_eq!(
            STANDARD.decode(LOGIN_PASSWORD_PROMPT).unwrap(),
            b"Password:"
        );
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials {
            user: "bob".into(),
            password: "hunter2".into(),
            mechanism: Mechanism::Plain,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
