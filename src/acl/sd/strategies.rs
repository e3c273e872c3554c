//! proptest strategies for security descriptors, for tests anywhere in the crate.
//!
//! [`arb_security_descriptor`] yields any valid model value (what [`SecurityDescriptor::validate`]
//! accepts); the narrower strategies yield what a text format can carry without loss.
use proptest::collection::vec;
use proptest::prelude::*;

use crate::acl::sd::{control, Ace, AceType, Acl, SecurityDescriptor};
use crate::acl::sid::Sid;

/// Any SID, biased towards the well-known and Unix ones.
pub fn arb_sid() -> impl Strategy<Value = Sid> {
    prop_oneof![
        Just(Sid::world()),
        Just(Sid::creator_owner()),
        Just(Sid::builtin_administrators()),
        Just(Sid::local_system()),
        any::<u32>().prop_map(Sid::unix_user),
        any::<u32>().prop_map(Sid::unix_group),
        (0u64..=(1 << 48) - 1, vec(any::<u32>(), 0..=Sid::MAX_SUB_AUTHORITIES))
            .prop_map(|(authority, subs)| Sid::new(authority, &subs).expect("bounded by construction")),
    ]
}

/// An ACE of one of the four known types.
pub fn arb_known_ace() -> impl Strategy<Value = Ace> {
    let ace_type = prop_oneof![
        Just(AceType::AccessAllowed),
        Just(AceType::AccessDenied),
        Just(AceType::SystemAudit),
        Just(AceType::SystemAlarm),
    ];
    (ace_type, any::<u8>(), any::<u32>(), arb_sid()).prop_map(|(t, flags, mask, sid)| Ace::new(t, flags, mask, sid))
}

/// Any valid ACE, including unknown types kept verbatim.
pub fn arb_ace() -> impl Strategy<Value = Ace> {
    let other = (4u8..=255, any::<u8>(), (0usize..12).prop_flat_map(|words| vec(any::<u8>(), words * 4)))
        .prop_map(|(code, flags, body)| Ace::other(code, flags, body));
    prop_oneof![4 => arb_known_ace(), 1 => other]
}

pub fn arb_acl() -> impl Strategy<Value = Acl> {
    (prop_oneof![Just(Acl::REVISION), Just(Acl::REVISION_3), Just(Acl::REVISION_DS)], vec(arb_ace(), 0..8))
        .prop_map(|(revision, aces)| Acl { revision, aces })
}

/// An ACL, or none; when none, sometimes a NULL ACL (the PRESENT bit without an ACL).
fn with_present_bit(acl: impl Strategy<Value = Acl>, bit: u16) -> impl Strategy<Value = (Option<Acl>, u16)> {
    prop_oneof![
        acl.prop_map(move |acl| (Some(acl), bit)),
        Just((None, 0)),
        Just((None, bit)),
    ]
}

fn assemble(
    control_bits: u16,
    owner: Option<Sid>,
    group: Option<Sid>,
    (dacl, dacl_bit): (Option<Acl>, u16),
    (sacl, sacl_bit): (Option<Acl>, u16),
) -> SecurityDescriptor {
    let present = control::DACL_PRESENT | control::SACL_PRESENT;
    let control = (control_bits & !present) | control::SELF_RELATIVE | dacl_bit | sacl_bit;
    SecurityDescriptor { revision: SecurityDescriptor::REVISION, control, owner, group, dacl, sacl }
}

/// Any valid security descriptor.
pub fn arb_security_descriptor() -> impl Strategy<Value = SecurityDescriptor> {
    (
        any::<u16>(),
        proptest::option::of(arb_sid()),
        proptest::option::of(arb_sid()),
        with_present_bit(arb_acl(), control::DACL_PRESENT),
        with_present_bit(arb_acl(), control::SACL_PRESENT),
    )
        .prop_map(|(bits, owner, group, dacl, sacl)| assemble(bits, owner, group, dacl, sacl))
}

/// The ACE flags SDDL can name (all but the reserved 0x20).
fn arb_sddl_flags() -> impl Strategy<Value = u8> {
    any::<u8>().prop_map(|f| f & !0x20)
}

fn arb_sddl_acl() -> impl Strategy<Value = Acl> {
    vec((arb_known_ace(), arb_sddl_flags()).prop_map(|(ace, flags)| Ace { flags, ..ace }), 0..8).prop_map(Acl::new)
}

/// Descriptors SDDL carries without loss: ACL revision 2, known ACE types, nameable ACE
/// flags, and of the control bits only SELF_RELATIVE, the PRESENT bits and the
/// P / AR / AI flags of each ACL.
pub fn arb_sddl_security_descriptor() -> impl Strategy<Value = SecurityDescriptor> {
    let acl_flags = control::DACL_PROTECTED
        | control::DACL_AUTO_INHERIT_REQ
        | control::DACL_AUTO_INHERITED
        | control::SACL_PROTECTED
        | control::SACL_AUTO_INHERIT_REQ
        | control::SACL_AUTO_INHERITED;
    (
        any::<u16>().prop_map(move |bits| bits & acl_flags),
        proptest::option::of(arb_sid()),
        proptest::option::of(arb_sid()),
        with_present_bit(arb_sddl_acl(), control::DACL_PRESENT),
        with_present_bit(arb_sddl_acl(), control::SACL_PRESENT),
    )
        .prop_map(|(bits, owner, group, dacl, sacl)| {
            let mut sd = assemble(bits, owner, group, dacl, sacl);
            // ACL flags are written inside their D: / S: section, so only with the ACL.
            if sd.control & control::DACL_PRESENT == 0 {
                sd.control &= !(control::DACL_PROTECTED | control::DACL_AUTO_INHERIT_REQ | control::DACL_AUTO_INHERITED);
            }
            if sd.control & control::SACL_PRESENT == 0 {
                sd.control &= !(control::SACL_PROTECTED | control::SACL_AUTO_INHERIT_REQ | control::SACL_AUTO_INHERITED);
            }
            sd
        })
}

/// Descriptors the smbcacls text carries without loss: a DACL (possibly empty, never NULL)
/// of ALLOWED/DENIED ACEs with revision 2, no SACL (smbcacls never shows one), any control
/// word with SELF_RELATIVE.
pub fn arb_smbcacls_security_descriptor() -> impl Strategy<Value = SecurityDescriptor> {
    let ace = (any::<bool>(), any::<u8>(), any::<u32>(), arb_sid()).prop_map(|(allow, flags, mask, sid)| {
        if allow {
            Ace::allowed(sid, mask, flags)
        } else {
            Ace::denied(sid, mask, flags)
        }
    });
    let dacl = prop_oneof![
        vec(ace, 0..8).prop_map(|aces| (Some(Acl::new(aces)), control::DACL_PRESENT)),
        Just((None, 0)),
    ];
    (any::<u16>(), proptest::option::of(arb_sid()), proptest::option::of(arb_sid()), dacl)
        .prop_map(|(bits, owner, group, dacl)| assemble(bits, owner, group, dacl, (None, 0)))
}
