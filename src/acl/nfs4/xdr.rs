//! The `xdr` encoding: Samba's `nfs4acl_xattr:encoding = xdr` (default xattr
//! `security.nfs4acl_xdr`) and TrueNAS/OpenZFS `system.nfs4_acl_xdr`.
//!
//! `nfsacl41i` (Samba `source3/modules/nfs41acl.x`) = `{aclflag4, nfsace4i<>}`, every field
//! a big-endian u32, 20 bytes per ACE: `{type, flag, iflag, access_mask, who}`.
//! `iflag` is 0 or ACEI4_SPECIAL_WHO (1); with it, `who` is a special id 1-10
//! ([`SpecialWho`] values), without it a uid, or a gid when `flag` has IDENTIFIER_GROUP.
//!
//! Byte-exact with Samba (`nfs4acl_xattr_xdr.c`): Samba copies the ACE flags as they are,
//! sets IDENTIFIER_GROUP for gids, leaves it alone for special ids, writes `iflag` 1 and the
//! special id for OWNER@/GROUP@/EVERYONE@, and writes aclflag4 0 when configured for 4.0.
//! Differences, both toward refusing rather than guessing:
//! - Samba only knows special ids 1-3 and *silently skips* ACEs with 4-10 on read. We read
//!   and write all ten (the format defines them and TrueNAS uses them); an ACL with
//!   INTERACTIVE@..SERVICE@ written here loses those ACEs when stock Samba reads it.
//! - Samba ignores trailing bytes and unknown `iflag` bits; we reject both.
use super::error::Nfs4CodecError;
use super::wire::{self, put_u32, Reader};
use super::{ace_flags, Nfs4Ace, Nfs4Acl, SpecialWho, Who};

const FORMAT: &str = "xdr (nfsacl41i)";

/// `ACEI4_SPECIAL_WHO`: `who` is a special id, not a uid/gid.
pub const ACEI4_SPECIAL_WHO: u32 = 0x1;

/// Samba refuses to write more ACEs than this (`NFS4ACL_XDR_MAX_ACES`); so do we.
pub const MAX_ACES: usize = 8192;

const ACE_LEN: usize = 20;

/// Decodes an `nfsacl41i` value.
pub fn decode(bytes: &[u8]) -> Result<Nfs4Acl, Nfs4CodecError> {
    let mut reader = Reader::new(FORMAT, bytes);
    let flags = reader.u32("aclflag4")?;
    let count_offset = reader.offset();
    let count = reader.u32("ACE count")?;
    let count = reader.check_count(count_offset, u64::from(count), ACE_LEN, "ACE")?;
    let mut aces = Vec::with_capacity(count);
    for _ in 0..count {
        let type_offset = reader.offset();
        let code = reader.u32("ACE type")?;
        let ace_type = wire::ace_type(&reader, type_offset, code)?;
        let flags = reader.u32("ACE flags")?;
        let iflag_offset = reader.offset();
        let iflag = reader.u32("ACE iflag")?;
        let mask = reader.u32("ACE access mask")?;
        let who_offset = reader.offset();
        let id = reader.u32("ACE who")?;
        let who = match iflag {
            0 if flags & ace_flags::IDENTIFIER_GROUP != 0 => Who::Gid(id),
            0 => Who::Uid(id),
            ACEI4_SPECIAL_WHO => Who::Special(SpecialWho::from_id(id).ok_or_else(|| {
                reader.error(who_offset, format!("unknown special id {id} (1-10 exist)"))
            })?),
            other => {
                return Err(reader.error(
                    iflag_offset,
                    format!("unknown iflag 0x{other:x} (only ACEI4_SPECIAL_WHO 0x1 exists)"),
                ))
            }
        };
        aces.push(Nfs4Ace {
            ace_type,
            flags,
            mask,
            who,
        });
    }
    reader.finish()?;
    Ok(Nfs4Acl { flags, aces })
}

/// Encodes an `nfsacl41i` value. Named principals have no numeric form here and are an
/// error: resolve them to ids first.
pub fn encode(acl: &Nfs4Acl) -> Result<Vec<u8>, Nfs4CodecError> {
    acl.validate()?;
    let count = wire::count_field(FORMAT, &acl.aces, MAX_ACES)?;
    let mut out = Vec::with_capacity(8 + count * ACE_LEN);
    put_u32(&mut out, acl.flags);
    put_u32(&mut out, count as u32);
    for (index, ace) in acl.aces.iter().enumerate() {
        let (iflag, id) = match &ace.who {
            Who::Special(special) => (ACEI4_SPECIAL_WHO, *special as u32),
            Who::Uid(id) | Who::Gid(id) => (0, *id),
            Who::Name(name) => {
                return Err(Nfs4CodecError::unencodable(
                    FORMAT,
                    format!("ACE {index}: named principal {name:?} has no numeric id"),
                ))
            }
        };
        put_u32(&mut out, ace.ace_type as u32);
        put_u32(&mut out, ace.flags);
        put_u32(&mut out, iflag);
        put_u32(&mut out, ace.mask);
        put_u32(&mut out, id);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::Nfs4AceType;
    use super::*;

    /// What Samba writes for an NT ACL mapped to OWNER@ full-ish, gid 100 read, EVERYONE@
    /// read, with `nfs4acl_xattr:version = 41` and DACL_PROTECTED (aclflag4 PROTECTED).
    /// Derived from `smb4acl_to_nfs4acli`: flag copied (IDENTIFIER_GROUP added for gids),
    /// iflag 1 + special id for special principals, iflag 0 + id otherwise.
    const SAMBA_STYLE: &[u8] = &[
        0, 0, 0, 2, // aclflag4: PROTECTED
        0, 0, 0, 3, // 3 ACEs
        // ALLOW, FI|DI, ACEI4_SPECIAL_WHO, 0x1f01ff, OWNER (1)
        0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0x1f, 0x01, 0xff, 0, 0, 0, 1, //
        // DENY, IDENTIFIER_GROUP, iflag 0, WRITE_DATA, gid 100
        0, 0, 0, 1, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 100, //
        // ALLOW, 0, ACEI4_SPECIAL_WHO, READ_DATA, EVERYONE (3)
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 3,
    ];

    use crate::acl::nfs4::strategies::samba_style_acl;

    #[test]
    fn samba_style_vector_round_trips_byte_exact() {
        assert_eq!(decode(SAMBA_STYLE).unwrap(), samba_style_acl());
        assert_eq!(encode(&samba_style_acl()).unwrap(), SAMBA_STYLE);
    }

    #[test]
    fn uid_without_group_flag() {
        let bytes: &[u8] = &[
            0, 0, 0, 0, 0, 0, 0, 1, //
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0x03, 0xe8,
        ];
        let acl = decode(bytes).unwrap();
        assert_eq!(acl.aces[0].who, Who::Uid(1000));
        assert_eq!(encode(&acl).unwrap(), bytes);
    }

    #[test]
    fn bad_iflag_special_id_and_length_are_errors_with_offsets() {
        let mut bad_iflag = SAMBA_STYLE.to_vec();
        bad_iflag[19] = 2; // first ACE's iflag at 8 + 8
        assert_eq!(
            decode(&bad_iflag).unwrap_err(),
            Nfs4CodecError::malformed(
                FORMAT,
                16,
                "unknown iflag 0x2 (only ACEI4_SPECIAL_WHO 0x1 exists)"
            )
        );
        let mut bad_special = SAMBA_STYLE.to_vec();
        bad_special[27] = 11; // first ACE's who at 8 + 16
        assert_eq!(
            decode(&bad_special).unwrap_err(),
            Nfs4CodecError::malformed(FORMAT, 24, "unknown special id 11 (1-10 exist)")
        );
        let short = &SAMBA_STYLE[..SAMBA_STYLE.len() - 1];
        assert!(matches!(
            decode(short),
            Err(Nfs4CodecError::Malformed { offset: 4, .. })
        ));
    }

    #[test]
    fn names_cannot_be_encoded() {
        let acl = Nfs4Acl {
            flags: 0,
            aces: vec![Nfs4Ace {
                ace_type: Nfs4AceType::Allow,
                flags: 0,
                mask: 1,
                who: Who::Name("alice@example.com".to_string()),
            }],
        };
        let err = encode(&acl).unwrap_err();
        assert!(err.to_string().contains("alice@example.com"), "{err}");
    }
}
