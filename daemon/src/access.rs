//! Who may talk to the daemon. The socket is made 0600, and on top of that every accepted
//! connection's peer is identified by the kernel (`SO_PEERCRED`) and let in only if it is the
//! universe's owner (the daemon's effective uid), root, or a member of a group the owner named
//! (`jit up --allow-group`). A refused peer gets `permission_denied` and is logged.

use nix::unistd::{Gid, Group, Uid, User};

use jit_kernel::{Error, Result};

/// The peers a daemon lets in.
#[derive(Debug, Clone)]
pub struct Access {
    owner: u32,
    group: Option<u32>,
}

impl Access {
    /// The daemon's owner and root only.
    pub fn owner_only() -> Access {
        Access {
            owner: Uid::effective().as_raw(),
            group: None,
        }
    }

    /// Also the members of `group` (a name or a numeric gid).
    pub fn with_group(group: &str) -> Result<Access> {
        let gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => Group::from_name(group)
                .map_err(|e| Error::InvalidInput(format!("cannot look up group {group:?}: {e}")))?
                .ok_or_else(|| Error::InvalidInput(format!("no such group: {group:?}")))?
                .gid
                .as_raw(),
        };
        Ok(Access {
            group: Some(gid),
            ..Access::owner_only()
        })
    }

    /// The allowed group's gid, if any.
    pub fn group(&self) -> Option<u32> {
        self.group
    }

    /// Whether a peer with this uid and primary gid may connect.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        if uid == self.owner || uid == 0 {
            return true;
        }
        let Some(group) = self.group else {
            return false;
        };
        if gid == group {
            return true;
        }
        // Supplementary membership: the group's member list names the peer's user.
        let name = match User::from_uid(Uid::from_raw(uid)) {
            Ok(Some(user)) => user.name,
            _ => return false,
        };
        matches!(Group::from_gid(Gid::from_raw(group)),
            Ok(Some(g)) if g.mem.contains(&name))
    }
}
