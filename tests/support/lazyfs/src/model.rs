//! The durability model: every file and directory twice, as the program sees it now and as
//! the disk holds it. A power cut replaces the first by the second.
//!
//! What reaches the "disk", modelled on Linux/ext4 conservatively (the least a program may
//! count on, which is what a mail system must be written against):
//!
//! | change | durable after |
//! |---|---|
//! | a file's bytes and size (`write`, `truncate`, `fallocate`) | `fsync`/`fdatasync` of that file |
//! | a name in a directory (create, `mkdir`, `link`, `rename` in or out, `unlink`, `rmdir`) | `fsync` of that directory |
//!
//! So a renamed file's new name needs its new directory synced and the removal of its old
//! name its old directory; a file whose data was synced but whose name was not is gone after
//! a cut, as on a real disk. Nothing else is ever written back on its own: no writeback, no
//! journal commit, no torn writes. Metadata other than size (mode, owner, times) is not
//! modelled as volatile: nothing here depends on it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

/// The root directory's inode number (FUSE's).
pub const ROOT: u64 = 1;

/// Why an operation failed, as an errno.
pub type Errno = i32;

/// What a node is. Sockets and FIFOs are only names (a server's control socket): the kernel
/// does their I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Socket,
    Fifo,
}

/// A file's or directory's attributes, as `getattr` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

#[derive(Debug)]
enum Body {
    File {
        data: Vec<u8>,
        durable: Vec<u8>,
        /// The span of bytes written since the last sync (`start..end`): syncing copies only
        /// these, so a big preallocated file costs its appends, not its size, per sync.
        dirty: Dirty,
    },
    Dir {
        parent: u64,
        entries: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
    },
    Special(Kind),
}

#[derive(Debug)]
struct Node {
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    ctime: SystemTime,
    body: Body,
}

/// A byte span `start..end` of a file written since its last sync.
type Dirty = Option<(u64, u64)>;

/// Counters for tests and reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub cuts: u64,
    /// Changes refused while frozen (between the cut's instant and its completion).
    pub refused_frozen: u64,
}

/// The whole file system.
#[derive(Debug)]
pub struct Model {
    nodes: HashMap<u64, Node>,
    /// Inode numbers are never reused, so a number the kernel still holds from before a cut
    /// can never name a different file after it.
    next_ino: u64,
    frozen: bool,
    stats: Stats,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    /// An empty file system whose root directory is durable (mode 0755, owned by root).
    pub fn new() -> Model {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(0o755, 0, 0, dir_body(ROOT)));
        Model {
            nodes,
            next_ino: ROOT + 1,
            frozen: false,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The instant of a power cut: from now on no change reaches the disk (every change and
    /// sync fails with `EIO`) until [`Model::power_cut`] completes it. Callers freeze first,
    /// then kill the writers, then cut, so that nothing a dying process still had in flight is
    /// applied after the instant.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Drops everything not durable: every directory's names and every file's bytes go back to
    /// what was last synced; what is no longer reachable from the root through durable names
    /// is gone. Thaws the file system.
    pub fn power_cut(&mut self) {
        let mut reachable = HashSet::new();
        let mut stack = vec![(ROOT, ROOT)];
        let mut parents = Vec::new();
        while let Some((ino, parent)) = stack.pop() {
            if !reachable.insert(ino) {
                continue;
            }
            if let Some(Node {
                body: Body::Dir { durable, .. },
                ..
            }) = self.nodes.get(&ino)
            {
                parents.push((ino, parent));
                stack.extend(durable.values().map(|&child| (child, ino)));
            }
        }
        self.nodes.retain(|ino, _| reachable.contains(ino));
        for node in self.nodes.values_mut() {
            match &mut node.body {
                Body::File {
                    data,
                    durable,
                    dirty,
                } => {
                    data.clone_from(durable);
                    *dirty = None;
                }
                Body::Dir {
                    entries, durable, ..
                } => entries.clone_from(durable),
                Body::Special(_) => {}
            }
        }
        for (ino, parent) in parents {
            if let Some(Node {
                body: Body::Dir { parent: p, .. },
                ..
            }) = self.nodes.get_mut(&ino)
            {
                *p = parent;
            }
        }
        self.frozen = false;
        self.stats.cuts += 1;
    }

    /// The tree as it is now, one line per name, for a failing test's message: directories
    /// with their entry count (and how many of those are durable), files with their size
    /// (and durable size). Files are listed only down to `file_depth`.
    pub fn dump(&self, file_depth: usize) -> String {
        let mut out = String::new();
        self.dump_dir(ROOT, "", 0, file_depth, &mut out);
        out
    }

    fn dump_dir(&self, ino: u64, path: &str, depth: usize, file_depth: usize, out: &mut String) {
        let Some(Node {
            body: Body::Dir {
                entries, durable, ..
            },
            ..
        }) = self.nodes.get(&ino)
        else {
            return;
        };
        out.push_str(&format!(
            "{path}/ {} entries, {} durable\n",
            entries.len(),
            entries
                .iter()
                .filter(|(n, i)| durable.get(*n) == Some(*i))
                .count()
        ));
        for (name, &child) in entries {
            let child_path = format!("{path}/{}", name.to_string_lossy());
            match self.nodes.get(&child).map(|n| &n.body) {
                Some(Body::Dir { .. }) => {
                    self.dump_dir(child, &child_path, depth + 1, file_depth, out)
                }
                Some(Body::File {
                    data, durable: d, ..
                }) if depth < file_depth => out.push_str(&format!(
                    "{child_path} {} bytes, {} durable\n",
                    data.len(),
                    d.len()
                )),
                _ => {}
            }
        }
    }

    fn check_thawed(&mut self) -> Result<(), Errno> {
        if self.frozen {
            self.stats.refused_frozen += 1;
            return Err(libc::EIO);
        }
        Ok(())
    }

    pub fn attr(&self, ino: u64) -> Result<Attr, Errno> {
        let node = self.nodes.get(&ino).ok_or(libc::ENOENT)?;
        let (kind, size) = match &node.body {
            Body::File { data, .. } => (Kind::File, data.len() as u64),
            Body::Dir { entries, .. } => (Kind::Dir, entries.len() as u64),
            Body::Special(kind) => (*kind, 0),
        };
        Ok(Attr {
            ino,
            kind,
            size,
            perm: node.perm,
            uid: node.uid,
            gid: node.gid,
            mtime: node.mtime,
            ctime: node.ctime,
        })
    }

    fn dir(&self, ino: u64) -> Result<&BTreeMap<OsString, u64>, Errno> {
        match &self.nodes.get(&ino).ok_or(libc::ENOENT)?.body {
            Body::Dir { entries, .. } => Ok(entries),
            _ => Err(libc::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        let node = self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        node.mtime = SystemTime::now();
        node.ctime = node.mtime;
        match &mut node.body {
            Body::Dir { entries, .. } => Ok(entries),
            _ => Err(libc::ENOTDIR),
        }
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(
            self.nodes.get(&ino).map(|n| &n.body),
            Some(Body::Dir { .. })
        )
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, Errno> {
        let ino = *self.dir(parent)?.get(name).ok_or(libc::ENOENT)?;
        self.attr(ino)
    }

    /// The entries of a directory, `.` and `..` first: `(ino, kind, name)`.
    pub fn list(&self, ino: u64) -> Result<Vec<(u64, Kind, OsString)>, Errno> {
        let node = self.nodes.get(&ino).ok_or(libc::ENOENT)?;
        let Body::Dir {
            parent, entries, ..
        } = &node.body
        else {
            return Err(libc::ENOTDIR);
        };
        let mut out = vec![
            (ino, Kind::Dir, ".".into()),
            (*parent, Kind::Dir, "..".into()),
        ];
        out.extend(entries.iter().map(|(name, &child)| {
            let kind = self.attr(child).map_or(Kind::File, |a| a.kind);
            (child, kind, name.clone())
        }));
        Ok(out)
    }

    fn add(&mut self, parent: u64, name: &OsStr, node: Node) -> Result<Attr, Errno> {
        self.check_thawed()?;
        if self.dir(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.dir_mut(parent)?.insert(name.to_owned(), ino);
        self.attr(ino)
    }

    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Attr, Errno> {
        let body = Body::File {
            data: Vec::new(),
            durable: Vec::new(),
            dirty: None,
        };
        self.add(parent, name, Node::new(perm, uid, gid, body))
    }

    /// `mknod(2)` of a socket or FIFO: a name, nothing to store.
    pub fn mknod(
        &mut self,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Attr, Errno> {
        self.add(parent, name, Node::new(perm, uid, gid, Body::Special(kind)))
    }

    pub fn mkdir(
        &mut self,
        parent: u64,
        name: &OsStr,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Attr, Errno> {
        self.add(parent, name, Node::new(perm, uid, gid, dir_body(parent)))
    }

    /// Removes a name: a file's (`unlink`) or an empty directory's (`rmdir`). The node stays
    /// until the next cut: a durable name may still point to it, and open handles may use it.
    pub fn remove(&mut self, parent: u64, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        self.check_thawed()?;
        let ino = *self.dir(parent)?.get(name).ok_or(libc::ENOENT)?;
        match (self.is_dir(ino), want_dir) {
            (true, false) => return Err(libc::EISDIR),
            (false, true) => return Err(libc::ENOTDIR),
            (true, true) if !self.dir(ino)?.is_empty() => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        self.dir_mut(parent)?.remove(name);
        Ok(())
    }

    /// `rename(2)`; `noreplace` is `RENAME_NOREPLACE`.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        noreplace: bool,
    ) -> Result<(), Errno> {
        self.check_thawed()?;
        let ino = *self.dir(parent)?.get(name).ok_or(libc::ENOENT)?;
        if let Some(&target) = self.dir(new_parent)?.get(new_name) {
            if noreplace {
                return Err(libc::EEXIST);
            }
            if target == ino {
                return Ok(());
            }
            match (self.is_dir(ino), self.is_dir(target)) {
                (false, true) => return Err(libc::EISDIR),
                (true, false) => return Err(libc::ENOTDIR),
                (true, true) if !self.dir(target)?.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        self.dir_mut(parent)?.remove(name);
        self.dir_mut(new_parent)?.insert(new_name.to_owned(), ino);
        if let Some(Node {
            body: Body::Dir { parent: p, .. },
            ..
        }) = self.nodes.get_mut(&ino)
        {
            *p = new_parent;
        }
        Ok(())
    }

    /// `link(2)`: a second name for a file.
    pub fn link(&mut self, ino: u64, new_parent: u64, new_name: &OsStr) -> Result<Attr, Errno> {
        self.check_thawed()?;
        if self.is_dir(ino) {
            return Err(libc::EPERM);
        }
        self.attr(ino)?;
        if self.dir(new_parent)?.contains_key(new_name) {
            return Err(libc::EEXIST);
        }
        self.dir_mut(new_parent)?.insert(new_name.to_owned(), ino);
        self.attr(ino)
    }

    fn file_mut(&mut self, ino: u64) -> Result<(&mut Vec<u8>, &mut Dirty), Errno> {
        let node = self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        node.mtime = SystemTime::now();
        node.ctime = node.mtime;
        match &mut node.body {
            Body::File { data, dirty, .. } => Ok((data, dirty)),
            Body::Dir { .. } => Err(libc::EISDIR),
            Body::Special(_) => Err(libc::EINVAL),
        }
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<&[u8], Errno> {
        match &self.nodes.get(&ino).ok_or(libc::ENOENT)?.body {
            Body::File { data, .. } => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                Ok(&data[start..end])
            }
            Body::Dir { .. } => Err(libc::EISDIR),
            Body::Special(_) => Err(libc::EINVAL),
        }
    }

    pub fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        self.check_thawed()?;
        let (data, dirty) = self.file_mut(ino)?;
        let start = usize::try_from(offset).map_err(|_| libc::EFBIG)?;
        let end = start.checked_add(bytes.len()).ok_or(libc::EFBIG)?;
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        mark(dirty, offset, end as u64);
        Ok(())
    }

    /// `truncate(2)` / `ftruncate(2)` (grow or shrink).
    pub fn set_size(&mut self, ino: u64, size: u64) -> Result<(), Errno> {
        self.check_thawed()?;
        let (data, dirty) = self.file_mut(ino)?;
        let old = data.len() as u64;
        data.resize(usize::try_from(size).map_err(|_| libc::EFBIG)?, 0);
        // Grown bytes read as zeros; the size itself is copied at every sync.
        if size > old {
            mark(dirty, old, size);
        }
        Ok(())
    }

    /// `fallocate(2)` mode 0: the file is at least `offset + length` long.
    pub fn allocate(&mut self, ino: u64, offset: u64, length: u64) -> Result<(), Errno> {
        let end = offset.checked_add(length).ok_or(libc::EFBIG)?;
        if self.attr(ino)?.size < end {
            self.set_size(ino, end)?;
        } else {
            self.check_thawed()?;
        }
        Ok(())
    }

    pub fn set_meta(
        &mut self,
        ino: u64,
        perm: Option<u16>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(), Errno> {
        self.check_thawed()?;
        let node = self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        node.perm = perm.unwrap_or(node.perm);
        node.uid = uid.unwrap_or(node.uid);
        node.gid = gid.unwrap_or(node.gid);
        node.ctime = SystemTime::now();
        Ok(())
    }

    /// `fsync`/`fdatasync` of a file: its bytes and size become durable (its name does not).
    pub fn sync_file(&mut self, ino: u64) -> Result<(), Errno> {
        self.check_thawed()?;
        match &mut self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?.body {
            Body::File {
                data,
                durable,
                dirty,
            } => {
                durable.resize(data.len(), 0);
                if let Some((start, end)) = dirty.take() {
                    let end = (end as usize).min(data.len());
                    let start = (start as usize).min(end);
                    durable[start..end].copy_from_slice(&data[start..end]);
                }
            }
            // fsync of a directory opened as a file handle: the same as fsyncdir.
            Body::Dir {
                entries, durable, ..
            } => durable.clone_from(entries),
            Body::Special(_) => {}
        }
        self.stats.file_syncs += 1;
        Ok(())
    }

    /// `fsync` of a directory: its names (as they are now) become durable.
    pub fn sync_dir(&mut self, ino: u64) -> Result<(), Errno> {
        self.check_thawed()?;
        match &mut self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?.body {
            Body::Dir {
                entries, durable, ..
            } => durable.clone_from(entries),
            _ => return Err(libc::ENOTDIR),
        }
        self.stats.dir_syncs += 1;
        Ok(())
    }
}

impl Node {
    fn new(perm: u16, uid: u32, gid: u32, body: Body) -> Node {
        let now = SystemTime::now();
        Node {
            perm,
            uid,
            gid,
            mtime: now,
            ctime: now,
            body,
        }
    }
}

fn dir_body(parent: u64) -> Body {
    Body::Dir {
        parent,
        entries: BTreeMap::new(),
        durable: BTreeMap::new(),
    }
}

/// Widens the dirty span to cover `start..end`.
fn mark(dirty: &mut Dirty, start: u64, end: u64) {
    *dirty = Some(match *dirty {
        Some((s, e)) => (s.min(start), e.max(end)),
        None => (start, end),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn read_all(m: &Model, ino: u64) -> Vec<u8> {
        m.read(ino, 0, u32::MAX).expect("read").to_vec()
    }

    #[test]
    fn nothing_unsynced_survives_a_cut() {
        let mut m = Model::new();
        let f = m.create(ROOT, name("a"), 0o600, 0, 0).expect("create").ino;
        m.write(f, 0, b"hello").expect("write");
        m.power_cut();
        assert_eq!(m.lookup(ROOT, name("a")), Err(libc::ENOENT));
    }

    #[test]
    fn a_synced_file_without_a_synced_name_is_lost() {
        let mut m = Model::new();
        let f = m.create(ROOT, name("a"), 0o600, 0, 0).expect("create").ino;
        m.write(f, 0, b"hello").expect("write");
        m.sync_file(f).expect("fsync");
        m.power_cut();
        assert_eq!(m.lookup(ROOT, name("a")), Err(libc::ENOENT));
    }

    #[test]
    fn a_synced_name_without_synced_data_is_empty() {
        let mut m = Model::new();
        let f = m.create(ROOT, name("a"), 0o600, 0, 0).expect("create").ino;
        m.write(f, 0, b"hello").expect("write");
        m.sync_dir(ROOT).expect("fsync dir");
        m.power_cut();
        let a = m.lookup(ROOT, name("a")).expect("name survives");
        assert_eq!(a.size, 0);
    }

    #[test]
    fn data_and_name_synced_survive_and_later_writes_do_not() {
        let mut m = Model::new();
        let f = m.create(ROOT, name("a"), 0o600, 0, 0).expect("create").ino;
        m.allocate(f, 0, 16).expect("fallocate");
        m.write(f, 0, b"hello").expect("write");
        m.sync_file(f).expect("fsync");
        m.sync_dir(ROOT).expect("fsync dir");
        m.write(f, 5, b" world").expect("write");
        m.power_cut();
        let mut want = b"hello".to_vec();
        want.resize(16, 0);
        assert_eq!(read_all(&m, f), want);
    }

    #[test]
    fn a_rename_is_durable_per_directory() {
        let mut m = Model::new();
        let tmp = m.mkdir(ROOT, name("tmp"), 0o700, 0, 0).expect("mkdir").ino;
        let new = m.mkdir(ROOT, name("new"), 0o700, 0, 0).expect("mkdir").ino;
        m.sync_dir(ROOT).expect("fsync root");
        let f = m.create(tmp, name("m"), 0o600, 0, 0).expect("create").ino;
        m.write(f, 0, b"mail").expect("write");
        m.sync_file(f).expect("fsync");
        m.rename(tmp, name("m"), new, name("m"), false)
            .expect("rename");
        // Only the source directory synced: the file is in neither place.
        m.sync_dir(tmp).expect("fsync tmp");
        m.power_cut();
        assert_eq!(m.lookup(new, name("m")), Err(libc::ENOENT));
        assert_eq!(m.lookup(tmp, name("m")), Err(libc::ENOENT));
    }

    #[test]
    fn an_unlink_needs_its_directory_synced() {
        let mut m = Model::new();
        let f = m.create(ROOT, name("a"), 0o600, 0, 0).expect("create").ino;
        m.write(f, 0, b"x").expect("write");
        m.sync_file(f).expect("fsync");
        m.sync_dir(ROOT).expect("fsync dir");
        m.remove(ROOT, name("a"), false).expect("unlink");
        m.power_cut();
        assert_eq!(read_all(&m, f), b"x", "the unlink was not durable");
        m.remove(ROOT, name("a"), false).expect("unlink");
        m.sync_dir(ROOT).expect("fsync dir");
        m.power_cut();
        assert_eq!(m.lookup(ROOT, name("a")), Err(libc::ENOENT));
    }

    #[test]
    fn frozen_refuses_changes_until_the_cut() {
        let mut m = Model::new();
        m.freeze();
        assert_eq!(
            m.create(ROOT, name("a"), 0o600, 0, 0).map(|_| ()),
            Err(libc::EIO)
        );
        assert_eq!(m.sync_dir(ROOT), Err(libc::EIO));
        m.power_cut();
        m.create(ROOT, name("a"), 0o600, 0, 0).expect("thawed");
        assert_eq!(m.stats().refused_frozen, 2);
    }
}
