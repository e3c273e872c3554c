//! Identity mapping: SIDs ↔ Unix uids and gids.
//!
//! The NT ↔ NFSv4 mapping ([`super::mapping`]) asks an [`IdMap`] which Unix id a SID stands
//! for and which SID a uid or gid stands for. Implementations here:
//!
//! - [`UnixSids`]: Samba's built-in `S-1-22-1-<uid>` / `S-1-22-2-<gid>` SIDs, total for ids.
//! - [`MappingFile`]: a small text table (see [`MappingFile::parse`]) layered over [`UnixSids`].
//! - [`Chain`]: tries several maps in order.
//!
//! Winbind (for the CLI) and Samba's own idmap (inside the smbd module) are further
//! implementations written elsewhere; the trait is synchronous and fallible so that they fit,
//! and it separates "this map does not know the SID" ([`IdMapError::is_not_found`]) from
//! "the map failed" (a backend error), so that a winbind outage is never mistaken for an
//! unmappable SID.
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::sid::Sid;

/// What a SID maps to, like Samba's `ID_TYPE_UID` / `ID_TYPE_GID` / `ID_TYPE_BOTH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnixId {
    Uid(u32),
    Gid(u32),
    /// The SID is both a user and a group with the same numeric id (idmap_rid, autorid, ...).
    Both(u32),
}

impl UnixId {
    /// The id if the SID can act as a user (file owner).
    pub fn as_uid(self) -> Option<u32> {
        match self {
            UnixId::Uid(id) | UnixId::Both(id) => Some(id),
            UnixId::Gid(_) => None,
        }
    }

    /// The id if the SID can act as a group (owning group).
    pub fn as_gid(self) -> Option<u32> {
        match self {
            UnixId::Gid(id) | UnixId::Both(id) => Some(id),
            UnixId::Uid(_) => None,
        }
    }
}

impl fmt::Display for UnixId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixId::Uid(id) => write!(f, "uid {id}"),
            UnixId::Gid(id) => write!(f, "gid {id}"),
            UnixId::Both(id) => write!(f, "both {id}"),
        }
    }
}

/// Why an identity could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdMapError {
    #[error("SID {0} has no Unix id mapping")]
    SidNotMapped(Sid),
    #[error("uid {0} has no SID mapping")]
    UidNotMapped(u32),
    #[error("gid {0} has no SID mapping")]
    GidNotMapped(u32),
    /// The map itself failed (winbind down, idmap backend error): not an answer about the id.
    #[error("identity mapping of {subject} failed in {backend}: {reason}")]
    Backend { backend: String, subject: String, reason: String },
}

impl IdMapError {
    /// True when the map answered "unknown" (the next map of a [`Chain`] may know it); false
    /// for backend failures, which must never be treated as "unmappable".
    pub fn is_not_found(&self) -> bool {
        !matches!(self, IdMapError::Backend { .. })
    }
}

/// A SID ↔ Unix id mapping. Synchronous and fallible; `&self` so that one map serves a whole
/// ACL (implementations with caches use interior mutability).
pub trait IdMap {
    fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError>;
    fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError>;
    fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError>;
}

impl<T: IdMap + ?Sized> IdMap for &T {
    fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError> {
        (**self).sid_to_unix(sid)
    }
    fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError> {
        (**self).uid_to_sid(uid)
    }
    fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError> {
        (**self).gid_to_sid(gid)
    }
}

impl<T: IdMap + ?Sized> IdMap for Box<T> {
    fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError> {
        (**self).sid_to_unix(sid)
    }
    fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError> {
        (**self).uid_to_sid(uid)
    }
    fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError> {
        (**self).gid_to_sid(gid)
    }
}

/// Samba's Unix SIDs: `S-1-22-1-<uid>` ↔ uid, `S-1-22-2-<gid>` ↔ gid. Every uid and gid has a
/// SID here; only S-1-22 SIDs map back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnixSids;

impl IdMap for UnixSids {
    fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError> {
        if let Some(uid) = sid.as_unix_user() {
            Ok(UnixId::Uid(uid))
        } else if let Some(gid) = sid.as_unix_group() {
            Ok(UnixId::Gid(gid))
        } else {
            Err(IdMapError::SidNotMapped(sid.clone()))
        }
    }
    fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError> {
        Ok(Sid::unix_user(uid))
    }
    fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError> {
        Ok(Sid::unix_group(gid))
    }
}

/// A parse error in a mapping file, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {reason}")]
pub struct MappingFileError {
    /// The file path, or `<text>` for [`MappingFile::parse`].
    pub source_name: String,
    pub line: usize,
    pub reason: String,
}

/// A static SID ↔ id table from a text file, layered over [`UnixSids`] (ids and S-1-22 SIDs
/// the file does not mention map the built-in way).
///
/// Format, one mapping per line, `#` starts a comment, blank lines ignored:
///
/// ```text
/// # SID                                      kind  id
/// S-1-5-21-1004336348-1177238915-682003330-1001  uid   1001
/// S-1-5-21-1004336348-1177238915-682003330-513   gid   100
/// S-1-5-21-1004336348-1177238915-682003330-3000  both  3000
/// ```
///
/// `kind` is `uid`, `gid` or `both` (Samba's ID_TYPE_BOTH: the id is a uid and a gid).
/// Refused, with the line number: a SID listed twice, a uid or gid claimed by two SIDs (the
/// reverse mapping must be unique, or an ACL would not survive a round trip), and S-1-22 SIDs
/// (those are built in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingFile {
    by_sid: HashMap<Sid, UnixId>,
    by_uid: HashMap<u32, Sid>,
    by_gid: HashMap<u32, Sid>,
}

impl MappingFile {
    /// Parses the text format above.
    pub fn parse(text: &str) -> Result<Self, MappingFileError> {
        Self::parse_named(text, "<text>")
    }

    /// Reads and parses a mapping file; errors name the path.
    pub fn load(path: &Path) -> Result<Self, MappingFileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| MappingFileError {
            source_name: name.clone(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse_named(&text, &name)
    }

    fn parse_named(text: &str, source_name: &str) -> Result<Self, MappingFileError> {
        let mut map = MappingFile::default();
        // Line where each SID / uid / gid was defined, to name both lines on a conflict.
        let mut sid_lines: HashMap<Sid, usize> = HashMap::new();
        let mut uid_lines: HashMap<u32, usize> = HashMap::new();
        let mut gid_lines: HashMap<u32, usize> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let fail = |reason: String| MappingFileError { source_name: source_name.to_string(), line, reason };
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [sid_text, kind, id_text] = fields[..] else {
                return Err(fail(format!("expected `<SID> uid|gid|both <id>`, found {content:?}")));
            };
            let sid: Sid = sid_text.parse().map_err(|e| fail(format!("{e}")))?;
            if sid.authority() == 22 {
                return Err(fail(format!(
                    "{sid} is a built-in Unix SID (S-1-22-1-uid / S-1-22-2-gid); do not list it"
                )));
            }
            let id: u32 =
                id_text.parse().map_err(|_| fail(format!("id {id_text:?} is not a number from 0 to 4294967295")))?;
            let unix_id = match kind {
                "uid" => UnixId::Uid(id),
                "gid" => UnixId::Gid(id),
                "both" => UnixId::Both(id),
                other => return Err(fail(format!("kind {other:?} is not uid, gid or both"))),
            };
            if let Some(first) = sid_lines.get(&sid) {
                return Err(fail(format!("{sid} is already mapped on line {first}")));
            }
            if let Some(uid) = unix_id.as_uid() {
                if let Some(first) = uid_lines.get(&uid) {
                    return Err(fail(format!("uid {uid} is already mapped to {} on line {first}", map.by_uid[&uid])));
                }
            }
            if let Some(gid) = unix_id.as_gid() {
                if let Some(first) = gid_lines.get(&gid) {
                    return Err(fail(format!("gid {gid} is already mapped to {} on line {first}", map.by_gid[&gid])));
                }
            }
            if let Some(uid) = unix_id.as_uid() {
                uid_lines.insert(uid, line);
                map.by_uid.insert(uid, sid.clone());
            }
            if let Some(gid) = unix_id.as_gid() {
                gid_lines.insert(gid, line);
                map.by_gid.insert(gid, sid.clone());
            }
            sid_lines.insert(sid.clone(), line);
            map.by_sid.insert(sid, unix_id);
        }
        Ok(map)
    }

    /// Number of SIDs listed in the file.
    pub fn len(&self) -> usize {
        self.by_sid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sid.is_empty()
    }
}

impl IdMap for MappingFile {
    fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError> {
        match self.by_sid.get(sid) {
            Some(id) => Ok(*id),
            None => UnixSids.sid_to_unix(sid),
        }
    }
    fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError> {
        match self.by_uid.get(&uid) {
            Some(sid) => Ok(sid.clone()),
            None => UnixSids.uid_to_sid(uid),
        }
    }
    fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError> {
        match self.by_gid.get(&gid) {
            Some(sid) => Ok(sid.clone()),
            None => UnixSids.gid_to_sid(gid),
        }
    }
}

/// Tries each map in order: the first answer wins, "not found" moves on to the next map, and
/// a backend failure stops the chain (it is not an answer).
#[derive(Default)]
pub struct Chain {
    maps: Vec<Box<dyn IdMap>>,
}

impl Chain {
    pub fn new(maps: Vec<Box<dyn IdMap>>) -> Self {
        Chain { maps }
    }

    /// Appends a map, tried after the ones already in the chain.
    pub fn then(mut self, map: impl IdMap + 'static) -> Self {
        self.maps.push(Box::new(map));
        self
    }

    fn first<T>(
        &self,
        not_found: IdMapError,
        lookup: impl Fn(&dyn IdMap) -> Result<T, IdMapError>,
    ) -> Result<T, IdMapError> {
        for map in &self.maps {
            match lookup(map.as_ref()) {
                Err(e) if e.is_not_found() => continue,
                answer => return answer,
            }
        }
        Err(not_found)
    }
}

impl IdMap for Chain {
    fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError> {
        self.first(IdMapError::SidNotMapped(sid.clone()), |m| m.sid_to_unix(sid))
    }
    fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError> {
        self.first(IdMapError::UidNotMapped(uid), |m| m.uid_to_sid(uid))
    }
    fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError> {
        self.first(IdMapError::GidNotMapped(gid), |m| m.gid_to_sid(gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(text: &str) -> Sid {
        text.parse().unwrap()
    }

    #[test]
    fn unix_sids_both_ways() {
        assert_eq!(UnixSids.sid_to_unix(&sid("S-1-22-1-1000")), Ok(UnixId::Uid(1000)));
        assert_eq!(UnixSids.sid_to_unix(&sid("S-1-22-2-100")), Ok(UnixId::Gid(100)));
        assert_eq!(UnixSids.uid_to_sid(0), Ok(sid("S-1-22-1-0")));
        assert_eq!(UnixSids.gid_to_sid(4294967295), Ok(sid("S-1-22-2-4294967295")));
        let err = UnixSids.sid_to_unix(&Sid::world()).unwrap_err();
        assert!(err.is_not_found());
        assert!(err.to_string().contains("S-1-1-0"), "{err}");
    }

    const EXAMPLE: &str = "\
# domain users
S-1-5-21-1-2-3-1001 uid 1001   # alice
S-1-5-21-1-2-3-513  gid 100

S-1-5-21-1-2-3-3000 both 3000
";

    #[test]
    fn mapping_file_layers_over_unix_sids() {
        let map = MappingFile::parse(EXAMPLE).unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(map.sid_to_unix(&sid("S-1-5-21-1-2-3-1001")), Ok(UnixId::Uid(1001)));
        assert_eq!(map.sid_to_unix(&sid("S-1-5-21-1-2-3-513")), Ok(UnixId::Gid(100)));
        assert_eq!(map.sid_to_unix(&sid("S-1-5-21-1-2-3-3000")), Ok(UnixId::Both(3000)));
        assert_eq!(map.uid_to_sid(1001), Ok(sid("S-1-5-21-1-2-3-1001")));
        assert_eq!(map.gid_to_sid(100), Ok(sid("S-1-5-21-1-2-3-513")));
        assert_eq!(map.uid_to_sid(3000), Ok(sid("S-1-5-21-1-2-3-3000")));
        assert_eq!(map.gid_to_sid(3000), Ok(sid("S-1-5-21-1-2-3-3000")));
        // Not in the file: the built-in Unix SIDs.
        assert_eq!(map.uid_to_sid(1002), Ok(Sid::unix_user(1002)));
        assert_eq!(map.sid_to_unix(&Sid::unix_group(7)), Ok(UnixId::Gid(7)));
        assert_eq!(map.sid_to_unix(&sid("S-1-5-21-1-2-3-9")), Err(IdMapError::SidNotMapped(sid("S-1-5-21-1-2-3-9"))));
    }

    #[test]
    fn mapping_file_errors_name_the_line() {
        let cases = [
            ("S-1-5-21-1-2-3-1 uid", 1, "expected"),
            ("\n\nS-1-5-21-1-2-3-1 user 5", 3, "kind \"user\""),
            ("S-1-5-x uid 5", 1, "invalid SID"),
            ("S-1-5-21-1 uid -1", 1, "not a number"),
            ("S-1-5-21-1 uid 5\nS-1-5-21-1 gid 6", 2, "already mapped on line 1"),
            ("S-1-5-21-1 uid 5\nS-1-5-21-2 both 5", 2, "uid 5 is already mapped to S-1-5-21-1 on line 1"),
            ("S-1-5-21-1 both 5\nS-1-5-21-2 gid 5", 2, "gid 5 is already mapped to S-1-5-21-1 on line 1"),
            ("S-1-22-1-5 uid 5", 1, "built-in"),
        ];
        for (text, line, reason) in cases {
            let err = MappingFile::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(reason), "{text:?}: {err}");
            assert!(err.to_string().starts_with(&format!("<text>:{line}:")), "{err}");
        }
        // A uid and a gid with the same number are different ids.
        assert!(MappingFile::parse("S-1-5-21-1 uid 5\nS-1-5-21-2 gid 5").is_ok());
    }

    #[test]
    fn mapping_file_load_names_the_path() {
        let dir = std::env::temp_dir().join(format!("nfsbridge-idmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("idmap.txt");
        std::fs::write(&path, "S-1-5-21-1 uid 5\nbogus\n").unwrap();
        let err = MappingFile::load(&path).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with(&format!("{}:2:", path.display())), "{err}");
        std::fs::write(&path, EXAMPLE).unwrap();
        assert_eq!(MappingFile::load(&path).unwrap().len(), 3);
        let missing = MappingFile::load(&dir.join("missing")).unwrap_err();
        assert!(missing.reason.contains("cannot read"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A backend that knows nothing or always fails, to test the chain's rules.
    struct Failing;
    impl IdMap for Failing {
        fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError> {
            Err(IdMapError::Backend { backend: "test".into(), subject: sid.to_string(), reason: "offline".into() })
        }
        fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError> {
            Err(IdMapError::UidNotMapped(uid))
        }
        fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError> {
            Err(IdMapError::GidNotMapped(gid))
        }
    }

    #[test]
    fn chain_moves_on_when_not_found_and_stops_on_failure() {
        let file = MappingFile::parse("S-1-5-21-1-2-3-1001 uid 1001").unwrap();
        let chain = Chain::default().then(file.clone()).then(Failing);
        assert_eq!(chain.sid_to_unix(&sid("S-1-5-21-1-2-3-1001")), Ok(UnixId::Uid(1001)));
        // Unknown to the file: the failing backend answers, and its failure is not "not found".
        let err = chain.sid_to_unix(&sid("S-1-5-21-9")).unwrap_err();
        assert!(!err.is_not_found());
        assert!(err.to_string().contains("S-1-5-21-9") && err.to_string().contains("offline"), "{err}");

        let chain = Chain::default().then(Failing).then(UnixSids);
        assert_eq!(chain.uid_to_sid(5), Ok(Sid::unix_user(5)));
        assert_eq!(chain.gid_to_sid(6), Ok(Sid::unix_group(6)));

        let empty = Chain::default();
        assert_eq!(empty.uid_to_sid(5), Err(IdMapError::UidNotMapped(5)));
        assert_eq!(empty.sid_to_unix(&Sid::world()), Err(IdMapError::SidNotMapped(Sid::world())));
    }
}
