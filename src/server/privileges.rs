//! Privilege separation: a server started as root binds its ports, then becomes an unprivileged
//! user (`server.user`, default `ringmail`; `server.group`, default that user's primary group)
//! before it starts a single thread or reads a byte from the network.
//!
//! The order, in `server::run`:
//!
//! 1. [`Identity::for_config`]: who to become, looked up while we may still read everything.
//! 2. [`make_data_dir`]: root creates the data directory itself, owned by that user, and opens
//!    nothing inside it. A file in a directory the unprivileged user controls, opened by root,
//!    is the classic way to make a daemon write where it should not (`lock` as a symlink to
//!    /etc/shadow), so the lock, the queue and everything else are opened after the drop.
//! 3. `listeners::bind_all`: every shard's listening sockets (ports below 1024 need root).
//! 4. [`Identity::drop_privileges`]: no supplementary groups, then the gid, then the uid, each as
//!    real, effective and saved id, so nothing is left to switch back to. Then it is verified:
//!    `setuid(0)` and `setgid(0)` must fail, and every thread of the process must show the new
//!    ids and no capability at all. No thread exists yet (glibc would carry the change to all
//!    threads anyway; the check covers it).
//! 5. [`check_data_dir`]: the data directory must be writable by what we are now; only then is
//!    its lock taken, the queue opened, and the sidecar, blocking pool and shards started, so
//!    every thread the server ever runs inherits the unprivileged ids.
//!
//! Started as anyone else, nothing is dropped and `server.user` is ignored: the server runs as
//! it was started (a port below 1024 then needs `CAP_NET_BIND_SERVICE`).
//!
//! # What stays privileged
//!
//! Only the local-delivery helper, and only when system users or `users/assign` accounts
//! receive mail (`[local] system_users`, `[local] assign`): `server::run` starts it as a
//! separate process (`ringmail local-helper`) just before the drop. It takes one narrow kind of
//! request over a socket pair (do this read, write or program as uid U, gid G), refuses root and
//! any uid below `[local] min_uid`, and runs each request in a fresh process that has become
//! that user, as qmail-lspawn and qmail-local split the work (see `local::helper`). The
//! network-facing server never regains root. Checkpassword programs run as `server.user`: one
//! that must read /etc/shadow needs its own setuid wrapper.
//!
//! Every system call here goes through `nix`'s safe wrappers: this file has no `unsafe`.

use super::ServerError;
use crate::config::ServerSection;
use log::{info, warn};
use nix::unistd::{AccessFlags, Gid, Group, Uid, User};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a data directory ringmail creates: the server's alone, readable by its group (for
/// an operator's tools in that group), closed to everyone else (it holds the passwd database).
const DATA_DIR_MODE: u32 = 0o750;

/// The account a root-started server becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub uid: Uid,
    pub group: String,
    pub gid: Gid,
}

/// Who the server runs as once its ports are bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Not started as root: run as started, drop nothing.
    AsStarted { uid: Uid, gid: Gid },
    /// Started as root: become this account.
    Drop(Account),
}

impl Identity {
    /// Decides from the process's ids and `[server]`: any root id (real, effective or saved)
    /// means the process must drop to `server.user`, which must exist and not be root.
    /// Errors are `ServerError::Config` naming the key to fix.
    pub fn for_config(server: &ServerSection) -> Result<Identity, ServerError> {
        let uids = nix::unistd::getresuid()
            .map_err(|e| ServerError::Privileges(format!("cannot read our user ids: {e}")))?;
        let root = Uid::from_raw(0);
        if uids.real != root && uids.effective != root && uids.saved != root {
            return Ok(Identity::AsStarted {
                uid: uids.effective,
                gid: nix::unistd::getegid(),
            });
        }
        let user = match User::from_name(&server.user) {
            Ok(Some(user)) => user,
            Ok(None) => {
                return Err(ServerError::Config {
                    key: "server.user",
                    message: format!(
                        "user {} does not exist: create it (the install script does) or set \
                         server.user",
                        server.user
                    ),
                });
            }
            Err(e) => {
                return Err(ServerError::Privileges(format!(
                    "cannot look up user {}: {e}",
                    server.user
                )));
            }
        };
        if user.uid.is_root() {
            return Err(ServerError::Config {
                key: "server.user",
                message: format!(
                    "user {} has uid 0: set server.user to an unprivileged user",
                    server.user
                ),
            });
        }
        let (group, gid) = if server.group.is_empty() {
            let name = Group::from_gid(user.gid)
                .ok()
                .flatten()
                .map(|g| g.name)
                .unwrap_or_else(|| user.gid.to_string());
            (name, user.gid)
        } else {
            match Group::from_name(&server.group) {
                Ok(Some(group)) => (group.name, group.gid),
                Ok(None) => {
                    return Err(ServerError::Config {
                        key: "server.group",
                        message: format!(
                            "group {} does not exist: create it, or leave server.group out to \
                             use user {}'s primary group",
                            server.group, server.user
                        ),
                    });
                }
                Err(e) => {
                    return Err(ServerError::Privileges(format!(
                        "cannot look up group {}: {e}",
                        server.group
                    )));
                }
            }
        };
        if gid.as_raw() == 0 {
            return Err(ServerError::Config {
                key: if server.group.is_empty() {
                    "server.user"
                } else {
                    "server.group"
                },
                message: format!("group {group} has gid 0: the server must not run in group root"),
            });
        }
        Ok(Identity::Drop(Account {
            user: user.name,
            uid: user.uid,
            group,
            gid,
        }))
    }

    /// The uid the server runs as after [`Identity::drop_privileges`].
    fn uid(&self) -> Uid {
        match self {
            Identity::AsStarted { uid, .. } => *uid,
            Identity::Drop(account) => account.uid,
        }
    }

    /// The user name the server runs as, for messages.
    fn user_name(&self) -> String {
        match self {
            Identity::Drop(account) => account.user.clone(),
            Identity::AsStarted { uid, .. } => user_name(*uid),
        }
    }

    /// Becomes the unprivileged account for good (or, not started as root, only says who we
    /// are). Call before any thread is started and before any listener accepts.
    pub fn drop_privileges(&self) -> Result<(), ServerError> {
        let account = match self {
            Identity::AsStarted { uid, gid } => {
                info!(
                    "running as uid {uid} ({}), gid {gid}: not started as root, so there is \
                     nothing to drop",
                    user_name(*uid)
                );
                return Ok(());
            }
            Identity::Drop(account) => account,
        };
        let failed = |what: &str, e: nix::Error| {
            ServerError::Privileges(format!(
                "cannot {what} while dropping root for user {}: {e}",
                account.user
            ))
        };
        raise_memlock_limit();
        // Groups first: once the uid is not 0, we could no longer change them.
        nix::unistd::setgroups(&[]).map_err(|e| failed("clear the supplementary groups", e))?;
        let gid = account.gid;
        nix::unistd::setresgid(gid, gid, gid).map_err(|e| failed("set the group id", e))?;
        let uid = account.uid;
        nix::unistd::setresuid(uid, uid, uid).map_err(|e| failed("set the user id", e))?;
        verify_dropped(account)?;
        info!(
            "dropped root: running as user {} (uid {uid}), group {} (gid {gid}), no \
             supplementary groups, no capabilities",
            account.user, account.group
        );
        Ok(())
    }
}

/// Lifts the locked-memory limit while we still may. As root, glommio's io_uring buffer
/// registration ignores the limit (CAP_IPC_LOCK); after the drop it counts against it, and the
/// usual 8 MiB is less than a few shards register, so every shard would fall back to
/// unregistered buffers. The systemd unit sets `LimitMEMLOCK=infinity` for the same reason;
/// this covers a root start from a shell. A failure only costs that fallback: it is logged.
fn raise_memlock_limit() {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK) else {
        return;
    };
    if soft == RLIM_INFINITY {
        return;
    }
    // Raising the hard limit needs CAP_SYS_RESOURCE, which a container's root may lack; the
    // soft limit can always go up to the hard one.
    if let Err(e) = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY) {
        let _ = setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard);
        warn!(
            "locked-memory limit (RLIMIT_MEMLOCK) stays at {hard} bytes after dropping root \
             (cannot lift it: {e}); io_uring buffers may not register (systemd: \
             LimitMEMLOCK=infinity)"
        );
    }
}

/// Checks that the drop took, on every thread, and cannot be undone.
fn verify_dropped(account: &Account) -> Result<(), ServerError> {
    let broken = |what: String| {
        ServerError::Privileges(format!(
            "privilege drop to {} did not hold: {what}",
            account.user
        ))
    };
    let (uid, gid) = (account.uid, account.gid);
    let uids = nix::unistd::getresuid().map_err(|e| broken(e.to_string()))?;
    let gids = nix::unistd::getresgid().map_err(|e| broken(e.to_string()))?;
    if [uids.real, uids.effective, uids.saved] != [uid; 3]
        || [gids.real, gids.effective, gids.saved] != [gid; 3]
    {
        return Err(broken(format!("ids are {uids:?} {gids:?}")));
    }
    let groups = nix::unistd::getgroups().map_err(|e| broken(e.to_string()))?;
    if !groups.is_empty() {
        return Err(broken(format!("supplementary groups {groups:?} remain")));
    }
    // Both must fail now; had one succeeded we would be root again, and refuse to run.
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(broken("setuid(0) succeeded".into()));
    }
    if nix::unistd::setgid(Gid::from_raw(0)).is_ok() {
        return Err(broken("setgid(0) succeeded".into()));
    }
    let tasks = std::fs::read_dir("/proc/self/task")
        .map_err(|e| broken(format!("cannot list /proc/self/task: {e}")))?;
    for task in tasks {
        let path = task
            .map_err(|e| broken(e.to_string()))?
            .path()
            .join("status");
        let status = std::fs::read_to_string(&path)
            .map_err(|e| broken(format!("cannot read {}: {e}", path.display())))?;
        let creds = ThreadCredentials::parse(&status)
            .ok_or_else(|| broken(format!("cannot parse {}", path.display())))?;
        if !creds.is_exactly(uid.as_raw(), gid.as_raw()) {
            return Err(broken(format!("{}: {creds:?}", path.display())));
        }
    }
    Ok(())
}

/// One thread's ids and capability sets, from `/proc/<pid>/task/<tid>/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadCredentials {
    /// Real, effective, saved and filesystem uid.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gids: [u32; 4],
    /// Permitted, effective and ambient capability sets (bit masks).
    pub caps: [u64; 3],
}

impl ThreadCredentials {
    /// Parses the `Uid:`, `Gid:`, `CapPrm:`, `CapEff:` and `CapAmb:` lines of a status file.
    pub fn parse(status: &str) -> Option<ThreadCredentials> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        };
        let ids = |name: &str| -> Option<[u32; 4]> {
            let values: Vec<u32> = field(name)?
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            values.try_into().ok()
        };
        let cap = |name: &str| u64::from_str_radix(field(name)?.trim(), 16).ok();
        Some(ThreadCredentials {
            uids: ids("Uid")?,
            gids: ids("Gid")?,
            caps: [cap("CapPrm")?, cap("CapEff")?, cap("CapAmb")?],
        })
    }

    /// Every uid is `uid`, every gid is `gid`, and no capability is held.
    pub fn is_exactly(&self, uid: u32, gid: u32) -> bool {
        self.uids == [uid; 4] && self.gids == [gid; 4] && self.caps == [0; 3]
    }
}

/// Creates the data directory if it is missing; started as root, it is made owned by the
/// account the server becomes (mode 0750). An existing directory is left alone: whether we may
/// use it is decided after the drop, by [`check_data_dir`].
pub fn make_data_dir(path: &Path, identity: &Identity) -> Result<(), ServerError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ServerError::DataDir(format!(
                "cannot examine {}: {e}",
                path.display()
            )));
        }
    }
    let failed = |what: &str, e: std::io::Error| {
        ServerError::DataDir(format!("cannot {what} {}: {e}", path.display()))
    };
    // Synced into its parent, level by level: a power cut must not take the directory (and
    // with it every message acknowledged since) away.
    crate::durable_dir::create_dir_all(path).map_err(|e| failed("create", e))?;
    if let Identity::Drop(account) = identity {
        // Through a descriptor opened without following symlinks, so a path swapped after the
        // mkdir cannot make us chown something else.
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| failed("open", e))?;
        std::os::unix::fs::fchown(&dir, Some(account.uid.as_raw()), Some(account.gid.as_raw()))
            .map_err(|e| failed(&format!("give to user {}", account.user), e))?;
        dir.set_permissions(std::fs::Permissions::from_mode(DATA_DIR_MODE))
            .map_err(|e| failed("set the mode of", e))?;
        info!(
            "created data directory {} owned by {}:{}",
            path.display(),
            account.user,
            account.group
        );
    }
    Ok(())
}

/// After the drop: refuses to start, naming the path and its owner, if the data directory (or
/// what ringmail keeps in it) is not usable by the user we now are.
pub fn check_data_dir(
    data_dir: &Path,
    queue_dir: &Path,
    mail_root: &Path,
    identity: &Identity,
) -> Result<(), ServerError> {
    let dirs = AccessFlags::W_OK | AccessFlags::X_OK;
    let mut wanted: Vec<(PathBuf, AccessFlags)> = vec![(data_dir.to_path_buf(), dirs)];
    // The rest only if present: the server creates them itself otherwise.
    for (path, access) in [
        (queue_dir.to_path_buf(), dirs),
        (mail_root.to_path_buf(), dirs),
        (data_dir.join(shards::LOCK_FILE), AccessFlags::W_OK),
        (data_dir.join("passwd"), AccessFlags::R_OK),
    ] {
        if path.exists() {
            wanted.push((path, access));
        }
    }
    let me = identity.user_name();
    let uid = identity.uid();
    for (path, access) in wanted {
        if nix::unistd::access(&path, access).is_ok() {
            continue;
        }
        let owner = match std::fs::metadata(&path) {
            Ok(meta) => format!(
                "belongs to {} (uid {}, mode {:04o})",
                user_name(Uid::from_raw(meta.uid())),
                meta.uid(),
                meta.mode() & 0o7777
            ),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                // A directory above it is closed to us (root's home is 0700): no chown of the
                // data directory itself can help.
                let closed = path
                    .ancestors()
                    .skip(1)
                    .filter(|dir| nix::unistd::access(*dir, AccessFlags::X_OK).is_err())
                    .last()
                    .map(|dir| format!(", because {} is closed to {me}", dir.display()))
                    .unwrap_or_default();
                return Err(ServerError::DataDir(format!(
                    "{} cannot be reached by {me} (uid {uid}), the user ringmail runs as{closed}: \
                     put the data directory where that user can reach it (e.g. run from /tmp, \
                     or set server.data_dir)",
                    path.display()
                )));
            }
            Err(e) => format!("cannot be examined ({e})"),
        };
        let need = if access.contains(AccessFlags::W_OK) {
            "writable"
        } else {
            "readable"
        };
        return Err(ServerError::DataDir(format!(
            "{} {owner} and is not {need} by {me} (uid {uid}), the user ringmail runs as: \
             give the data directory to that user (chown -R {me}: {}) or set server.data_dir",
            path.display(),
            data_dir.display()
        )));
    }
    if let Ok(meta) = std::fs::metadata(data_dir)
        && meta.uid() != uid.as_raw()
    {
        warn!(
            "data directory {} belongs to {} (uid {}), not to {me}; it is writable, so ringmail \
             uses it",
            data_dir.display(),
            user_name(Uid::from_raw(meta.uid())),
            meta.uid()
        );
    }
    Ok(())
}

/// `uid`'s user name, or the number when it has none.
fn user_name(uid: Uid) -> String {
    match User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tringmail-shard-0\nUmask:\t0022\nState:\tS (sleeping)\n\
        Uid:\t998\t998\t998\t998\nGid:\t997\t997\t997\t997\nGroups:\t\n\
        CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
        CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";

    #[test]
    fn parses_thread_credentials() {
        let creds = ThreadCredentials::parse(STATUS).unwrap();
        assert_eq!(creds.uids, [998; 4]);
        assert_eq!(creds.gids, [997; 4]);
        assert!(creds.is_exactly(998, 997));
        assert!(!creds.is_exactly(0, 997));
    }

    #[test]
    fn any_root_id_or_capability_is_not_dropped() {
        let cases = [
            STATUS.replace("Uid:\t998\t998\t998\t998", "Uid:\t998\t998\t0\t998"),
            STATUS.replace("Gid:\t997\t997\t997\t997", "Gid:\t997\t0\t997\t997"),
            STATUS.replace("CapEff:\t0000000000000000", "CapEff:\t0000000000000400"),
            STATUS.replace("CapAmb:\t0000000000000000", "CapAmb:\t0000000000000400"),
        ];
        for status in cases {
            let creds = ThreadCredentials::parse(&status).unwrap();
            assert!(!creds.is_exactly(998, 997), "{status}");
        }
        assert_eq!(ThreadCredentials::parse("Uid:\t1\t2\n"), None);
    }

    #[test]
    fn this_process_is_reported_as_it_runs() {
        let me = std::fs::read_to_string("/proc/self/status").unwrap();
        let creds = ThreadCredentials::parse(&me).unwrap();
        assert_eq!(creds.uids[1], nix::unistd::geteuid().as_raw());
    }
}
