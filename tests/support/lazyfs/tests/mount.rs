//! The file system through the kernel: plain std file calls on a real mount, a cut, and what
//! is left. Needs `/dev/fuse` and the right to mount (root, or `fusermount3`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use lazyfs::LazyFs;

fn sync_dir(dir: &Path) {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
}

#[test]
fn only_synced_data_and_names_survive_a_cut() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).expect("mountpoint");
    let fs = LazyFs::mount(&mnt).expect("mount (needs /dev/fuse)");

    fs::create_dir(mnt.join("tmp")).expect("mkdir");
    fs::create_dir(mnt.join("new")).expect("mkdir");
    sync_dir(&mnt);
    // Written, synced, renamed, new/ synced: durable.
    let mut f = fs::File::create(mnt.join("tmp/kept")).expect("create");
    f.write_all(b"kept").expect("write");
    f.sync_data().expect("fdatasync");
    fs::rename(mnt.join("tmp/kept"), mnt.join("new/kept")).expect("rename");
    sync_dir(&mnt.join("new"));
    // Renamed and new/ synced, data never synced: the name survives, empty.
    let mut g = fs::File::create(mnt.join("tmp/torn")).expect("create");
    g.write_all(b"torn").expect("write");
    fs::rename(mnt.join("tmp/torn"), mnt.join("new/torn")).expect("rename");
    sync_dir(&mnt.join("new"));
    // Synced data, name never synced: gone.
    let mut h = fs::File::create(mnt.join("new/nameless")).expect("create");
    h.write_all(b"nameless").expect("write");
    h.sync_all().expect("fsync");
    // O_DIRECT opens work (FOPEN_DIRECT_IO).
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(mnt.join("new/kept"))
        .expect("O_DIRECT open");
    drop((f, g, h));

    fs.freeze();
    assert!(fs::File::create(mnt.join("new/late")).is_err(), "frozen");
    fs.power_cut();

    let mut names: Vec<String> = fs::read_dir(mnt.join("new"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["kept", "torn"]);
    assert_eq!(fs::read(mnt.join("new/kept")).expect("read"), b"kept");
    assert_eq!(fs::read(mnt.join("new/torn")).expect("read"), b"");
    assert!(
        fs::read_dir(mnt.join("tmp"))
            .expect("readdir")
            .next()
            .is_none()
    );
    let stats = fs.stats();
    assert_eq!(stats.cuts, 1);
}
