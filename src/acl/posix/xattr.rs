//! The binary value of `system.posix_acl_access` / `system.posix_acl_default`
//! (`include/uapi/linux/posix_acl_xattr.h`): a little-endian u32 version (2), then 8-byte
//! entries {tag u16, perm u16, id u32}, all little-endian.
use super::model::{tag_code, Perms, PosixAcl, PosixEntry, Tag, ACL_UNDEFINED_ID};

pub const XATTR_NAME_ACCESS: &str = "system.posix_acl_access";
pub const XATTR_NAME_DEFAULT: &str = "system.posix_acl_default";
pub const POSIX_ACL_XATTR_VERSION: u32 = 2;

const HEADER_LEN: usize = 4;
const ENTRY_LEN: usize = 8;

/// Why bytes are not a POSIX ACL xattr value. Offsets are byte offsets into the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XattrDecodeError {
    #[error("POSIX ACL xattr is {len} bytes; the version header alone needs 4")]
    TooShort { len: usize },
    #[error("POSIX ACL xattr version {version} at offset 0; only version 2 exists")]
    UnsupportedVersion { version: u32 },
    #[error(
        "POSIX ACL xattr has {extra} stray bytes at offset {offset}; entries are 8 bytes each"
    )]
    TrailingBytes { offset: usize, extra: usize },
    #[error("unknown tag {tag:#06x} in the entry at offset {offset}")]
    UnknownTag { offset: usize, tag: u16 },
    #[error("permission bits {perm:#06x} beyond rwx in the entry at offset {offset}")]
    BadPerm { offset: usize, perm: u16 },
    #[error("the named entry at offset {offset} carries the undefined id 0xffffffff")]
    UndefinedId { offset: usize },
}

impl PosixAcl {
    /// The xattr value. Entries are written in stored order; ids of unnamed entries are
    /// `ACL_UNDEFINED_ID`, as the kernel writes them.
    pub fn to_xattr(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * self.entries.len());
        bytes.extend_from_slice(&POSIX_ACL_XATTR_VERSION.to_le_bytes());
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.tag.code().to_le_bytes());
            bytes.extend_from_slice(&u16::from(entry.perms.bits()).to_le_bytes());
            bytes.extend_from_slice(&entry.tag.id().to_le_bytes());
        }
        bytes
    }

    /// Parses an xattr value. Never panics. Checks the encoding only, as the kernel's
    /// `posix_acl_from_xattr` does (tags, perms, ids); call [`PosixAcl::validate`] for the
    /// structure. A header with no entries gives an empty ACL (the kernel reads that as "no
    /// ACL"); the id of unnamed entries is ignored, as the kernel ignores it.
    pub fn from_xattr(bytes: &[u8]) -> Result<PosixAcl, XattrDecodeError> {
        let header: [u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(XattrDecodeError::TooShort { len: bytes.len() })?;
        let version = u32::from_le_bytes(header);
        if version != POSIX_ACL_XATTR_VERSION {
            return Err(XattrDecodeError::UnsupportedVersion { version });
        }
        let body = &bytes[HEADER_LEN..];
        let extra = body.len() % ENTRY_LEN;
        if extra != 0 {
            return Err(XattrDecodeError::TrailingBytes {
                offset: bytes.len() - extra,
                extra,
            });
        }
        let mut entries = Vec::with_capacity(body.len() / ENTRY_LEN);
        for (index, chunk) in body.chunks_exact(ENTRY_LEN).enumerate() {
            let offset = HEADER_LEN + index * ENTRY_LEN;
            let tag_value = u16::from_le_bytes([chunk[0], chunk[1]]);
            let perm = u16::from_le_bytes([chunk[2], chunk[3]]);
            let id = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            let named = |make: fn(u32) -> Tag| {
                if id == ACL_UNDEFINED_ID {
                    Err(XattrDecodeError::UndefinedId { offset })
                } else {
                    Ok(make(id))
                }
            };
            let tag = match tag_value {
                tag_code::USER_OBJ => Tag::UserObj,
                tag_code::USER => named(Tag::User)?,
                tag_code::GROUP_OBJ => Tag::GroupObj,
                tag_code::GROUP => named(Tag::Group)?,
                tag_code::MASK => Tag::Mask,
                tag_code::OTHER => Tag::Other,
                _ => {
                    return Err(XattrDecodeError::UnknownTag {
                        offset,
                        tag: tag_value,
                    })
                }
            };
            let perms = Perms::from_bits(u32::from(perm))
                .ok_or(XattrDecodeError::BadPerm { offset, perm })?;
            entries.push(PosixEntry::new(tag, perms));
        }
        Ok(PosixAcl::new(entries))
    }
}
