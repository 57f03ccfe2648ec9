//! The big mailbox providers ringmail knows out of the box: how to recognise them by their MX
//! host names (MX rollup), and starting limits for each. The limits are conservative starting
//! points for a sender with an established reputation, not figures the providers publish; the
//! providers throttle by reputation, and `[relay.backoff]` rules react to what they say.
//! `[relay.providers]` and `[relay.shaping.NAME]` override both, key by key.

/// One built-in provider: name, MX host suffixes, and limits (connections per source address,
/// messages per connection, messages per minute per source address; 0: no limit).
pub struct BuiltinProvider {
    pub name: &'static str,
    pub mx_suffixes: &'static [&'static str],
    pub max_connections: usize,
    pub max_messages_per_connection: usize,
    pub messages_per_minute: u32,
}

/// The table the README documents.
pub const BUILTIN_PROVIDERS: &[BuiltinProvider] = &[
    BuiltinProvider {
        name: "google",
        mx_suffixes: &[".google.com", ".googlemail.com"],
        max_connections: 10,
        max_messages_per_connection: 100,
        messages_per_minute: 0,
    },
    BuiltinProvider {
        name: "outlook",
        mx_suffixes: &[".outlook.com", ".hotmail.com"],
        max_connections: 10,
        max_messages_per_connection: 100,
        messages_per_minute: 0,
    },
    BuiltinProvider {
        name: "yahoo",
        mx_suffixes: &[".yahoodns.net"],
        max_connections: 5,
        max_messages_per_connection: 20,
        messages_per_minute: 600,
    },
    BuiltinProvider {
        name: "icloud",
        mx_suffixes: &[".icloud.com"],
        max_connections: 5,
        max_messages_per_connection: 50,
        messages_per_minute: 0,
    },
    BuiltinProvider {
        name: "gmx",
        mx_suffixes: &[".gmx.net", ".web.de"],
        max_connections: 5,
        max_messages_per_connection: 50,
        messages_per_minute: 0,
    },
    BuiltinProvider {
        name: "yandex",
        mx_suffixes: &[".yandex.ru", ".yandex.net"],
        max_connections: 5,
        max_messages_per_connection: 50,
        messages_per_minute: 0,
    },
    BuiltinProvider {
        name: "mailru",
        mx_suffixes: &[".mail.ru"],
        max_connections: 5,
        max_messages_per_connection: 50,
        messages_per_minute: 0,
    },
    BuiltinProvider {
        name: "comcast",
        mx_suffixes: &[".comcast.net"],
        max_connections: 5,
        max_messages_per_connection: 50,
        messages_per_minute: 0,
    },
    BuiltinProvider {
        name: "zoho",
        mx_suffixes: &[".zoho.com", ".zoho.eu"],
        max_connections: 5,
        max_messages_per_connection: 50,
        messages_per_minute: 0,
    },
];
