//! Micro-benchmarks of the sans-IO SMTP code: command parsing (commands/s) and DATA body
//! scanning (bytes/s) for a 1 KB and a 100 KB message.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringmail::smtp::{DataScanner, parse_command};

/// A typical pipelined transaction's command lines.
const COMMANDS: [&[u8]; 8] = [
    b"EHLO client.example.com",
    b"MAIL FROM:<sender@example.com> SIZE=12345 BODY=8BITMIME",
    b"RCPT TO:<alice@example.org>",
    b"RCPT TO:<bob.smith+tag@mail.example.org>",
    b"DATA",
    b"BDAT 65536 LAST",
    b"RSET",
    b"NOOP",
];

/// A message body of about `size` octets in wire form, ending in CRLF.CRLF, with some
/// dot-stuffed lines so the slow paths are exercised too.
fn message(size: usize) -> Vec<u8> {
    let mut body = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n".to_vec();
    let mut n = 0;
    while body.len() < size {
        if n % 10 == 0 {
            body.extend_from_slice(b"..a line that was dot-stuffed by the client\r\n");
        } else {
            body.extend_from_slice(
                b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n",
            );
        }
        n += 1;
    }
    body.extend_from_slice(b".\r\n");
    body
}

fn parse_commands(c: &mut Criterion) {
    let mut group = c.benchmark_group("smtp_command_parse");
    group.throughput(Throughput::Elements(COMMANDS.len() as u64));
    group.bench_function("transaction", |b| {
        b.iter(|| {
            for line in COMMANDS {
                let _ = black_box(parse_command(black_box(line)));
            }
        })
    });
    group.finish();
}

fn scan_data(c: &mut Criterion) {
    let mut group = c.benchmark_group("smtp_data_scan");
    for size in [1024, 100 * 1024] {
        let input = message(size);
        let mut body = Vec::with_capacity(input.len());
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &input, |b, input| {
            b.iter(|| {
                body.clear();
                let mut scanner = DataScanner::new(1 << 20);
                let (used, done) = scanner.scan(black_box(input), &mut body);
                assert!(done && used == input.len());
                black_box(&body);
            })
        });
    }
    group.finish();
}

fn fast() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = fast();
    targets = parse_commands, scan_data
}
criterion_main!(benches);
