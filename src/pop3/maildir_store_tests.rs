//! Maildir store tests on a temporary directory.

use super::*;
use crate::pop3::wire::encode_all;

fn maildir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let md = tmp.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        fs::create_dir_all(md.join(sub)).unwrap();
    }
    (tmp, md)
}

fn deliver(md: &Path, sub: &str, name: &str, body: &[u8]) {
    fs::write(md.join(sub).join(name), body).unwrap();
    // Distinct mtimes keep the delivery order deterministic.
    std::thread::sleep(std::time::Duration::from_millis(10));
}

#[test]
fn sizes_are_rfc1939_octets() {
    let (_t, md) = maildir();
    let lf = b"Subject: a\n\n.dot\nline\n";
    let crlf = b"Subject: b\r\n\r\nbody\r\n";
    deliver(&md, "new", "1.a.host", lf);
    deliver(&md, "cur", "2.b.host:2,S", crlf);
    let mb = Mailbox::open_dir(&md).unwrap();
    let list = mb.listing();
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[0],
        MessageInfo {
            uid: "1.a.host".into(),
            // RETR sends one stuffing dot more than the size (RFC 1939 §5 counts none).
            size: encode_all(lf, None).len() as u64 - 1
        }
    );
    // One CR per line, no stuffing dot.
    assert_eq!(list[0].size, lf.len() as u64 + 4);
    assert_eq!(
        list[1],
        MessageInfo {
            uid: "2.b.host".into(),
            size: crlf.len() as u64
        }
    );
    // Cached for next time.
    drop(mb);
    let cache = fs::read_to_string(md.join(SIZE_CACHE)).unwrap();
    assert!(cache.starts_with(SIZE_CACHE_VERSION), "{cache}");
    assert!(cache.contains("1.a.host 26\n"), "{cache}");
}

#[test]
fn old_size_cache_is_recounted() {
    // A cache written by the old code: no version line, sizes that counted the stuffing dots.
    let (_t, md) = maildir();
    let body = b"S: x\n\n.one\n.two\n.three\n.four\n";
    deliver(&md, "new", "1.a.host", body);
    fs::write(md.join(SIZE_CACHE), "1.a.host 39\n").unwrap();
    let mb = Mailbox::open_dir(&md).unwrap();
    assert_eq!(mb.listing()[0].size, 35);
    drop(mb);
    let cache = fs::read_to_string(md.join(SIZE_CACHE)).unwrap();
    assert_eq!(cache, format!("{SIZE_CACHE_VERSION}\n1.a.host 35\n"));
    // And a current-version cache is believed (it is what saves reading every file).
    fs::write(
        md.join(SIZE_CACHE),
        format!("{SIZE_CACHE_VERSION}\n1.a.host 7\n"),
    )
    .unwrap();
    assert_eq!(Mailbox::open_dir(&md).unwrap().listing()[0].size, 7);
}

#[test]
fn uidl_stable_across_reopen_and_move() {
    let (_t, md) = maildir();
    deliver(&md, "new", "100.x.host", b"a\n");
    deliver(&md, "new", "101.y.host", b"b\n");
    let first = Mailbox::open_dir(&md).unwrap();
    let uids = first.listing();
    first.commit(&[], &[0]).unwrap();
    assert!(md.join("cur/100.x.host:2,S").exists());
    assert!(!md.join("new/100.x.host").exists());
    assert!(md.join("new/101.y.host").exists());
    let again = Mailbox::open_dir(&md).unwrap();
    let mut a: Vec<_> = uids.iter().map(|m| m.uid.clone()).collect();
    let mut b: Vec<_> = again.listing().iter().map(|m| m.uid.clone()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn flags_are_merged() {
    let (_t, md) = maildir();
    deliver(&md, "cur", "5.z.host:2,F", b"x\n");
    Mailbox::open_dir(&md).unwrap().commit(&[], &[0]).unwrap();
    assert!(md.join("cur/5.z.host:2,FS").exists());
}

#[test]
fn dele_applies_only_at_commit() {
    let (_t, md) = maildir();
    deliver(&md, "new", "1.a.host", b"a\n");
    deliver(&md, "new", "2.b.host", b"b\n");
    // A session that marks deletions but never commits (dropped connection) changes nothing.
    let mb = Mailbox::open_dir(&md).unwrap();
    drop(mb);
    assert!(md.join("new/1.a.host").exists());
    let mb = Mailbox::open_dir(&md).unwrap();
    mb.commit(&[0], &[]).unwrap();
    assert!(!md.join("new/1.a.host").exists());
    assert_eq!(Mailbox::open_dir(&md).unwrap().listing().len(), 1);
}

#[test]
fn lock_excludes_second_session() {
    let (_t, md) = maildir();
    let first = Mailbox::open_dir(&md).unwrap();
    assert!(matches!(Mailbox::open_dir(&md), Err(StoreError::InUse)));
    // Delivery during the session is fine and shows up next time.
    deliver(&md, "new", "9.n.host", b"new mail\n");
    assert_eq!(first.listing().len(), 0);
    first.commit(&[], &[]).unwrap();
    assert_eq!(Mailbox::open_dir(&md).unwrap().listing().len(), 1);
}

#[test]
fn missing_maildir_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let mb = Mailbox::open(tmp.path(), "nobody@x.test").unwrap();
    assert!(mb.listing().is_empty());
    mb.commit(&[], &[]).unwrap();
    assert!(matches!(
        Mailbox::open(tmp.path(), "../x@y"),
        Err(StoreError::BadAddress(_))
    ));
}

#[test]
fn odd_names_get_hashed_uids() {
    assert_eq!(uidl_for("1.a.host"), "1.a.host");
    assert_eq!(uidl_for(&"x".repeat(71)).len(), 32);
    assert_eq!(uidl_for("has space").len(), 32);
    assert_eq!(unique_name("1.a.host:2,S"), "1.a.host");
}
