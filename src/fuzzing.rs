//! Decoder checks shared by the cargo-fuzz targets (`fuzz/`) and the crate's own tests.
//!
//! Each check takes arbitrary input and must never panic; whatever decodes must encode again
//! and decode to the same value (a decoder that accepts what its encoder cannot reproduce would
//! let a stored ACL change meaning on the next write).
use crate::acl::nfs4::{json as nfs4_json, ndr, nfs, text as nfs4_text, xdr};
use crate::acl::posix::PosixAcl;
use crate::acl::sd::{binary as sd_binary, json as sd_json, sddl, smbcacls};

/// One decoder under test: its name (the fuzz target's) and its check.
pub struct DecoderCheck {
    pub name: &'static str,
    pub check: fn(&[u8]),
}

/// Every decoder of untrusted input the project has.
pub const DECODERS: &[DecoderCheck] = &[
    DecoderCheck { name: "nfs4_nfs40", check: nfs40 },
    DecoderCheck { name: "nfs4_nfs41", check: nfs41 },
    DecoderCheck { name: "nfs4_xdr", check: nfs4_xdr },
    DecoderCheck { name: "nfs4_ndr", check: nfs4_ndr },
    DecoderCheck { name: "nfs4_text", check: nfs4_text_check },
    DecoderCheck { name: "nfs4_json", check: nfs4_json_check },
    DecoderCheck { name: "posix_xattr", check: posix_xattr },
    DecoderCheck { name: "sd_binary", check: sd_binary_check },
    DecoderCheck { name: "sd_sddl", check: sd_sddl },
    DecoderCheck { name: "sd_smbcacls", check: sd_smbcacls },
    DecoderCheck { name: "sd_json", check: sd_json_check },
    DecoderCheck { name: "lease_protocol", check: lease_protocol },
];

pub fn nfs40(data: &[u8]) {
    if let Ok(acl) = nfs::decode_nfs40(data) {
        let bytes = nfs::encode_nfs40(&acl).expect("a decoded NFSv4.0 ACL re-encodes");
        assert_eq!(nfs::decode_nfs40(&bytes).expect("re-encoded NFSv4.0 ACL decodes"), acl);
    }
}

pub fn nfs41(data: &[u8]) {
    if let Ok(acl) = nfs::decode_nfs41(data) {
        let bytes = nfs::encode_nfs41(&acl).expect("a decoded NFSv4.1 ACL re-encodes");
        assert_eq!(nfs::decode_nfs41(&bytes).expect("re-encoded NFSv4.1 ACL decodes"), acl);
    }
}

pub fn nfs4_xdr(data: &[u8]) {
    if let Ok(acl) = xdr::decode(data) {
        let bytes = xdr::encode(&acl).expect("a decoded xdr ACL re-encodes");
        assert_eq!(xdr::decode(&bytes).expect("re-encoded xdr ACL decodes"), acl);
    }
}

pub fn nfs4_ndr(data: &[u8]) {
    if let Ok(acl) = ndr::decode(data) {
        let bytes = ndr::encode(&acl).expect("a decoded ndr ACL re-encodes");
        assert_eq!(ndr::decode(&bytes).expect("re-encoded ndr ACL decodes"), acl);
    }
}

pub fn nfs4_text_check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(acl) = nfs4_text::parse(text) {
        // Text can refuse what it cannot express (ACL flags, retention bits); what it prints
        // must parse back to the same ACL.
        if let Ok(printed) = nfs4_text::to_text(&acl) {
            assert_eq!(nfs4_text::parse(&printed).expect("printed nfs4 text parses"), acl);
        }
    }
}

pub fn nfs4_json_check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(acl) = nfs4_json::from_json(text) {
        let printed = nfs4_json::to_json(&acl).expect("a decoded JSON ACL prints");
        assert_eq!(nfs4_json::from_json(&printed).expect("printed JSON parses"), acl);
    }
}

pub fn posix_xattr(data: &[u8]) {
    if let Ok(acl) = PosixAcl::from_xattr(data) {
        assert_eq!(PosixAcl::from_xattr(&acl.to_xattr()).expect("re-encoded POSIX ACL decodes"), acl);
    }
}

pub fn sd_binary_check(data: &[u8]) {
    if let Ok(sd) = sd_binary::decode(data) {
        let bytes = sd_binary::encode(&sd).expect("a decoded security descriptor re-encodes");
        assert_eq!(sd_binary::decode(&bytes).expect("re-encoded security descriptor decodes"), sd);
    }
}

pub fn sd_sddl(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(sd) = sddl::parse(text, None) {
        let printed = sddl::format(&sd, None).expect("a parsed SDDL descriptor prints");
        assert_eq!(sddl::parse(&printed, None).expect("printed SDDL parses"), sd);
    }
}

pub fn sd_smbcacls(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(sd) = smbcacls::parse(text, None) {
        let printed = smbcacls::format(&sd, true, None).expect("a parsed smbcacls descriptor prints");
        assert_eq!(smbcacls::parse(&printed, None).expect("printed smbcacls text parses"), sd);
    }
}

pub fn sd_json_check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(sd) = sd_json::from_json(text) {
        assert_eq!(sd_json::from_json(&sd_json::to_json(&sd)).expect("printed JSON parses"), sd);
    }
}

/// The lease bridge's messages: the bridge decodes what any process that can connect sends
/// before it checks who that is.
pub fn lease_protocol(data: &[u8]) {
    use crate::lease::protocol::decode;
    if let Ok(message) = decode(data) {
        assert_eq!(decode(&message.encode()).expect("an encoded message decodes"), message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        /// A bounded, in-process version of the fuzz run: random bytes into every decoder.
        #[test]
        fn decoders_never_panic_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            for decoder in DECODERS {
                (decoder.check)(&data);
            }
        }
    }
}
