//! Identity mapping through winbind, by running `wbinfo`, and the chain the CLI uses.
//!
//! Only used when `wbinfo -p` succeeds (winbindd answers); otherwise the CLI maps with the
//! mapping file and the Unix SIDs alone. `NFSBRIDGE_WBINFO` names another `wbinfo` binary.
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use nfsbridge::acl::idmap::{Chain, IdMap, IdMapError, MappingFile, UnixId, UnixSids};
use nfsbridge::acl::sid::Sid;

/// `wbinfo` answers, cached for the run (a tree of 100k files names few principals).
pub struct Winbind {
    program: OsString,
    sids: RefCell<HashMap<Sid, Result<UnixId, IdMapError>>>,
    uids: RefCell<HashMap<u32, Result<Sid, IdMapError>>>,
    gids: RefCell<HashMap<u32, Result<Sid, IdMapError>>>,
}

/// What one `wbinfo` call gave.
enum Answer {
    Value(String),
    /// wbinfo ran and winbind said it does not know the id.
    Unknown,
}

impl Winbind {
    /// The winbind map, if `wbinfo -p` reaches winbindd.
    pub fn detect() -> Option<Winbind> {
        let program = std::env::var_os("NFSBRIDGE_WBINFO").unwrap_or_else(|| "wbinfo".into());
        let reachable = Command::new(&program)
            .arg("-p")
            .output()
            .is_ok_and(|out| out.status.success());
        reachable.then(|| Winbind {
            program,
            sids: RefCell::default(),
            uids: RefCell::default(),
            gids: RefCell::default(),
        })
    }

    fn run(&self, flag: &str, subject: &str) -> Result<Answer, IdMapError> {
        let backend_error = |reason: String| IdMapError::Backend {
            backend: "winbind (wbinfo)".into(),
            subject: subject.to_string(),
            reason,
        };
        let output = Command::new(&self.program)
            .args([flag, subject])
            .output()
            .map_err(|e| backend_error(format!("cannot run {}: {e}", Path::new(&self.program).display())))?;
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if output.status.success() && !stdout.is_empty() {
            return Ok(Answer::Value(stdout));
        }
        // winbindd gone or failing is not "unknown": the caller must not drop an ACE for it.
        let failure_markers = [
            "WBC_ERR_WINBIND_NOT_AVAILABLE",
            "WBC_ERR_NO_MEMORY",
            "WBC_ERR_AUTH_ERROR",
            "could not ping",
        ];
        if failure_markers.iter().any(|m| stderr.contains(m) || stdout.contains(m)) || output.status.code().is_none() {
            return Err(backend_error(if stderr.is_empty() { stdout } else { stderr }));
        }
        Ok(Answer::Unknown)
    }

    fn lookup_id(&self, flag: &str, sid: &Sid) -> Result<Option<u32>, IdMapError> {
        match self.run(flag, &sid.to_string())? {
            Answer::Unknown => Ok(None),
            Answer::Value(text) => text.parse().map(Some).map_err(|_| IdMapError::Backend {
                backend: "winbind (wbinfo)".into(),
                subject: sid.to_string(),
                reason: format!("wbinfo {flag} printed {text:?}, not an id"),
            }),
        }
    }

    fn lookup_sid(&self, flag: &str, id: u32, not_found: IdMapError) -> Result<Sid, IdMapError> {
        match self.run(flag, &id.to_string())? {
            Answer::Unknown => Err(not_found),
            Answer::Value(text) => text.parse().map_err(|_| IdMapError::Backend {
                backend: "winbind (wbinfo)".into(),
                subject: id.to_string(),
                reason: format!("wbinfo {flag} printed {text:?}, not a SID"),
            }),
        }
    }
}

impl IdMap for Winbind {
    fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError> {
        if let Some(answer) = self.sids.borrow().get(sid) {
            return answer.clone();
        }
        let answer = (|| {
            let uid = self.lookup_id("--sid-to-uid", sid)?;
            let gid = self.lookup_id("--sid-to-gid", sid)?;
            match (uid, gid) {
                (Some(uid), Some(gid)) if uid == gid => Ok(UnixId::Both(uid)),
                (Some(uid), Some(gid)) => Err(IdMapError::Backend {
                    backend: "winbind (wbinfo)".into(),
                    subject: sid.to_string(),
                    reason: format!("maps to uid {uid} and to gid {gid}; a SID that is both must have one id"),
                }),
                (Some(uid), None) => Ok(UnixId::Uid(uid)),
                (None, Some(gid)) => Ok(UnixId::Gid(gid)),
                (None, None) => Err(IdMapError::SidNotMapped(sid.clone())),
            }
        })();
        self.sids.borrow_mut().insert(sid.clone(), answer.clone());
        answer
    }

    fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError> {
        if let Some(answer) = self.uids.borrow().get(&uid) {
            return answer.clone();
        }
        let answer = self.lookup_sid("--uid-to-sid", uid, IdMapError::UidNotMapped(uid));
        self.uids.borrow_mut().insert(uid, answer.clone());
        answer
    }

    fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError> {
        if let Some(answer) = self.gids.borrow().get(&gid) {
            return answer.clone();
        }
        let answer = self.lookup_sid("--gid-to-sid", gid, IdMapError::GidNotMapped(gid));
        self.gids.borrow_mut().insert(gid, answer.clone());
        answer
    }
}

/// A [`MappingFile`] that answers only for what the file lists. `MappingFile` itself falls
/// back to the Unix SIDs, which would answer every uid before winbind is asked; the file
/// cannot list S-1-22 SIDs, so an S-1-22 answer or question is the fallback's.
struct ListedOnly(MappingFile);

impl IdMap for ListedOnly {
    fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError> {
        if sid.authority() == 22 {
            return Err(IdMapError::SidNotMapped(sid.clone()));
        }
        self.0.sid_to_unix(sid)
    }
    fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError> {
        self.0.uid_to_sid(uid).and_then(|sid| {
            if sid.authority() == 22 {
                Err(IdMapError::UidNotMapped(uid))
            } else {
                Ok(sid)
            }
        })
    }
    fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError> {
        self.0.gid_to_sid(gid).and_then(|sid| {
            if sid.authority() == 22 {
                Err(IdMapError::GidNotMapped(gid))
            } else {
                Ok(sid)
            }
        })
    }
}

/// The CLI's identity mapping: the mapping file (if any), then winbind (if it answers and
/// is not disabled), then the Unix SIDs S-1-22-1-uid / S-1-22-2-gid.
pub fn identity_map(mapping_file: Option<&Path>, use_winbind: bool) -> Result<(Chain, bool), String> {
    let mut chain = Chain::default();
    if let Some(path) = mapping_file {
        chain = chain.then(ListedOnly(MappingFile::load(path).map_err(|e| e.to_string())?));
    }
    let winbind = if use_winbind { Winbind::detect() } else { None };
    let with_winbind = winbind.is_some();
    if let Some(winbind) = winbind {
        chain = chain.then(winbind);
    }
    Ok((chain.then(UnixSids), with_winbind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_only_leaves_unlisted_ids_to_the_next_map() {
        let file = MappingFile::parse("S-1-5-21-1-2-3-1001 uid 1001\nS-1-5-21-1-2-3-513 gid 100").unwrap();
        let listed = ListedOnly(file);
        assert_eq!(listed.uid_to_sid(1001).unwrap().to_string(), "S-1-5-21-1-2-3-1001");
        assert_eq!(listed.uid_to_sid(1002), Err(IdMapError::UidNotMapped(1002)));
        assert_eq!(listed.gid_to_sid(7), Err(IdMapError::GidNotMapped(7)));
        assert!(listed.sid_to_unix(&Sid::unix_user(5)).unwrap_err().is_not_found());
    }

    #[test]
    fn without_winbindd_the_chain_is_the_file_then_unix_sids() {
        // No winbindd runs on a build machine; with one, this only checks the fallback order.
        std::env::set_var("NFSBRIDGE_WBINFO", "/nonexistent/wbinfo");
        let (chain, with_winbind) = identity_map(None, true).unwrap();
        assert!(!with_winbind);
        assert_eq!(chain.uid_to_sid(1000).unwrap(), Sid::unix_user(1000));
        std::env::remove_var("NFSBRIDGE_WBINFO");
    }
}
