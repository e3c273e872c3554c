//! Security identifiers (MS-DTYP 2.4.2).
use std::fmt;
use std::str::FromStr;

/// A SID: revision 1, a 48-bit identifier authority and up to 15 sub-authorities.
///
/// The derived `Ord` (authority, then sub-authorities) is only a stable order for sorting
/// and maps; it is not an ACL order.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    authority: u64,
    sub_authorities: Vec<u32>,
}

/// Why a SID could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidError {
    #[error("invalid SID {0:?}: expected S-1-<authority>-<sub>... with at most 15 sub-authorities")]
    Syntax(String),
    #[error("SID identifier authority {0} does not fit in 48 bits")]
    AuthorityTooLarge(u64),
    #[error("SID has {0} sub-authorities; at most 15 are allowed")]
    TooManySubAuthorities(usize),
}

impl Sid {
    pub const MAX_SUB_AUTHORITIES: usize = 15;
    const MAX_AUTHORITY: u64 = (1 << 48) - 1;

    pub fn new(authority: u64, sub_authorities: &[u32]) -> Result<Self, SidError> {
        if authority > Self::MAX_AUTHORITY {
            return Err(SidError::AuthorityTooLarge(authority));
        }
        if sub_authorities.len() > Self::MAX_SUB_AUTHORITIES {
            return Err(SidError::TooManySubAuthorities(sub_authorities.len()));
        }
        Ok(Sid { authority, sub_authorities: sub_authorities.to_vec() })
    }

    pub fn authority(&self) -> u64 {
        self.authority
    }

    pub fn sub_authorities(&self) -> &[u32] {
        &self.sub_authorities
    }

    /// The last sub-authority (the RID of a domain account), if any.
    pub fn rid(&self) -> Option<u32> {
        self.sub_authorities.last().copied()
    }

    fn well_known(authority: u64, subs: &[u32]) -> Sid {
        Sid { authority, sub_authorities: subs.to_vec() }
    }

    /// S-1-1-0, Everyone (NFSv4 EVERYONE@).
    pub fn world() -> Sid {
        Self::well_known(1, &[0])
    }
    /// S-1-3-0, CREATOR OWNER.
    pub fn creator_owner() -> Sid {
        Self::well_known(3, &[0])
    }
    /// S-1-3-1, CREATOR GROUP.
    pub fn creator_group() -> Sid {
        Self::well_known(3, &[1])
    }
    /// S-1-5-18, Local System.
    pub fn local_system() -> Sid {
        Self::well_known(5, &[18])
    }
    /// S-1-5-32-544, BUILTIN\Administrators.
    pub fn builtin_administrators() -> Sid {
        Self::well_known(5, &[32, 544])
    }
    /// S-1-5-32-545, BUILTIN\Users.
    pub fn builtin_users() -> Sid {
        Self::well_known(5, &[32, 545])
    }
    /// S-1-5-11, Authenticated Users.
    pub fn authenticated_users() -> Sid {
        Self::well_known(5, &[11])
    }
    /// `S-1-22-1-<uid>`: Samba's SID for a Unix user with no other mapping.
    pub fn unix_user(uid: u32) -> Sid {
        Self::well_known(22, &[1, uid])
    }
    /// `S-1-22-2-<gid>`: Samba's SID for a Unix group with no other mapping.
    pub fn unix_group(gid: u32) -> Sid {
        Self::well_known(22, &[2, gid])
    }

    /// The uid of an `S-1-22-1-<uid>` SID.
    pub fn as_unix_user(&self) -> Option<u32> {
        match (self.authority, self.sub_authorities.as_slice()) {
            (22, [1, uid]) => Some(*uid),
            _ => None,
        }
    }

    /// The gid of an `S-1-22-2-<gid>` SID.
    pub fn as_unix_group(&self) -> Option<u32> {
        match (self.authority, self.sub_authorities.as_slice()) {
            (22, [2, gid]) => Some(*gid),
            _ => None,
        }
    }
}

/// Why the binary form of a SID (MS-DTYP 2.4.2.2) could not be read. Offsets are relative
/// to the start of the SID; callers that know where the SID sits add their own base.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidDecodeError {
    #[error("SID truncated: needs {needed} bytes, only {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("SID revision {0} (byte 0), expected 1")]
    Revision(u8),
    #[error("SID sub-authority count {0} (byte 1) exceeds 15")]
    SubAuthorityCount(u8),
}

impl Sid {
    /// The SID revision, the only one that exists.
    pub const REVISION: u8 = 1;

    /// S-1-0-0, the NULL SID (also the placeholder in ACEs of unknown type).
    pub fn null() -> Sid {
        Self::well_known(0, &[0])
    }

    /// Size of the binary form: 8 bytes of header and authority, 4 per sub-authority.
    pub fn byte_len(&self) -> usize {
        8 + 4 * self.sub_authorities.len()
    }

    /// Appends the binary form (MS-DTYP 2.4.2.2): revision, count, 48-bit big-endian
    /// authority, little-endian sub-authorities.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        out.push(Self::REVISION);
        // At most 15 sub-authorities, guaranteed by every constructor.
        out.push(self.sub_authorities.len() as u8);
        out.extend_from_slice(&self.authority.to_be_bytes()[2..]);
        for sub in &self.sub_authorities {
            out.extend_from_slice(&sub.to_le_bytes());
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        self.write_bytes(&mut out);
        out
    }

    /// Reads one SID from the start of `bytes`; returns it and the number of bytes it used.
    /// Trailing bytes are left to the caller.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Sid, usize), SidDecodeError> {
        if bytes.len() < 8 {
            return Err(SidDecodeError::Truncated { needed: 8, available: bytes.len() });
        }
        if bytes[0] != Self::REVISION {
            return Err(SidDecodeError::Revision(bytes[0]));
        }
        let count = bytes[1];
        if usize::from(count) > Self::MAX_SUB_AUTHORITIES {
            return Err(SidDecodeError::SubAuthorityCount(count));
        }
        let len = 8 + 4 * usize::from(count);
        if bytes.len() < len {
            return Err(SidDecodeError::Truncated { needed: len, available: bytes.len() });
        }
        let mut authority_bytes = [0u8; 8];
        authority_bytes[2..].copy_from_slice(&bytes[2..8]);
        let authority = u64::from_be_bytes(authority_bytes);
        let sub_authorities = bytes[8..len]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((Sid { authority, sub_authorities }, len))
    }

    /// Whether `self` is `domain` plus exactly one more sub-authority (a domain account).
    pub fn is_in_domain(&self, domain: &Sid) -> bool {
        self.authority == domain.authority
            && self.sub_authorities.len() == domain.sub_authorities.len() + 1
            && self.sub_authorities.starts_with(&domain.sub_authorities)
    }

    /// `domain` with `rid` appended; `None` when the domain already has 15 sub-authorities.
    pub fn with_rid(domain: &Sid, rid: u32) -> Option<Sid> {
        let mut subs = domain.sub_authorities.clone();
        subs.push(rid);
        Sid::new(domain.authority, &subs).ok()
    }
}

impl fmt::Display for Sid {
    /// `S-1-5-21-...`; authorities of 2^32 and above in hex, as MS-DTYP 2.4.2.1 says.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.authority >= 1 << 32 {
            write!(f, "S-1-{:#014x}", self.authority)?;
        } else {
            write!(f, "S-1-{}", self.authority)?;
        }
        for sub in &self.sub_authorities {
            write!(f, "-{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sid {
    type Err = SidError;

    /// Parses `S-1-...` (case-insensitive `S`, decimal or `0x` hex authority).
    fn from_str(text: &str) -> Result<Self, SidError> {
        let syntax = || SidError::Syntax(text.to_string());
        let mut parts = text.split('-');
        if !matches!(parts.next(), Some("S" | "s")) || parts.next() != Some("1") {
            return Err(syntax());
        }
        let authority = parts.next().ok_or_else(syntax)?;
        let authority = if let Some(hex) = authority.strip_prefix("0x").or_else(|| authority.strip_prefix("0X")) {
            u64::from_str_radix(hex, 16).map_err(|_| syntax())?
        } else {
            parse_decimal(authority).ok_or_else(syntax)?
        };
        let subs = parts
            .map(|p| parse_decimal(p).and_then(|v| u32::try_from(v).ok()).ok_or_else(syntax))
            .collect::<Result<Vec<u32>, _>>()?;
        Sid::new(authority, &subs)
    }
}

fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl serde::Serialize for Sid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for text in ["S-1-1-0", "S-1-5-21-1004336348-1177238915-682003330-512", "S-1-22-1-1000", "S-1-0x123456789abc-1"] {
            assert_eq!(text.parse::<Sid>().unwrap().to_string(), text);
        }
        assert_eq!("s-1-5-32-544".parse::<Sid>().unwrap(), Sid::builtin_administrators());
    }

    #[test]
    fn rejects_malformed() {
        for text in ["", "S-1", "S-2-1-0", "S-1-x", "S-1-5--1", "S-1-5-4294967296", "S-1-281474976710656",
                     "S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16", "S-1-+5"] {
            assert!(text.parse::<Sid>().is_err(), "{text} accepted");
        }
    }

    #[test]
    fn binary_form() {
        let sid: Sid = "S-1-5-21-1-2-3-512".parse().unwrap();
        let bytes = sid.to_bytes();
        assert_eq!(&bytes[..8], &[1, 5, 0, 0, 0, 0, 0, 5]);
        assert_eq!(&bytes[8..12], &[21, 0, 0, 0]);
        assert_eq!(&bytes[24..28], &512u32.to_le_bytes());
        assert_eq!(Sid::decode_prefix(&bytes).unwrap(), (sid.clone(), 28));
        let mut extra = bytes.clone();
        extra.push(0xff);
        assert_eq!(Sid::decode_prefix(&extra).unwrap(), (sid, 28));
        assert_eq!(Sid::decode_prefix(&bytes[..27]), Err(SidDecodeError::Truncated { needed: 28, available: 27 }));
        assert_eq!(Sid::decode_prefix(&[2, 0, 0, 0, 0, 0, 0, 0]), Err(SidDecodeError::Revision(2)));
        assert_eq!(Sid::decode_prefix(&[1, 16, 0, 0, 0, 0, 0, 0]), Err(SidDecodeError::SubAuthorityCount(16)));
        let wide: Sid = "S-1-0x123456789abc-7".parse().unwrap();
        assert_eq!(&wide.to_bytes()[2..8], &[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]);
        assert_eq!(Sid::decode_prefix(&wide.to_bytes()).unwrap().0, wide);
    }

    #[test]
    fn domain_membership() {
        let domain: Sid = "S-1-5-21-1-2-3".parse().unwrap();
        let admins = Sid::with_rid(&domain, 512).unwrap();
        assert_eq!(admins.to_string(), "S-1-5-21-1-2-3-512");
        assert!(admins.is_in_domain(&domain));
        assert!(!domain.is_in_domain(&domain));
        assert!(!Sid::world().is_in_domain(&domain));
    }

    #[test]
    fn unix_sids() {
        assert_eq!(Sid::unix_user(1000).to_string(), "S-1-22-1-1000");
        assert_eq!(Sid::unix_group(100).as_unix_group(), Some(100));
        assert_eq!(Sid::unix_group(100).as_unix_user(), None);
    }
}
