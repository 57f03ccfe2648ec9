//! One log line to an [`Event`]: the timestamp and what it says about mail, from either log
//! format (text: `DATE TIME THREAD LEVEL: MSG`; JSON: `{"ts":..,"msg":..}`, src/logging/).
//! Lines that are about something else are `None`.

/// What a log line says about the mail flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `new msg ID: from <S> via ..., N bytes, R recipients`.
    NewMessage {
        id: String,
        sender: String,
        bytes: u64,
        recipients: u64,
    },
    /// `bounce msg BID for msg ID to <X>`: the server queued a bounce.
    Bounce { id: String },
    /// `delivery ID to RCPT: success|deferral|failure: TEXT`.
    Delivery {
        id: String,
        recipient: String,
        outcome: Outcome,
        text: String,
    },
    /// `end msg ID`.
    End { id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Success,
    Deferral,
    Failure,
}

/// A line's timestamp (Unix seconds, milliseconds as the fraction) and message text.
pub fn split_line(line: &str) -> Option<(f64, String)> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let ts = value.get("ts")?.as_str()?;
        let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
        let at = parse_time(date, time)?;
        return Some((at, value.get("msg")?.as_str()?.to_string()));
    }
    let mut fields = line.splitn(4, ' ');
    let (date, time, _thread, rest) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let at = parse_time(date, time)?;
    // `LEVEL: MESSAGE`
    let (_level, message) = rest.split_once(": ")?;
    Some((at, message.to_string()))
}

/// `YYYY-MM-DD` and `HH:MM:SS[.mmm]` (UTC) to Unix seconds.
pub fn parse_time(date: &str, time: &str) -> Option<f64> {
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':');
    let hour: u32 = t.next()?.parse().ok()?;
    let minute: u32 = t.next()?.parse().ok()?;
    let second: u32 = t.next().unwrap_or("0").parse().ok()?;
    if t.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + i64::from(hour * 3600 + minute * 60 + second)) as f64 + frac)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The event in a log message, if it is one.
pub fn parse_message(message: &str) -> Option<Event> {
    if let Some(rest) = message.strip_prefix("new msg ") {
        let (id, rest) = rest.split_once(": from <")?;
        let (sender, rest) = rest.split_once("> via ")?;
        // `..., N bytes, R recipients` at the end; the peer text before it may hold commas.
        let mut parts = rest.rsplitn(3, ", ");
        let recipients = parts.next()?.strip_suffix(" recipients")?.parse().ok()?;
        let bytes = parts.next()?.strip_suffix(" bytes")?.parse().ok()?;
        return Some(Event::NewMessage {
            id: id.to_string(),
            sender: sender.to_string(),
            bytes,
            recipients,
        });
    }
    if let Some(rest) = message.strip_prefix("bounce msg ") {
        let (id, _) = rest.split_once(' ')?;
        return Some(Event::Bounce { id: id.to_string() });
    }
    if let Some(rest) = message.strip_prefix("end msg ") {
        return Some(Event::End {
            id: rest.trim().to_string(),
        });
    }
    let rest = message.strip_prefix("delivery ")?;
    let (id, rest) = rest.split_once(" to ")?;
    for (word, outcome) in [
        (": success: ", Outcome::Success),
        (": deferral: ", Outcome::Deferral),
        (": failure: ", Outcome::Failure),
    ] {
        if let Some((recipient, text)) = rest.split_once(word) {
            return Some(Event::Delivery {
                id: id.to_string(),
                recipient: recipient.to_string(),
                outcome,
                text: text.to_string(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_split() {
        let text = "2026-11-25 16:31:31.123 ringmail-shard-0 info: end msg 3.1a.40";
        let json = r#"{"ts":"2026-11-25T16:31:31.123Z","level":"info","thread":"ringmail-shard-0","msg":"end msg 3.1a.40"}"#;
        for line in [text, json] {
            let (at, message) = split_line(line).unwrap();
            assert!((at - 1_795_624_291.123).abs() < 1e-6, "{at}");
            assert_eq!(message, "end msg 3.1a.40");
        }
        assert_eq!(split_line("garbage"), None);
        assert_eq!(split_line("{not json"), None);
    }

    #[test]
    fn events() {
        let cases = [
            (
                "new msg 1.0.2: from <a@x.test> via 127.0.0.1:4000, 1043 bytes, 2 recipients",
                Some(Event::NewMessage {
                    id: "1.0.2".into(),
                    sender: "a@x.test".into(),
                    bytes: 1043,
                    recipients: 2,
                }),
            ),
            (
                "new msg 1.0.3: from <> via http 127.0.0.1:9, 10 bytes, 1 recipients",
                Some(Event::NewMessage {
                    id: "1.0.3".into(),
                    sender: "".into(),
                    bytes: 10,
                    recipients: 1,
                }),
            ),
            (
                "delivery 1.0.2 to b@y.test: deferral: 421 busy (attempt 1, next Thu)",
                Some(Event::Delivery {
                    id: "1.0.2".into(),
                    recipient: "b@y.test".into(),
                    outcome: Outcome::Deferral,
                    text: "421 busy (attempt 1, next Thu)".into(),
                }),
            ),
            (
                "bounce msg 1.1.0 for msg 1.0.2 to <a@x.test>",
                Some(Event::Bounce { id: "1.1.0".into() }),
            ),
            ("end msg 1.0.2", Some(Event::End { id: "1.0.2".into() })),
            ("ringmail started: 2 shards", None),
            ("delivery 1.0.2 to b@y.test: not attempted: stopping", None),
        ];
        for (message, want) in cases {
            assert_eq!(parse_message(message), want, "{message}");
        }
    }
}
