//! A LazyFS-style FUSE file system for power-loss tests: it keeps every change that was not
//! made durable (file bytes not `fsync`ed, directory entries whose directory was not `fsync`ed)
//! in a volatile layer, and a [`LazyFs::power_cut`] drops that layer, as losing power drops the
//! page cache. A `SIGKILL` alone cannot test durability: the kernel keeps the killed process's
//! writes. See `model` for exactly what counts as durable when.
//!
//! The "disk" (what survives a cut) is an in-memory image inside the test process, not a
//! backing directory: a cut is then exact and instantaneous, and the file system keeps running
//! across cuts, so a test restarts its server on the same mount and sees only what survived.
//!
//! Mounting needs `/dev/fuse`; as root `fuser` mounts directly, otherwise through
//! `fusermount3` (Debian's `fuse3`, installed by `scripts/install-test-deps`).
//!
//! The kernel is told to cache nothing for long (zero entry and attribute timeouts, no
//! `FOPEN_KEEP_CACHE`), so after a cut it asks again and sees the surviving state. Opens with
//! `O_DIRECT` are answered with `FOPEN_DIRECT_IO`, so a program using direct I/O gets it.

mod model;

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use model::Kind;
pub use model::{Model, Stats};

/// How long the kernel may trust a name or an attribute: not at all, since a cut changes both
/// behind its back.
const TTL: Duration = Duration::ZERO;

/// A mounted lazy file system; unmounted on drop.
pub struct LazyFs {
    model: Arc<Mutex<Model>>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

impl LazyFs {
    /// Mounts an empty file system at `mountpoint` (an existing, empty directory).
    pub fn mount(mountpoint: &Path) -> io::Result<LazyFs> {
        let model = Arc::new(Mutex::new(Model::new()));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lazyfs".into()),
            MountOption::Subtype("lazyfs".into()),
            MountOption::DefaultPermissions,
        ];
        // A server started as root drops to an unprivileged user: by default FUSE lets only
        // the mounting user in (allow_other lifts that). The kernel still checks each file's
        // mode and owner (DefaultPermissions), as on a real disk.
        config.acl = fuser::SessionACL::All;
        let fs = Fuse {
            model: model.clone(),
        };
        let session = fuser::spawn_mount(fs, mountpoint, &config)?;
        Ok(LazyFs {
            model,
            session: Some(session),
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The instant the power goes: nothing changes on the "disk" any more (every change and
    /// sync fails with `EIO`). Kill the programs writing, then call [`LazyFs::power_cut`].
    pub fn freeze(&self) {
        lock(&self.model).freeze();
    }

    /// Drops everything that was not durable at the last `freeze` (or now, if not frozen), and
    /// lets changes in again: the file system now holds what a machine would find after
    /// power came back.
    pub fn power_cut(&self) {
        lock(&self.model).power_cut();
    }

    pub fn stats(&self) -> Stats {
        lock(&self.model).stats()
    }

    /// The tree as the file system holds it now (see `Model::dump`), for failure messages.
    pub fn dump(&self, file_depth: usize) -> String {
        lock(&self.model).dump(file_depth)
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.session.take().map(BackgroundSession::umount_and_join) {
            eprintln!("lazyfs: unmounting {}: {e}", self.mountpoint.display());
        }
    }
}

/// A poisoned lock means a FUSE handler panicked: the model is still consistent enough for a
/// test to report what it saw.
fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `fuser` side: turns requests into model calls.
struct Fuse {
    model: Arc<Mutex<Model>>,
}

impl Fuse {
    fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }
}

fn errno(e: model::Errno) -> Errno {
    Errno::from_i32(e)
}

fn file_attr(a: model::Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: if a.kind == Kind::Dir { 2 } else { 1 },
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Socket => FileType::Socket,
        Kind::Fifo => FileType::NamedPipe,
    }
}

/// The kernel's open flags, with `O_DIRECT` honoured by bypassing its page cache.
fn open_flags(flags: i32) -> FopenFlags {
    if flags & libc::O_DIRECT != 0 {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::empty()
    }
}

fn reply_entry(reply: ReplyEntry, result: Result<model::Attr, model::Errno>) {
    match result {
        Ok(a) => reply.entry(&TTL, &file_attr(a), Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), model::Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

impl Filesystem for Fuse {
    fn init(&mut self, _req: &Request, _config: &mut KernelConfig) -> io::Result<()> {
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.model().lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model().attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut m = self.model();
        let mut result = Ok(());
        if let Some(size) = size {
            result = m.set_size(ino.0, size);
        }
        if result.is_ok() && (mode.is_some() || uid.is_some() || gid.is_some()) {
            result = m.set_meta(ino.0, mode.map(|m| (m & 0o7777) as u16), uid, gid);
        }
        match result.and_then(|()| m.attr(ino.0)) {
            Ok(a) => reply.attr(&TTL, &file_attr(a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let (uid, gid) = (req.uid(), req.gid());
        let mut m = self.model();
        let result = match mode & libc::S_IFMT {
            libc::S_IFREG => m.create(parent.0, name, perm, uid, gid),
            // A Unix socket's bind (a server's control socket) or a FIFO.
            libc::S_IFSOCK => m.mknod(parent.0, name, Kind::Socket, perm, uid, gid),
            libc::S_IFIFO => m.mknod(parent.0, name, Kind::Fifo, perm, uid, gid),
            _ => Err(libc::EPERM),
        };
        reply_entry(reply, result);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        reply_entry(
            reply,
            self.model()
                .mkdir(parent.0, name, perm, req.uid(), req.gid()),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.model().remove(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.model().remove(parent.0, name, true));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            reply.error(Errno::EINVAL);
            return;
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        reply_empty(
            reply,
            self.model()
                .rename(parent.0, name, newparent.0, newname, noreplace),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, self.model().link(ino.0, newparent.0, newname));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.model().attr(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), open_flags(flags.0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let mut m = self.model();
        // The kernel sends CREATE for O_CREAT opens of names it did not find (or has no
        // entry for); without O_EXCL an existing file is opened, as open(2) would.
        let result = match m.create(parent.0, name, perm, req.uid(), req.gid()) {
            Err(libc::EEXIST) if flags & libc::O_EXCL == 0 => m.lookup(parent.0, name),
            other => other,
        };
        match result {
            Ok(a) => reply.created(
                &TTL,
                &file_attr(a),
                Generation(0),
                FileHandle(0),
                open_flags(flags),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model().read(ino.0, offset, size) {
            Ok(data) => reply.data(data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.model().write(ino.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is no sync: nothing becomes durable here.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.model().sync_file(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.model().list(ino.0) {
            Ok(entries) => entries,
            Err(e) => {
                reply.error(errno(e));
                return;
            }
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(skip) {
            if reply.add(INodeNo(child), i as u64 + 1, file_type(kind), name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.model().sync_dir(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room: programs that check free space before writing go ahead.
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // `default_permissions` makes the kernel check modes itself.
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = match mode {
            0 => self.model().allocate(ino.0, offset, length),
            // Reserving blocks without growing the file changes nothing a reader sees.
            libc::FALLOC_FL_KEEP_SIZE => self.model().attr(ino.0).map(|_| ()),
            _ => Err(libc::EOPNOTSUPP),
        };
        reply_empty(reply, result);
    }
}
