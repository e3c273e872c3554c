//! Self-relative binary security descriptors (MS-DTYP 2.4.6), the form smbd hands a VFS
//! module and Samba stores in `security.NTACL`.
//!
//! Layout written by [`encode`], the one Samba's NDR marshalling of `security_descriptor`
//! produces (`librpc/idl/security.idl`: relative pointers are laid out in field order):
//!
//! ```text
//! 0   revision (1)  sbz1 (0)  control (u16 LE)
//! 4   owner offset  group offset  sacl offset  dacl offset   (u32 LE each, 0 = absent)
//! 20  owner SID, group SID, SACL, DACL   -- in this order, each present one right after
//!                                           the previous, no padding (all are multiples of 4)
//! ```
//!
//! Windows itself writes SACL, DACL, owner, group; [`decode`] accepts any placement, so
//! `encode(decode(b)) == b` holds exactly for input in Samba's layout.
//!
//! The decoder is strict, and every error names the byte offset: SD and ACL revisions, the
//! reserved bytes, the SELF_RELATIVE bit, offsets inside the buffer and past the header, the
//! DACL/SACL offset against its PRESENT bit, the ACL size against the ACEs it holds, every
//! ACE size (at least its contents, a multiple of 4, inside the ACL), SID sub-authority
//! counts, and no bytes after the last component. ACEs of the four known types must be
//! exactly header + mask + SID: Samba would drop the extra bytes, and dropping them here
//! would break the byte-identical round trip, so they are refused. ACEs of other types
//! (object, callback, resource attribute...) are kept verbatim as [`AceType::Other`].
use std::fmt;

use crate::acl::sd::{control, Ace, AceType, Acl, SdInvalid, SecurityDescriptor};
use crate::acl::sid::{Sid, SidDecodeError};

const HEADER_LEN: usize = 20;
const ACL_HEADER_LEN: usize = 8;
const ACE_HEADER_LEN: usize = 4;

/// What was wrong with a binary security descriptor, and at which byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("security descriptor byte {offset}: {problem}")]
pub struct SdDecodeError {
    /// Offset from the start of the descriptor of the field that is wrong.
    pub offset: usize,
    pub problem: DecodeProblem,
}

/// The kinds of [`SdDecodeError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeProblem {
    Truncated { what: &'static str, needed: usize, available: usize },
    Revision(u8),
    Reserved { field: &'static str, value: u32 },
    NotSelfRelative { control: u16 },
    OffsetInHeader { what: &'static str, value: u32 },
    OffsetOutOfBounds { what: &'static str, value: u32, len: usize },
    OffsetWithoutPresentBit { what: &'static str },
    Sid { what: &'static str, error: SidDecodeError },
    AclRevision(u8),
    AclSize { declared: u16, used: usize },
    AclOutOfBounds { declared: u16, available: usize },
    AceSize { size: u16, reason: &'static str },
    AceTrailingBytes { ace_type: u8, size: u16, used: usize },
    TrailingBytes { end: usize, len: usize },
}

impl fmt::Display for DecodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeProblem::Truncated { what, needed, available } => {
                write!(f, "{what} truncated: needs {needed} bytes, {available} available")
            }
            DecodeProblem::Revision(value) => write!(f, "revision {value}, expected 1"),
            DecodeProblem::Reserved { field, value } => write!(f, "reserved field {field} is {value:#x}, must be 0"),
            DecodeProblem::NotSelfRelative { control } => {
                write!(f, "control {control:#06x} lacks SELF_RELATIVE: not a self-relative descriptor")
            }
            DecodeProblem::OffsetInHeader { what, value } => {
                write!(f, "{what} offset {value} points into the 20-byte header")
            }
            DecodeProblem::OffsetOutOfBounds { what, value, len } => {
                write!(f, "{what} offset {value} is outside the {len}-byte buffer")
            }
            DecodeProblem::OffsetWithoutPresentBit { what } => {
                write!(f, "{what} offset is set but the {what}_PRESENT control bit is clear")
            }
            DecodeProblem::Sid { what, error } => write!(f, "{what}: {error}"),
            DecodeProblem::AclRevision(value) => write!(f, "ACL revision {value}, expected 2, 3 or 4"),
            DecodeProblem::AclSize { declared, used } => {
                write!(f, "ACL size field says {declared} bytes but header and ACEs use {used}")
            }
            DecodeProblem::AclOutOfBounds { declared, available } => {
                write!(f, "ACL size {declared} runs past the end of the buffer ({available} bytes left)")
            }
            DecodeProblem::AceSize { size, reason } => write!(f, "ACE size {size}: {reason}"),
            DecodeProblem::AceTrailingBytes { ace_type, size, used } => write!(
                f,
                "ACE of type {ace_type} has size {size} but its mask and SID use {used}; extra bytes are not supported"
            ),
            DecodeProblem::TrailingBytes { end, len } => {
                write!(f, "{} trailing bytes after the last component (which ends at {end} of {len})", len - end)
            }
        }
    }
}

fn fail<T>(offset: usize, problem: DecodeProblem) -> Result<T, SdDecodeError> {
    Err(SdDecodeError { offset, problem })
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Decodes a self-relative security descriptor. Never panics; see the module docs for what
/// is checked.
pub fn decode(bytes: &[u8]) -> Result<SecurityDescriptor, SdDecodeError> {
    if bytes.len() < HEADER_LEN {
        return fail(0, DecodeProblem::Truncated { what: "header", needed: HEADER_LEN, available: bytes.len() });
    }
    if bytes[0] != SecurityDescriptor::REVISION {
        return fail(0, DecodeProblem::Revision(bytes[0]));
    }
    // Sbz1 is the resource-manager control byte when RM_CONTROL_VALID is set; Samba neither
    // keeps nor writes it, so a non-zero value could not survive a round trip.
    if bytes[1] != 0 {
        return fail(1, DecodeProblem::Reserved { field: "Sbz1", value: bytes[1].into() });
    }
    let control = read_u16(bytes, 2);
    if control & control::SELF_RELATIVE == 0 {
        return fail(2, DecodeProblem::NotSelfRelative { control });
    }
    let mut end = HEADER_LEN;
    let owner = decode_component(bytes, 4, "owner", &mut end, decode_sid_at)?;
    let group = decode_component(bytes, 8, "group", &mut end, decode_sid_at)?;
    let sacl = decode_acl_component(bytes, 12, "SACL", control & control::SACL_PRESENT != 0, &mut end)?;
    let dacl = decode_acl_component(bytes, 16, "DACL", control & control::DACL_PRESENT != 0, &mut end)?;
    if end != bytes.len() {
        return fail(end, DecodeProblem::TrailingBytes { end, len: bytes.len() });
    }
    Ok(SecurityDescriptor { revision: SecurityDescriptor::REVISION, control, owner, group, dacl, sacl })
}

/// Decodes one component at an offset; returns it and its length.
type ComponentDecoder<T> = fn(&[u8], usize, &'static str) -> Result<(T, usize), SdDecodeError>;

/// Reads the offset field at `field_at` and, when non-zero, the component it points to.
/// `end` is raised to the end of the component.
fn decode_component<T>(
    bytes: &[u8],
    field_at: usize,
    what: &'static str,
    end: &mut usize,
    decode_at: ComponentDecoder<T>,
) -> Result<Option<T>, SdDecodeError> {
    let value = read_u32(bytes, field_at);
    if value == 0 {
        return Ok(None);
    }
    let start = value as usize;
    if start < HEADER_LEN {
        return fail(field_at, DecodeProblem::OffsetInHeader { what, value });
    }
    if start >= bytes.len() {
        return fail(field_at, DecodeProblem::OffsetOutOfBounds { what, value, len: bytes.len() });
    }
    let (component, len) = decode_at(bytes, start, what)?;
    *end = (*end).max(start + len);
    Ok(Some(component))
}

fn decode_acl_component(
    bytes: &[u8],
    field_at: usize,
    what: &'static str,
    present: bool,
    end: &mut usize,
) -> Result<Option<Acl>, SdDecodeError> {
    // A PRESENT bit with offset 0 is a NULL ACL (kept as None with the bit set); an offset
    // without the bit is an ACL Windows ignores and Samba honours: refuse rather than pick.
    if !present && read_u32(bytes, field_at) != 0 {
        return fail(field_at, DecodeProblem::OffsetWithoutPresentBit { what });
    }
    decode_component(bytes, field_at, what, end, decode_acl_at)
}

fn decode_sid_at(bytes: &[u8], start: usize, what: &'static str) -> Result<(Sid, usize), SdDecodeError> {
    Sid::decode_prefix(&bytes[start..]).map_err(|error| SdDecodeError { offset: start, problem: DecodeProblem::Sid { what, error } })
}

fn decode_acl_at(bytes: &[u8], start: usize, what: &'static str) -> Result<(Acl, usize), SdDecodeError> {
    let available = bytes.len() - start;
    if available < ACL_HEADER_LEN {
        return fail(start, DecodeProblem::Truncated { what, needed: ACL_HEADER_LEN, available });
    }
    let revision = bytes[start];
    if !Acl::is_valid_revision(revision) {
        return fail(start, DecodeProblem::AclRevision(revision));
    }
    if bytes[start + 1] != 0 {
        return fail(start + 1, DecodeProblem::Reserved { field: "ACL Sbz1", value: bytes[start + 1].into() });
    }
    let declared = read_u16(bytes, start + 2);
    let count = read_u16(bytes, start + 4);
    let sbz2 = read_u16(bytes, start + 6);
    if sbz2 != 0 {
        return fail(start + 6, DecodeProblem::Reserved { field: "ACL Sbz2", value: sbz2.into() });
    }
    let size = usize::from(declared);
    if size < ACL_HEADER_LEN {
        return fail(start + 2, DecodeProblem::AclSize { declared, used: ACL_HEADER_LEN });
    }
    if size > available {
        return fail(start + 2, DecodeProblem::AclOutOfBounds { declared, available });
    }
    let acl_end = start + size;
    let mut at = start + ACL_HEADER_LEN;
    let mut aces = Vec::with_capacity(usize::from(count).min(size / 16));
    for _ in 0..count {
        let (ace, len) = decode_ace_at(&bytes[..acl_end], at)?;
        aces.push(ace);
        at += len;
    }
    if at != acl_end {
        return fail(start + 2, DecodeProblem::AclSize { declared, used: at - start });
    }
    Ok((Acl { revision, aces }, size))
}

/// Decodes the ACE at `at`; `bytes` ends where the ACL ends.
fn decode_ace_at(bytes: &[u8], at: usize) -> Result<(Ace, usize), SdDecodeError> {
    let available = bytes.len() - at;
    if available < ACE_HEADER_LEN {
        return fail(at, DecodeProblem::Truncated { what: "ACE header (inside the ACL size)", needed: ACE_HEADER_LEN, available });
    }
    let type_code = bytes[at];
    let flags = bytes[at + 1];
    let size = read_u16(bytes, at + 2);
    let len = usize::from(size);
    if len < ACE_HEADER_LEN {
        return fail(at + 2, DecodeProblem::AceSize { size, reason: "smaller than the 4-byte ACE header" });
    }
    if len % 4 != 0 {
        return fail(at + 2, DecodeProblem::AceSize { size, reason: "not a multiple of 4 (MS-DTYP 2.4.4.1)" });
    }
    if len > available {
        return fail(at + 2, DecodeProblem::AceSize { size, reason: "runs past the end of the ACL" });
    }
    let body = &bytes[at + ACE_HEADER_LEN..at + len];
    let ace_type = match type_code {
        AceType::ACCESS_ALLOWED => AceType::AccessAllowed,
        AceType::ACCESS_DENIED => AceType::AccessDenied,
        AceType::SYSTEM_AUDIT => AceType::SystemAudit,
        AceType::SYSTEM_ALARM => AceType::SystemAlarm,
        _ => return Ok((Ace::other(type_code, flags, body.to_vec()), len)),
    };
    if body.len() < 4 {
        return fail(at + 2, DecodeProblem::AceSize { size, reason: "too small for an access mask" });
    }
    let mask = read_u32(body, 0);
    let (sid, sid_len) = Sid::decode_prefix(&body[4..])
        .map_err(|error| SdDecodeError { offset: at + 8, problem: DecodeProblem::Sid { what: "ACE SID", error } })?;
    let used = 8 + sid_len;
    if used != len {
        return fail(at + 2, DecodeProblem::AceTrailingBytes { ace_type: type_code, size, used });
    }
    Ok((Ace { ace_type, flags, mask, sid }, len))
}

/// Encodes `sd` in self-relative form, in Samba's layout (see the module docs).
///
/// The control word written is `sd.control` with SELF_RELATIVE set, and DACL_PRESENT /
/// SACL_PRESENT set when the ACL is there (the model's rule: encoders derive them from the
/// fields; a PRESENT bit without an ACL is kept, it is a NULL ACL). Fails, naming the
/// place, when the descriptor cannot be written: revision other than 1, an ACL that
/// [`Acl::validate`] refuses (sizes past the 16-bit fields, inconsistent unknown ACEs).
pub fn encode(sd: &SecurityDescriptor) -> Result<Vec<u8>, SdInvalid> {
    if sd.revision != SecurityDescriptor::REVISION {
        return Err(SdInvalid { location: "revision".into(), problem: format!("{} (expected 1)", sd.revision) });
    }
    if let Some(sacl) = &sd.sacl {
        sacl.validate("sacl")?;
    }
    if let Some(dacl) = &sd.dacl {
        dacl.validate("dacl")?;
    }
    let mut control = sd.control | control::SELF_RELATIVE;
    if sd.dacl.is_some() {
        control |= control::DACL_PRESENT;
    }
    if sd.sacl.is_some() {
        control |= control::SACL_PRESENT;
    }
    let mut out = Vec::with_capacity(encoded_len(sd));
    out.push(sd.revision);
    out.push(0);
    out.extend_from_slice(&control.to_le_bytes());
    out.resize(HEADER_LEN, 0);
    if let Some(owner) = &sd.owner {
        patch_offset(&mut out, 4);
        owner.write_bytes(&mut out);
    }
    if let Some(group) = &sd.group {
        patch_offset(&mut out, 8);
        group.write_bytes(&mut out);
    }
    if let Some(sacl) = &sd.sacl {
        patch_offset(&mut out, 12);
        write_acl(sacl, &mut out);
    }
    if let Some(dacl) = &sd.dacl {
        patch_offset(&mut out, 16);
        write_acl(dacl, &mut out);
    }
    Ok(out)
}

fn encoded_len(sd: &SecurityDescriptor) -> usize {
    HEADER_LEN
        + sd.owner.as_ref().map_or(0, Sid::byte_len)
        + sd.group.as_ref().map_or(0, Sid::byte_len)
        + sd.sacl.as_ref().map_or(0, Acl::wire_len)
        + sd.dacl.as_ref().map_or(0, Acl::wire_len)
}

/// Points the offset field at `field_at` to the current end of `out`.
fn patch_offset(out: &mut [u8], field_at: usize) {
    // The whole descriptor is at most 20 + 2 * 68 + 2 * 65535 bytes, far below 4 GiB.
    let offset = out.len() as u32;
    out[field_at..field_at + 4].copy_from_slice(&offset.to_le_bytes());
}

/// Writes a validated ACL (sizes already checked against the 16-bit fields).
fn write_acl(acl: &Acl, out: &mut Vec<u8>) {
    out.push(acl.revision);
    out.push(0);
    out.extend_from_slice(&(acl.wire_len() as u16).to_le_bytes());
    out.extend_from_slice(&(acl.aces.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    for ace in &acl.aces {
        out.push(ace.ace_type.code());
        out.push(ace.flags);
        out.extend_from_slice(&(ace.wire_len() as u16).to_le_bytes());
        match &ace.ace_type {
            AceType::Other { body, .. } => out.extend_from_slice(body),
            _ => {
                out.extend_from_slice(&ace.mask.to_le_bytes());
                ace.sid.write_bytes(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::sd::strategies::arb_security_descriptor;
    use crate::acl::sd::{ace_flags, sddl};
    use proptest::prelude::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    /// O:BAG:SYD:PAI(A;OICI;FA;;;WD) laid out as Samba marshalls it: header, owner at 20,
    /// group at 36, no SACL, DACL at 48.
    const SAMBA_LAYOUT: &str = concat!(
        "0100", "0494", "14000000", "24000000", "00000000", "30000000",
        "010200000000000520000000", "20020000",
        "010100000000000512000000",
        "02001c0001000000", "00031400ff011f00", "010100000000000100000000",
    );

    /// A descriptor Windows sent over DRSUAPI (Samba's source4/torture/ndr/drsuapi.c): the
    /// DACL first, then owner and group.
    const WINDOWS_LAYOUT: &str = concat!(
        "0100048068000000840000000000000014000000020054000300000000001400",
        "9400020001010000000000050b00000000002400fd010f000105000000000005",
        "1500000016d8d82d03e4c374658bdd610002000000001400ff010f0001010000",
        "000000051200000001050000000000051500000016d8d82d03e4c374658bdd61",
        "0002000001050000000000051500000016d8d82d03e4c374658bdd6100020000",
    );

    #[test]
    fn samba_layout_is_byte_identical() {
        let bytes = hex(SAMBA_LAYOUT);
        let sd = decode(&bytes).unwrap();
        assert_eq!(sd, sddl::parse("O:BAG:SYD:PAI(A;OICI;FA;;;WD)", None).unwrap());
        assert_eq!(encode(&sd).unwrap(), bytes);
    }

    #[test]
    fn windows_layout_is_read_and_rewritten_in_samba_order() {
        let bytes = hex(WINDOWS_LAYOUT);
        let sd = decode(&bytes).unwrap();
        let domain: Sid = "S-1-5-21-769185814-1958994947-1641909093".parse().unwrap();
        assert_eq!(
            sddl::format(&sd, Some(&domain)).unwrap(),
            "O:DAG:DAD:(A;;LCRPLORC;;;AU)(A;;CCLCSWRPWPDTLOCRSDRCWDWO;;;DA)(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY)"
        );
        let rewritten = encode(&sd).unwrap();
        assert_eq!(rewritten.len(), bytes.len());
        // Owner at 20, group at 48, no SACL, DACL at 76.
        assert_eq!(&rewritten[4..20], &hex("1400000030000000000000004c000000")[..]);
        assert_eq!(decode(&rewritten).unwrap(), sd);
    }

    #[test]
    fn empty_descriptor() {
        // Samba's source4/torture/ndr/winreg.c: a bare self-relative header.
        let bytes = hex("0100008000000000000000000000000000000000");
        let sd = decode(&bytes).unwrap();
        assert_eq!(sd, SecurityDescriptor::new());
        assert_eq!(encode(&sd).unwrap(), bytes);
    }

    #[test]
    fn null_dacl_keeps_its_present_bit() {
        // DACL_PRESENT with a zero DACL offset: a NULL DACL.
        let bytes = hex("0100048000000000000000000000000000000000");
        let sd = decode(&bytes).unwrap();
        assert_eq!((sd.dacl.as_ref(), sd.control & control::DACL_PRESENT), (None, control::DACL_PRESENT));
        assert_eq!(encode(&sd).unwrap(), bytes);
        assert_eq!(sddl::format(&sd, None).unwrap(), "D:NO_ACCESS_CONTROL");
    }

    #[test]
    fn unknown_ace_types_are_kept_verbatim() {
        // DACL with an ACCESS_ALLOWED_OBJECT ACE (type 5): mask 0x100, flags 1 (object type
        // present), a GUID, SID S-1-1-0; then an ordinary ACE.
        let bytes = hex(concat!(
            "0100", "0480", "00000000", "00000000", "00000000", "14000000",
            "0200440002000000",
            "05", "02", "2800", "00010000", "01000000", "00112233445566778899aabbccddeeff", "010100000000000100000000",
            "00001400ff011f00010100000000000512000000",
        ));
        let sd = decode(&bytes).unwrap();
        let dacl = sd.dacl.as_ref().unwrap();
        assert_eq!(dacl.aces[0].ace_type.code(), 5);
        assert_eq!(dacl.aces[0].flags, ace_flags::CONTAINER_INHERIT);
        assert_eq!(dacl.aces[0].mask, 0x100);
        assert_eq!(dacl.aces[0].sid, Sid::null());
        assert_eq!(dacl.aces[1], Ace::allowed(Sid::local_system(), 0x1f01ff, 0));
        assert_eq!(encode(&sd).unwrap(), bytes);
    }

    #[test]
    fn errors_name_offset_and_problem() {
        let good = hex(SAMBA_LAYOUT);
        let patched = |at: usize, with: &[u8]| {
            let mut bytes = good.clone();
            bytes[at..at + with.len()].copy_from_slice(with);
            bytes
        };
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0, 0, 0, 0]);
        let cases: Vec<(Vec<u8>, usize, &str)> = vec![
            (good[..19].to_vec(), 0, "header truncated"),
            (patched(0, &[2]), 0, "revision 2"),
            (patched(1, &[1]), 1, "Sbz1"),
            (patched(2, &[0x04, 0x14]), 2, "SELF_RELATIVE"),
            (patched(4, &[8, 0, 0, 0]), 4, "into the 20-byte header"),
            (patched(8, &[76, 0, 0, 0]), 8, "outside the 76-byte buffer"),
            (patched(12, &[48, 0, 0, 0]), 12, "SACL_PRESENT"),
            (patched(20, &[3]), 20, "SID revision 3"),
            (patched(21, &[16]), 20, "sub-authority count 16"),
            (patched(21, &[15]), 20, "truncated"),
            (patched(48, &[5]), 48, "ACL revision 5"),
            (patched(49, &[1]), 49, "ACL Sbz1"),
            (patched(50, &[0x20, 0]), 50, "past the end of the buffer"),
            (patched(50, &[0x18, 0]), 58, "runs past the end of the ACL"),
            (patched(52, &[2, 0]), 76, "ACE header"),
            (patched(52, &[0, 0]), 50, "use 8"),
            (patched(54, &[1, 0]), 54, "ACL Sbz2"),
            (patched(58, &[0x02, 0]), 58, "smaller than the 4-byte"),
            (patched(58, &[0x13, 0]), 58, "multiple of 4"),
            (patched(58, &[0x10, 0]), 64, "truncated"),
            (patched(65, &[0]), 58, "extra bytes"),
            (trailing, 76, "4 trailing bytes"),
        ];
        for (bytes, offset, needle) in cases {
            let error = decode(&bytes).unwrap_err();
            assert_eq!(error.offset, offset, "{error}");
            assert!(error.to_string().contains(needle), "expected {needle:?} in: {error}");
        }
    }

    #[test]
    fn encode_refuses_what_cannot_be_written() {
        let mut sd = SecurityDescriptor::new();
        sd.revision = 2;
        assert!(encode(&sd).is_err());
        let mut sd = SecurityDescriptor::new();
        sd.dacl = Some(Acl::new(vec![Ace::allowed(Sid::world(), 1, 0); 4000]));
        assert!(encode(&sd).unwrap_err().problem.contains("more than 65535"));
        sd.dacl = Some(Acl::new(vec![Ace::other(9, 0, vec![0; 6])]));
        assert!(encode(&sd).unwrap_err().problem.contains("multiple of 4"));
        // The model's rule: PRESENT bits follow the fields.
        sd.dacl = Some(Acl::new(vec![]));
        let bytes = encode(&sd).unwrap();
        assert_eq!(decode(&bytes).unwrap().control, control::SELF_RELATIVE | control::DACL_PRESENT);
    }

    proptest! {
        #[test]
        fn round_trips(sd in arb_security_descriptor()) {
            let bytes = encode(&sd).unwrap();
            prop_assert_eq!(decode(&bytes).unwrap(), sd);
            prop_assert_eq!(encode(&decode(&bytes).unwrap()).unwrap(), bytes);
        }

        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_encodings_decode_or_fail_cleanly(
            sd in arb_security_descriptor(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut bytes = encode(&sd).unwrap();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            if let Ok(decoded) = decode(&bytes) {
                // Whatever decodes is a valid model value and survives a round trip.
                prop_assert_eq!(decode(&encode(&decoded).unwrap()).unwrap(), decoded);
            }
        }
    }
}
