//! The `nfs` encoding: RFC 7530/8881 XDR, byte for byte what the Linux NFS client returns
//! from (and accepts in) its ACL xattrs.
//!
//! - NFSv4.0 `system.nfs4_acl`: the `acl` attribute, `nfsace4<>` = u32 count, then per ACE
//!   `{type, flag, access_mask, who}`, each a big-endian u32 except `who`, an XDR opaque
//!   string (u32 length, bytes, zero padding to 4).
//! - NFSv4.1 `system.nfs4_dacl` / `system.nfs4_sacl`: `nfsacl41` = `{aclflag4, nfsace4<>}`.
//!
//! Principals are strings ([`who_from_str`]): `OWNER@` and the other RFC 8881 §6.2.1.5
//! special identifiers, a decimal id (what a server sends with id mapping off), or a name
//! such as `alice@example.com`. A decimal id is a group exactly when the ACE carries
//! IDENTIFIER_GROUP (the only thing that tells them apart on the wire, as in the Linux
//! client's and Samba's `nfs4_id_numeric` handling), so `"1000"` is `Uid(1000)` without the
//! flag and `Gid(1000)` with it. Decoding is strict: an unknown `XYZ@`, a decimal with a
//! leading zero or beyond u32, an empty or non-UTF-8 string, non-zero padding and trailing
//! bytes are errors, because each would either be a guess or not round-trip.
use super::error::Nfs4CodecError;
use super::wire::{self, put_u32, Reader};
use super::{ace_flags, Nfs4Ace, Nfs4Acl, SpecialWho, Who};

const FORMAT_40: &str = "nfs (NFSv4.0 nfsace4<>)";
const FORMAT_41: &str = "nfs (NFSv4.1 nfsacl41)";

/// Smallest XDR `nfsace4`: three u32 fields and the who length (an empty who is rejected
/// later, but it bounds allocation from below).
const MIN_ACE_LEN: usize = 16;

/// Decodes an NFSv4.0 `system.nfs4_acl` value. The ACL flags are 0 (4.0 has none).
pub fn decode_nfs40(bytes: &[u8]) -> Result<Nfs4Acl, Nfs4CodecError> {
    let mut reader = Reader::new(FORMAT_40, bytes);
    let aces = read_aces(&mut reader)?;
    reader.finish()?;
    Ok(Nfs4Acl { flags: 0, aces })
}

/// Encodes an NFSv4.0 `system.nfs4_acl` value. ACL flags cannot be expressed in 4.0 and
/// are an error rather than silently dropped (PROTECTED changes inheritance).
pub fn encode_nfs40(acl: &Nfs4Acl) -> Result<Vec<u8>, Nfs4CodecError> {
    acl.validate()?;
    if acl.flags != 0 {
        return Err(Nfs4CodecError::unencodable(
            FORMAT_40,
            format!(
                "ACL flags 0x{:x} cannot be expressed in NFSv4.0; use the NFSv4.1 encoding",
                acl.flags
            ),
        ));
    }
    let mut out = Vec::new();
    write_aces(FORMAT_40, &mut out, &acl.aces)?;
    Ok(out)
}

/// Decodes an NFSv4.1 `system.nfs4_dacl` / `system.nfs4_sacl` value.
pub fn decode_nfs41(bytes: &[u8]) -> Result<Nfs4Acl, Nfs4CodecError> {
    let mut reader = Reader::new(FORMAT_41, bytes);
    let flags = reader.u32("aclflag4")?;
    let aces = read_aces(&mut reader)?;
    reader.finish()?;
    Ok(Nfs4Acl { flags, aces })
}

/// Encodes an NFSv4.1 `nfsacl41` value.
pub fn encode_nfs41(acl: &Nfs4Acl) -> Result<Vec<u8>, Nfs4CodecError> {
    acl.validate()?;
    let mut out = Vec::new();
    put_u32(&mut out, acl.flags);
    write_aces(FORMAT_41, &mut out, &acl.aces)?;
    Ok(out)
}

/// Reads a principal string. `ace_flags` decides numeric ids: IDENTIFIER_GROUP makes a
/// decimal string a [`Who::Gid`], its absence a [`Who::Uid`]. The error says what is wrong
/// with the string; callers add the position.
pub fn who_from_str(who: &str, ace_flags: u32) -> Result<Who, String> {
    if who.is_empty() {
        return Err("empty principal".to_string());
    }
    if who.contains('\0') {
        return Err(format!("principal {who:?} contains NUL"));
    }
    if who.ends_with('@') {
        return SpecialWho::from_str_exact(who)
            .map(Who::Special)
            .ok_or_else(|| format!("unknown special identifier {who:?}"));
    }
    if who.bytes().all(|b| b.is_ascii_digit()) {
        if who.len() > 1 && who.starts_with('0') {
            return Err(format!("numeric principal {who:?} has a leading zero"));
        }
        let id: u32 = who
            .parse()
            .map_err(|_| format!("numeric principal {who:?} does not fit in 32 bits"))?;
        return Ok(if ace_flags & ace_flags::IDENTIFIER_GROUP != 0 {
            Who::Gid(id)
        } else {
            Who::Uid(id)
        });
    }
    Ok(Who::Name(who.to_string()))
}

/// The string form of a principal: `OWNER@`..., the decimal id, or the name.
pub fn who_to_string(who: &Who) -> String {
    match who {
        Who::Special(special) => special.as_str().to_string(),
        Who::Uid(id) | Who::Gid(id) => id.to_string(),
        Who::Name(name) => name.clone(),
    }
}

fn read_aces(reader: &mut Reader<'_>) -> Result<Vec<Nfs4Ace>, Nfs4CodecError> {
    let count_offset = reader.offset();
    let count = reader.u32("ACE count")?;
    let count = reader.check_count(count_offset, u64::from(count), MIN_ACE_LEN, "ACE")?;
    let mut aces = Vec::with_capacity(count);
    for _ in 0..count {
        let type_offset = reader.offset();
        let code = reader.u32("ACE type")?;
        let ace_type = wire::ace_type(reader, type_offset, code)?;
        let flags = reader.u32("ACE flags")?;
        let mask = reader.u32("ACE access mask")?;
        let len = reader.u32("who length")?;
        let who_offset = reader.offset();
        // take() checks the length against the input before anything is copied.
        let raw = reader.take(len as usize, "who")?;
        reader.zero_pad_to_4("who padding")?;
        let text = std::str::from_utf8(raw).map_err(|e| {
            reader.error(
                who_offset + e.valid_up_to(),
                format!("who is not UTF-8: {}", String::from_utf8_lossy(raw)),
            )
        })?;
        let who = who_from_str(text, flags).map_err(|why| reader.error(who_offset, why))?;
        aces.push(Nfs4Ace {
            ace_type,
            flags,
            mask,
            who,
        });
    }
    Ok(aces)
}

fn write_aces(
    format: &'static str,
    out: &mut Vec<u8>,
    aces: &[Nfs4Ace],
) -> Result<(), Nfs4CodecError> {
    let count = wire::count_field(format, aces, u32::MAX as usize)?;
    put_u32(out, count as u32);
    for ace in aces {
        put_u32(out, ace.ace_type as u32);
        put_u32(out, ace.flags);
        put_u32(out, ace.mask);
        let who = who_to_string(&ace.who);
        let len = u32::try_from(who.len()).map_err(|_| {
            Nfs4CodecError::unencodable(format, format!("who of {} bytes", who.len()))
        })?;
        put_u32(out, len);
        out.extend_from_slice(who.as_bytes());
        wire::pad_to_4(out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{mask, Nfs4AceType};
    use super::*;

    /// Hand-assembled per RFC 7530 §6.2.1 (each line one XDR item, big-endian).
    const NFS40_TWO_ACES: &[u8] = &[
        0, 0, 0, 2, // ACE count
        // ACE 0: ALLOW, flags 0, READ_DATA|WRITE_DATA, "OWNER@" (6 bytes + 2 pad)
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, //
        0, 0, 0, 6, b'O', b'W', b'N', b'E', b'R', b'@', 0, 0, //
        // ACE 1: DENY, IDENTIFIER_GROUP|FILE_INHERIT, EXECUTE, "1234" (4 bytes, no pad)
        0, 0, 0, 1, 0, 0, 0, 0x41, 0, 0, 0, 0x20, //
        0, 0, 0, 4, b'1', b'2', b'3', b'4',
    ];

    fn two_aces() -> Vec<Nfs4Ace> {
        vec![
            Nfs4Ace::new(
                Nfs4AceType::Allow,
                0,
                mask::READ_DATA | mask::WRITE_DATA,
                Who::Special(SpecialWho::Owner),
            ),
            Nfs4Ace::new(
                Nfs4AceType::Deny,
                ace_flags::IDENTIFIER_GROUP | ace_flags::FILE_INHERIT,
                mask::EXECUTE,
                Who::Gid(1234),
            ),
        ]
    }

    #[test]
    fn nfs40_hand_vector_decodes_and_encodes() {
        let acl = Nfs4Acl {
            flags: 0,
            aces: two_aces(),
        };
        assert_eq!(decode_nfs40(NFS40_TWO_ACES).unwrap(), acl);
        assert_eq!(encode_nfs40(&acl).unwrap(), NFS40_TWO_ACES);
    }

    /// An strace of `nfs4_getfacl` against Linux nfsd on ext4 (a public bug report) shows
    /// `getxattr("system.nfs4_acl") = 80` starting `\0\0\0\3\0\0\0\0\0\0\0\0\0\26\1\207
    /// \0\0\0\6OWNER@\0\0` and the tool printing the three lines below. The rest of the 80
    /// bytes is assembled from those lines; note nfsd sends GROUP@ without IDENTIFIER_GROUP.
    #[test]
    fn linux_nfsd_capture_decodes_to_what_nfs4_getfacl_printed() {
        let bytes: &[u8] = &[
            0, 0, 0, 3, //
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16, 0x01, 0x87, // rwatTcCy
            0, 0, 0, 6, b'O', b'W', b'N', b'E', b'R', b'@', 0, 0, //
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x00, 0x81, // rtcy
            0, 0, 0, 6, b'G', b'R', b'O', b'U', b'P', b'@', 0, 0, //
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x00, 0x81, // rtcy
            0, 0, 0, 9, b'E', b'V', b'E', b'R', b'Y', b'O', b'N', b'E', b'@', 0, 0, 0,
        ];
        assert_eq!(bytes.len(), 80);
        let acl = decode_nfs40(bytes).unwrap();
        assert_eq!(
            super::super::text::to_text(&acl).unwrap(),
            "A::OWNER@:rwatTcCy\nA::GROUP@:rtcy\nA::EVERYONE@:rtcy\n"
        );
        assert_eq!(encode_nfs40(&acl).unwrap(), bytes);
    }

    #[test]
    fn nfs41_hand_vector_has_aclflag_first() {
        // aclflag4 = AUTO_INHERIT|PROTECTED, then an nfsace4<> with one named ACE:
        // AUDIT, SUCCESSFUL_ACCESS, WRITE_ACL (0x40000), "bob@ex.org" (10 bytes + 2 pad).
        let bytes: &[u8] = &[
            0, 0, 0, 3, // aclflag4
            0, 0, 0, 1, // ACE count
            0, 0, 0, 2, 0, 0, 0, 0x10, 0, 4, 0, 0, //
            0, 0, 0, 10, b'b', b'o', b'b', b'@', b'e', b'x', b'.', b'o', b'r', b'g', 0, 0,
        ];
        let acl = Nfs4Acl {
            flags: 3,
            aces: vec![Nfs4Ace::new(
                Nfs4AceType::Audit,
                ace_flags::SUCCESSFUL_ACCESS,
                mask::WRITE_ACL,
                Who::Name("bob@ex.org".to_string()),
            )],
        };
        assert_eq!(decode_nfs41(bytes).unwrap(), acl);
        assert_eq!(encode_nfs41(&acl).unwrap(), bytes);
    }

    #[test]
    fn numeric_who_is_uid_without_group_flag_and_gid_with_it() {
        assert_eq!(who_from_str("0", 0), Ok(Who::Uid(0)));
        assert_eq!(
            who_from_str("4294967295", ace_flags::IDENTIFIER_GROUP),
            Ok(Who::Gid(u32::MAX))
        );
        // GROUP@ stays special whatever the flag says.
        assert_eq!(
            who_from_str("GROUP@", ace_flags::IDENTIFIER_GROUP),
            Ok(Who::Special(SpecialWho::Group))
        );
        assert_eq!(who_from_str("alice", 0), Ok(Who::Name("alice".to_string())));
    }

    #[test]
    fn ambiguous_who_strings_are_errors() {
        for (who, needle) in [
            ("", "empty"),
            ("007", "leading zero"),
            ("4294967296", "32 bits"),
            ("NOBODY@", "unknown special"),
            ("a\0b", "NUL"),
        ] {
            let err = who_from_str(who, 0).unwrap_err();
            assert!(err.contains(needle), "{who:?}: {err}");
        }
    }

    #[test]
    fn decode_errors_name_the_offset() {
        // Truncated inside the second ACE's who.
        let cut = &NFS40_TWO_ACES[..NFS40_TWO_ACES.len() - 2];
        assert_eq!(
            decode_nfs40(cut).unwrap_err(),
            Nfs4CodecError::malformed(FORMAT_40, 44, "truncated who: need 4 bytes, 2 left")
        );
        // Non-zero padding after "OWNER@" (offset 4 + 12 + 4 + 6 = 26).
        let mut bad_pad = NFS40_TWO_ACES.to_vec();
        bad_pad[26] = 0xff;
        assert_eq!(
            decode_nfs40(&bad_pad).unwrap_err(),
            Nfs4CodecError::malformed(FORMAT_40, 26, "non-zero who padding byte 0xff")
        );
        // ACE type 4 does not exist.
        let mut bad_type = NFS40_TWO_ACES.to_vec();
        bad_type[7] = 4;
        assert!(matches!(
            decode_nfs40(&bad_type).unwrap_err(),
            Nfs4CodecError::Malformed { offset: 4, .. }
        ));
        // Trailing garbage.
        let mut trailing = NFS40_TWO_ACES.to_vec();
        trailing.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            decode_nfs40(&trailing).unwrap_err(),
            Nfs4CodecError::Malformed { offset: 48, .. }
        ));
    }

    #[test]
    fn huge_count_is_rejected_before_allocating() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        let err = decode_nfs40(&bytes).unwrap_err();
        assert!(
            err.to_string().contains("ACE count 4294967295 cannot fit"),
            "{err}"
        );
    }

    #[test]
    fn encoders_refuse_what_they_cannot_hold() {
        let acl = Nfs4Acl {
            flags: super::super::acl_flags::PROTECTED,
            aces: vec![],
        };
        assert!(matches!(
            encode_nfs40(&acl),
            Err(Nfs4CodecError::Unencodable { .. })
        ));
        let bad_invariant = Nfs4Acl {
            flags: 0,
            aces: vec![Nfs4Ace::new(Nfs4AceType::Allow, 0, 1, Who::Gid(5))],
        };
        assert!(matches!(
            encode_nfs41(&bad_invariant),
            Err(Nfs4CodecError::InvalidAce { index: 0, .. })
        ));
    }
}
