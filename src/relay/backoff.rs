//! Reply-pattern backoff (PowerMTA's and KumoMTA's "automatic throttling"): rules that match
//! what a remote server says (`421 4.7.28 ... unusual rate of unsolicited mail` from Gmail,
//! `421 RP-001` from Outlook) and suspend or slow the destination, or only the source address
//! that heard it, for a while. Sans-IO: the owner feeds replies in and applies the actions
//! (`shaping::state`).

use std::time::Duration;

use crate::config::{BackoffAction, BackoffScope, RelaySection};
use crate::relay::shaping::gcra::Pace;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send nothing.
    Suspend,
    /// Send no faster than this.
    Slow(Pace),
}

/// One `[relay.backoff.NAME]` rule.
#[derive(Debug, Clone)]
pub struct BackoffRule {
    pub name: String,
    matcher: Matcher,
    pub action: Action,
    pub scope: BackoffScope,
    pub duration: Duration,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// Lowercased; compared with the lowercased reply's start.
    Prefix(String),
    Regex(regex::Regex),
}

impl BackoffRule {
    /// Whether `reply` (code, enhanced code and text on one line, as the DSN's
    /// Diagnostic-Code holds it) is what this rule looks for.
    pub fn matches(&self, reply: &str) -> bool {
        match &self.matcher {
            Matcher::Prefix(prefix) => reply
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix)),
            Matcher::Regex(re) => re.is_match(reply),
        }
    }
}

/// Every rule, in name order.
#[derive(Debug, Clone, Default)]
pub struct BackoffRules(Vec<BackoffRule>);

impl BackoffRules {
    /// The rules of `relay.backoff`; the error names the rule and the key (the loader runs this
    /// too, so a running server never meets one).
    pub fn from_config(relay: &RelaySection) -> Result<BackoffRules, (String, String)> {
        let mut rules = Vec::new();
        for (name, setting) in &relay.backoff {
            let key = |k: &str| format!("relay.backoff.{name}.{k}");
            let matcher = match (setting.prefix.is_empty(), setting.regex.is_empty()) {
                (false, true) => Matcher::Prefix(setting.prefix.to_ascii_lowercase()),
                (true, false) => Matcher::Regex(
                    regex::RegexBuilder::new(&setting.regex)
                        .case_insensitive(true)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| (key("regex"), format!("not a regular expression: {e}")))?,
                ),
                (true, true) => {
                    return Err((key("prefix"), "set `prefix` or `regex`".to_string()));
                }
                (false, false) => {
                    return Err((
                        key("regex"),
                        "set `prefix` or `regex`, not both".to_string(),
                    ));
                }
            };
            if setting.seconds == 0 {
                return Err((key("seconds"), "must be greater than 0".to_string()));
            }
            let action = match setting.action {
                BackoffAction::Suspend => Action::Suspend,
                BackoffAction::Slow => Action::Slow(
                    Pace::from_rates(
                        setting.messages_per_second,
                        setting.messages_per_minute,
                        setting.messages_per_hour,
                        None,
                    )
                    .ok_or_else(|| {
                        (
                            key("messages_per_minute"),
                            "`slow` needs a rate: messages_per_second, _minute or _hour"
                                .to_string(),
                        )
                    })?,
                ),
            };
            rules.push(BackoffRule {
                name: name.clone(),
                matcher,
                action,
                scope: setting.scope,
                duration: Duration::from_secs(setting.seconds),
            });
        }
        Ok(BackoffRules(rules))
    }

    /// The rules `reply` matches.
    pub fn matching<'a>(&'a self, reply: &'a str) -> impl Iterator<Item = &'a BackoffRule> {
        self.0.iter().filter(move |rule| rule.matches(reply))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<BackoffRules, (String, String)> {
        let config = crate::config::load_str(text, "test").expect("config");
        BackoffRules::from_config(&config.relay)
    }

    #[test]
    fn prefixes_and_regexes_match_replies() {
        let r = rules(
            "[relay.backoff.gmail]\nprefix = \"421 4.7.28\"\naction = \"suspend\"\nseconds = 600\n\
             [relay.backoff.outlook]\nregex = '^421 RP-00[12]'\naction = \"slow\"\nseconds = 60\n\
             messages_per_minute = 10\nscope = \"source\"\n",
        )
        .unwrap();
        let names = |reply: &str| -> Vec<String> {
            r.matching(reply).map(|rule| rule.name.clone()).collect()
        };
        assert_eq!(
            names("421 4.7.28 [192.0.2.1] Our system has detected an unusual rate"),
            ["gmail"]
        );
        assert_eq!(names("421 4.7.2 try later"), Vec::<String>::new());
        assert_eq!(names("421 rp-001 (BAY004) Unfortunately"), ["outlook"]);
        assert_eq!(names("550 5.1.1 no such user"), Vec::<String>::new());
        let outlook = r.matching("421 RP-002").next().unwrap();
        assert_eq!(outlook.scope, BackoffScope::Source);
        assert_eq!(
            outlook.action,
            Action::Slow(Pace {
                interval: Duration::from_secs(6),
                burst: 1
            })
        );
    }

    #[test]
    fn bad_rules_name_their_key() {
        let cases = [
            (
                "[relay.backoff.a]\naction = \"suspend\"\nseconds = 5\n",
                "relay.backoff.a.prefix",
            ),
            (
                "[relay.backoff.a]\nprefix = \"4\"\nregex = \"4\"\naction = \"suspend\"\nseconds = 5\n",
                "relay.backoff.a.regex",
            ),
            (
                "[relay.backoff.a]\nregex = \"(\"\naction = \"suspend\"\nseconds = 5\n",
                "relay.backoff.a.regex",
            ),
            (
                "[relay.backoff.a]\nprefix = \"4\"\naction = \"slow\"\nseconds = 5\n",
                "relay.backoff.a.messages_per_minute",
            ),
        ];
        for (text, key) in cases {
            let config = crate::config::check_str(text, "test");
            let errors = config.expect_err(text);
            assert_eq!(errors[0].key, key, "{text}");
        }
    }
}
