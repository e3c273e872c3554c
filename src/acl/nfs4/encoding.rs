//! One switch over the binary encodings, and the xattr names each one uses by default.
use super::error::Nfs4CodecError;
use super::{ndr, nfs, xdr, Nfs4Acl};

/// A binary NFSv4 ACL encoding.
///
/// The xattr name does not decide the layout on its own: Samba's `encoding = nfs` writes
/// `system.nfs4_acl` as NFSv4.1 `nfsacl41` under its default `nfs4acl_xattr:version = 41`,
/// while the Linux NFS client's `system.nfs4_acl` is the NFSv4.0 layout. Pick the variant
/// from configuration, not from the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nfs4Encoding {
    /// RFC 7530 `nfsace4<>` (the Linux client's `system.nfs4_acl`; Samba `encoding = nfs`,
    /// `version = 40`). See [`nfs`].
    Nfs40,
    /// RFC 8881 `nfsacl41` (the Linux client's `system.nfs4_dacl`/`system.nfs4_sacl`;
    /// Samba `encoding = nfs`, `version = 41`). See [`nfs`].
    Nfs41,
    /// Samba/TrueNAS `nfsacl41i`. See [`xdr`].
    Xdr,
    /// Samba `nfs4acl` NDR. See [`ndr`]. Encodes as Samba does by default (`a_version` 1,
    /// masks 0); decoding keeps only the ACL. Use [`ndr::decode`]/[`ndr::encode`] to keep
    /// the version and masks.
    Ndr,
}

impl Nfs4Encoding {
    pub const ALL: [Nfs4Encoding; 4] = [
        Nfs4Encoding::Nfs40,
        Nfs4Encoding::Nfs41,
        Nfs4Encoding::Xdr,
        Nfs4Encoding::Ndr,
    ];

    /// Decodes a value of this encoding. Never panics; see the module docs for strictness.
    pub fn decode(self, bytes: &[u8]) -> Result<Nfs4Acl, Nfs4CodecError> {
        match self {
            Nfs4Encoding::Nfs40 => nfs::decode_nfs40(bytes),
            Nfs4Encoding::Nfs41 => nfs::decode_nfs41(bytes),
            Nfs4Encoding::Xdr => xdr::decode(bytes),
            Nfs4Encoding::Ndr => ndr::decode(bytes).map(|blob| blob.acl),
        }
    }

    /// Encodes an ACL; refuses (never narrows) what the encoding cannot hold.
    pub fn encode(self, acl: &Nfs4Acl) -> Result<Vec<u8>, Nfs4CodecError> {
        match self {
            Nfs4Encoding::Nfs40 => nfs::encode_nfs40(acl),
            Nfs4Encoding::Nfs41 => nfs::encode_nfs41(acl),
            Nfs4Encoding::Xdr => xdr::encode(acl),
            Nfs4Encoding::Ndr => ndr::encode(&ndr::NdrAcl::samba_default(acl.clone())),
        }
    }

    /// The xattr names this encoding is stored under by default, the usual one first:
    /// `system.nfs4_acl`; `system.nfs4_dacl`, `system.nfs4_sacl`;
    /// `security.nfs4acl_xdr` (Samba's default), `system.nfs4_acl_xdr` (TrueNAS);
    /// `security.nfs4acl_ndr`.
    pub fn default_xattr_names(self) -> &'static [&'static str] {
        match self {
            Nfs4Encoding::Nfs40 => &["system.nfs4_acl"],
            Nfs4Encoding::Nfs41 => &["system.nfs4_dacl", "system.nfs4_sacl"],
            Nfs4Encoding::Xdr => &["security.nfs4acl_xdr", "system.nfs4_acl_xdr"],
            Nfs4Encoding::Ndr => &["security.nfs4acl_ndr"],
        }
    }

    /// The usual xattr name (the first of [`Self::default_xattr_names`]).
    pub fn default_xattr_name(self) -> &'static str {
        self.default_xattr_names()[0]
    }

    /// The value of Samba's `nfs4acl_xattr:encoding` for this encoding.
    pub fn samba_encoding_name(self) -> &'static str {
        match self {
            Nfs4Encoding::Nfs40 | Nfs4Encoding::Nfs41 => "nfs",
            Nfs4Encoding::Xdr => "xdr",
            Nfs4Encoding::Ndr => "ndr",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::strategies;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_names_match_samba_truenas_and_the_linux_client() {
        assert_eq!(Nfs4Encoding::Nfs40.default_xattr_name(), "system.nfs4_acl");
        assert_eq!(Nfs4Encoding::Nfs41.default_xattr_name(), "system.nfs4_dacl");
        assert_eq!(
            Nfs4Encoding::Xdr.default_xattr_name(),
            "security.nfs4acl_xdr"
        );
        assert!(Nfs4Encoding::Xdr
            .default_xattr_names()
            .contains(&"system.nfs4_acl_xdr"));
        assert_eq!(
            Nfs4Encoding::Ndr.default_xattr_name(),
            "security.nfs4acl_ndr"
        );
    }

    #[test]
    fn dispatch_reaches_each_codec() {
        let acl = Nfs4Acl::default();
        // Empty ACLs: Nfs40 = count only; Nfs41/Xdr = flags + count; Ndr = 16-byte header.
        let lengths: Vec<usize> = Nfs4Encoding::ALL
            .iter()
            .map(|e| e.encode(&acl).unwrap().len())
            .collect();
        assert_eq!(lengths, [4, 8, 8, 16]);
        for encoding in Nfs4Encoding::ALL {
            let bytes = encoding.encode(&acl).unwrap();
            assert_eq!(encoding.decode(&bytes).unwrap(), acl, "{encoding:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_encoding_round_trips(
            (encoding, acl) in prop_oneof![
                strategies::nfs40_acl().prop_map(|a| (Nfs4Encoding::Nfs40, a)),
                strategies::nfs41_acl().prop_map(|a| (Nfs4Encoding::Nfs41, a)),
                strategies::xdr_acl().prop_map(|a| (Nfs4Encoding::Xdr, a)),
                strategies::ndr_acl().prop_map(|a| (Nfs4Encoding::Ndr, a)),
            ]
        ) {
            let bytes = encoding.encode(&acl).unwrap();
            prop_assert_eq!(encoding.decode(&bytes).unwrap(), acl);
        }

        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for encoding in Nfs4Encoding::ALL {
                let _ = encoding.decode(&bytes);
            }
        }

        #[test]
        fn decoders_never_panic_on_mutated_valid_input(
            (encoding, acl) in prop_oneof![
                strategies::nfs41_acl().prop_map(|a| (Nfs4Encoding::Nfs41, a)),
                strategies::nfs40_acl().prop_map(|a| (Nfs4Encoding::Nfs40, a)),
                strategies::xdr_acl().prop_map(|a| (Nfs4Encoding::Xdr, a)),
                strategies::ndr_acl().prop_map(|a| (Nfs4Encoding::Ndr, a)),
            ],
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encoding.encode(&acl).unwrap();
            for (at, value) in &edits {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = *value;
                }
            }
            // Whatever a mutated blob decodes to must itself be valid and re-encodable.
            if let Ok(decoded) = encoding.decode(&bytes) {
                prop_assert!(decoded.validate().is_ok());
                prop_assert!(encoding.encode(&decoded).is_ok());
            }
            let truncated = &bytes[..cut.index(bytes.len() + 1)];
            let _ = encoding.decode(truncated);
        }
    }
}
