//! The `ndr` encoding: Samba's `vfs_nfs4acl_xattr` default (`security.nfs4acl_ndr`),
//! `librpc/idl/nfs4acl.idl`, big-endian NDR with richacl heritage.
//!
//! Layout (offsets in bytes):
//!
//! ```text
//! 0  a_version  u8    0 (ACL4_XATTR_VERSION_40) or 1 (_41)
//! 1  a_flags    u8    ACL flags; Samba writes and reads them only in version 1
//! 2  a_count    u16
//! 4  a_owner_mask, a_group_mask, a_other_mask   u32 each; Samba writes 0, never reads
//! 16 a_count ACEs, each 4-aligned:
//!    e_type u16, e_flags u16, e_mask u32, e_id u32,
//!    e_who  UTF-8 with NUL terminator (STR_UTF8|STR_NULLTERM, no length prefix),
//!    _pad   zeros to the next multiple of 4
//! ```
//!
//! What Samba does (`nfs4acl_xattr_ndr.c`), which we match byte for byte:
//! - `e_flags` is the NFSv4 ACE flags as they are (including IDENTIFIER_GROUP for gids);
//!   Samba sets **no** special-who bit in `e_flags` (richacl's 0x4000 is not used).
//! - A special principal is told by `e_who` = `OWNER@`, `GROUP@` or `EVERYONE@`; other
//!   ACEs have `e_who` = "" and the uid/gid in `e_id`.
//! - For special principals `e_id` holds the special id (1, 2, 3), because Samba fills it
//!   from the same union as `special_id`.
//!
//! Where we refuse instead of guessing:
//! - INTERACTIVE@..SERVICE@ and named principals cannot be written (Samba would read any
//!   other `e_who` as the numeric `e_id`, i.e. as some uid); on read, an `e_who` other than
//!   "", `OWNER@`, `GROUP@`, `EVERYONE@` is an error for the same reason.
//! - A special ACE whose `e_id` is not its special id, a version-0 ACL with non-zero
//!   `a_flags`, non-zero padding, a missing terminator and trailing bytes are errors (Samba
//!   would ignore them; they cannot round-trip).
//!
//! The header state [`Nfs4Acl`] cannot hold (version, the three masks) lives in [`NdrAcl`],
//! so `decode` → `encode` reproduces the input exactly.
use super::error::Nfs4CodecError;
use super::wire::{self, put_u16, put_u32, Reader};
use super::{ace_flags, Nfs4Ace, Nfs4Acl, SpecialWho, Who};

const FORMAT: &str = "ndr (nfs4acl)";

const HEADER_LEN: usize = 16;
/// 12 bytes of fixed fields, an empty `e_who` (just the NUL) and 3 bytes of padding.
const MIN_ACE_LEN: usize = 16;

/// `a_version`: Samba's `nfs4acl_xattr:version` 40 or 41 (default 41).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdrVersion {
    V40 = 0,
    V41 = 1,
}

/// An `nfs4acl` NDR blob: the ACL plus the header fields the model has no place for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdrAcl {
    pub version: NdrVersion,
    /// richacl's file masks; Samba writes 0 and ignores them on read.
    pub owner_mask: u32,
    pub group_mask: u32,
    pub other_mask: u32,
    pub acl: Nfs4Acl,
}

impl NdrAcl {
    /// What Samba writes with its defaults: version 1, all masks 0.
    pub fn samba_default(acl: Nfs4Acl) -> Self {
        NdrAcl {
            version: NdrVersion::V41,
            owner_mask: 0,
            group_mask: 0,
            other_mask: 0,
            acl,
        }
    }
}

/// Decodes an `nfs4acl` NDR blob.
pub fn decode(bytes: &[u8]) -> Result<NdrAcl, Nfs4CodecError> {
    let mut reader = Reader::new(FORMAT, bytes);
    let version = match reader.u8("a_version")? {
        0 => NdrVersion::V40,
        1 => NdrVersion::V41,
        other => return Err(reader.error(0, format!("unknown a_version {other} (0 or 1 exist)"))),
    };
    let acl_flags = reader.u8("a_flags")?;
    if version == NdrVersion::V40 && acl_flags != 0 {
        return Err(reader.error(
            1,
            format!("a_flags 0x{acl_flags:02x} in a version 0 ACL, which has no ACL flags"),
        ));
    }
    let count_offset = reader.offset();
    let count = reader.u16("a_count")?;
    let owner_mask = reader.u32("a_owner_mask")?;
    let group_mask = reader.u32("a_group_mask")?;
    let other_mask = reader.u32("a_other_mask")?;
    let count = reader.check_count(count_offset, u64::from(count), MIN_ACE_LEN, "ACE")?;
    let mut aces = Vec::with_capacity(count);
    for _ in 0..count {
        aces.push(read_ace(&mut reader)?);
    }
    reader.finish()?;
    Ok(NdrAcl {
        version,
        owner_mask,
        group_mask,
        other_mask,
        acl: Nfs4Acl {
            flags: u32::from(acl_flags),
            aces,
        },
    })
}

fn read_ace(reader: &mut Reader<'_>) -> Result<Nfs4Ace, Nfs4CodecError> {
    let type_offset = reader.offset();
    let code = reader.u16("e_type")?;
    let ace_type = wire::ace_type(reader, type_offset, u32::from(code))?;
    let flags = u32::from(reader.u16("e_flags")?);
    let mask = reader.u32("e_mask")?;
    let id_offset = reader.offset();
    let id = reader.u32("e_id")?;
    let who_offset = reader.offset();
    let Some(len) = reader.rest().iter().position(|b| *b == 0) else {
        return Err(reader.error(who_offset, "e_who has no NUL terminator"));
    };
    let raw = &reader.take(len + 1, "e_who")?[..len];
    let who_text = std::str::from_utf8(raw).map_err(|e| {
        reader.error(
            who_offset + e.valid_up_to(),
            format!("e_who is not UTF-8: {}", String::from_utf8_lossy(raw)),
        )
    })?;
    reader.zero_pad_to_4("e_who padding")?;
    let who = match who_text {
        "" if flags & ace_flags::IDENTIFIER_GROUP != 0 => Who::Gid(id),
        "" => Who::Uid(id),
        "OWNER@" | "GROUP@" | "EVERYONE@" => {
            let special = SpecialWho::from_str_exact(who_text).ok_or_else(|| {
                reader.error(who_offset, format!("unknown special e_who {who_text:?}"))
            })?;
            if id != special as u32 {
                return Err(reader.error(
                    id_offset,
                    format!(
                        "e_id {id} for {who_text}; Samba writes {} there",
                        special as u32
                    ),
                ));
            }
            Who::Special(special)
        }
        other => {
            return Err(reader.error(
                who_offset,
                format!(
                    "unsupported e_who {other:?}: Samba would read it as numeric id {id}; \
                     only \"\", OWNER@, GROUP@, EVERYONE@ are defined"
                ),
            ))
        }
    };
    Ok(Nfs4Ace {
        ace_type,
        flags,
        mask,
        who,
    })
}

/// Encodes an `nfs4acl` NDR blob.
pub fn encode(ndr: &NdrAcl) -> Result<Vec<u8>, Nfs4CodecError> {
    let acl = &ndr.acl;
    acl.validate()?;
    let acl_flags = u8::try_from(acl.flags).map_err(|_| {
        Nfs4CodecError::unencodable(
            FORMAT,
            format!("ACL flags 0x{:x} do not fit a_flags (u8)", acl.flags),
        )
    })?;
    if ndr.version == NdrVersion::V40 && acl_flags != 0 {
        return Err(Nfs4CodecError::unencodable(
            FORMAT,
            format!("ACL flags 0x{acl_flags:x} cannot be stored in a version 0 ACL"),
        ));
    }
    let count = wire::count_field(FORMAT, &acl.aces, usize::from(u16::MAX))?;
    let mut out = Vec::with_capacity(HEADER_LEN + count * 24);
    out.push(ndr.version as u8);
    out.push(acl_flags);
    put_u16(&mut out, count as u16);
    put_u32(&mut out, ndr.owner_mask);
    put_u32(&mut out, ndr.group_mask);
    put_u32(&mut out, ndr.other_mask);
    for (index, ace) in acl.aces.iter().enumerate() {
        let e_flags = u16::try_from(ace.flags).map_err(|_| {
            Nfs4CodecError::unencodable(
                FORMAT,
                format!(
                    "ACE {index}: flags 0x{:x} do not fit e_flags (u16)",
                    ace.flags
                ),
            )
        })?;
        let (e_id, e_who) = match &ace.who {
            Who::Uid(id) | Who::Gid(id) => (*id, ""),
            Who::Special(
                special @ (SpecialWho::Owner | SpecialWho::Group | SpecialWho::Everyone),
            ) => (*special as u32, special.as_str()),
            Who::Special(other) => {
                return Err(Nfs4CodecError::unencodable(
                    FORMAT,
                    format!(
                        "ACE {index}: {} has no NDR form (Samba would read it as a uid)",
                        other.as_str()
                    ),
                ))
            }
            Who::Name(name) => {
                return Err(Nfs4CodecError::unencodable(
                    FORMAT,
                    format!("ACE {index}: named principal {name:?} has no numeric id"),
                ))
            }
        };
        put_u16(&mut out, ace.ace_type as u16);
        put_u16(&mut out, e_flags);
        put_u32(&mut out, ace.mask);
        put_u32(&mut out, e_id);
        out.extend_from_slice(e_who.as_bytes());
        out.push(0);
        wire::pad_to_4(&mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samba's output (version 41, DACL_PROTECTED) for OWNER@ allow FI|DI 0x1f01ff,
    /// gid 100 deny WRITE_DATA, EVERYONE@ allow READ_DATA, derived from
    /// `nfs4acl_smb4acl2nfs4acl` and the IDL: special ids land in e_id via the union.
    const SAMBA_STYLE: &[u8] = &[
        1, 2, 0, 3, // a_version 1, a_flags PROTECTED, a_count 3
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // owner/group/other masks
        // ACE 0 @16: ALLOW, FI|DI, 0x1f01ff, e_id 1, "OWNER@\0" + 1 pad = 20 bytes
        0, 0, 0, 3, 0, 0x1f, 0x01, 0xff, 0, 0, 0, 1, //
        b'O', b'W', b'N', b'E', b'R', b'@', 0, 0, //
        // ACE 1 @36: DENY, IDENTIFIER_GROUP, WRITE_DATA, gid 100, "\0" + 3 pad = 16 bytes
        0, 1, 0, 0x40, 0, 0, 0, 2, 0, 0, 0, 100, 0, 0, 0, 0, //
        // ACE 2 @52: ALLOW, 0, READ_DATA, e_id 3, "EVERYONE@\0" + 2 pad = 24 bytes
        0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3, //
        b'E', b'V', b'E', b'R', b'Y', b'O', b'N', b'E', b'@', 0, 0, 0,
    ];

    fn samba_style() -> NdrAcl {
        NdrAcl::samba_default(crate::acl::nfs4::strategies::samba_style_acl())
    }

    #[test]
    fn samba_style_vector_round_trips_byte_exact() {
        assert_eq!(SAMBA_STYLE.len(), 76);
        assert_eq!(decode(SAMBA_STYLE).unwrap(), samba_style());
        assert_eq!(encode(&samba_style()).unwrap(), SAMBA_STYLE);
    }

    #[test]
    fn version_0_and_masks_are_kept() {
        // Version 0, no flags, masks 0x1ff/0x1/0x2, one uid ACE (uid 1000).
        let bytes: &[u8] = &[
            0, 0, 0, 1, 0, 0, 1, 0xff, 0, 0, 0, 1, 0, 0, 0, 2, //
            0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0x03, 0xe8, 0, 0, 0, 0,
        ];
        let ndr = decode(bytes).unwrap();
        assert_eq!(ndr.version, NdrVersion::V40);
        assert_eq!(
            (ndr.owner_mask, ndr.group_mask, ndr.other_mask),
            (0x1ff, 1, 2)
        );
        assert_eq!(ndr.acl.aces[0].who, Who::Uid(1000));
        assert_eq!(encode(&ndr).unwrap(), bytes);
    }

    #[test]
    fn malformed_blobs_name_offset_and_token() {
        let mut bad_version = SAMBA_STYLE.to_vec();
        bad_version[0] = 2;
        assert_eq!(
            decode(&bad_version).unwrap_err(),
            Nfs4CodecError::malformed(FORMAT, 0, "unknown a_version 2 (0 or 1 exist)")
        );
        let mut v0_with_flags = SAMBA_STYLE.to_vec();
        v0_with_flags[0] = 0;
        assert!(matches!(
            decode(&v0_with_flags),
            Err(Nfs4CodecError::Malformed { offset: 1, .. })
        ));
        let mut wrong_special_id = SAMBA_STYLE.to_vec();
        wrong_special_id[27] = 7; // ACE 0 e_id
        assert_eq!(
            decode(&wrong_special_id).unwrap_err(),
            Nfs4CodecError::malformed(FORMAT, 24, "e_id 7 for OWNER@; Samba writes 1 there")
        );
        let mut other_who = SAMBA_STYLE.to_vec();
        other_who[28] = b'X'; // "XWNER@"
        let err = decode(&other_who).unwrap_err();
        assert!(
            matches!(&err, Nfs4CodecError::Malformed { offset: 28, what, .. } if what.contains("\"XWNER@\"")),
            "{err}"
        );
        let mut bad_pad = SAMBA_STYLE.to_vec();
        bad_pad[35] = 1; // ACE 0 padding byte
        assert!(matches!(
            decode(&bad_pad),
            Err(Nfs4CodecError::Malformed { offset: 35, .. })
        ));
        // Last ACE lost its terminator and padding.
        let cut = &SAMBA_STYLE[..SAMBA_STYLE.len() - 3];
        assert_eq!(
            decode(cut).unwrap_err(),
            Nfs4CodecError::malformed(FORMAT, 64, "e_who has no NUL terminator")
        );
    }

    #[test]
    fn refuses_what_samba_would_misread() {
        let mut acl = samba_style();
        acl.acl.aces[0].who = Who::Special(SpecialWho::Interactive);
        assert!(encode(&acl)
            .unwrap_err()
            .to_string()
            .contains("INTERACTIVE@"));
        let mut wide = samba_style();
        wide.acl.aces[1].flags |= 0x1_0000;
        assert!(encode(&wide).unwrap_err().to_string().contains("e_flags"));
        let mut v0 = samba_style();
        v0.version = NdrVersion::V40;
        assert!(encode(&v0).unwrap_err().to_string().contains("version 0"));
    }
}

#[cfg(test)]
mod properties {
    use super::super::strategies;
    use super::*;
    use proptest::prelude::*;

    fn ndr_acl() -> impl Strategy<Value = NdrAcl> {
        (
            strategies::ndr_acl(),
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(mut acl, v41, owner_mask, group_mask, other_mask)| {
                let version = if v41 {
                    NdrVersion::V41
                } else {
                    NdrVersion::V40
                };
                if version == NdrVersion::V40 {
                    acl.flags = 0;
                }
                NdrAcl {
                    version,
                    owner_mask,
                    group_mask,
                    other_mask,
                    acl,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn version_and_masks_round_trip(ndr in ndr_acl()) {
            let bytes = encode(&ndr).unwrap();
            prop_assert_eq!(bytes.len() % 4, 0);
            prop_assert_eq!(decode(&bytes).unwrap(), ndr);
        }
    }
}
