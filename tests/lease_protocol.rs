//! The smbd ↔ bridge message format: round trips, hostile bytes, and a real exchange over a
//! SOCK_SEQPACKET pair with a descriptor and the peer's credentials.
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;

use nfsbridge::lease::failover::{GraceEntry, ReleaseScope};
use nfsbridge::lease::kernel::LeaseType;
use nfsbridge::lease::protocol::{
    decode, DecodeError, Message, PeerPolicy, PeerRefused, Provisional, WireUnit, MAX_STRING_LEN,
};
use nfsbridge::lease::table::{BreakUnit, Caching, GrantKind, InodeKey, OpenId};
use nfsbridge::lease::transport::{self, PeerCredentials};
use proptest::prelude::*;

fn caching() -> impl Strategy<Value = Caching> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(read, write, handle)| Caching {
        read,
        write,
        handle,
    })
}

fn inode() -> impl Strategy<Value = InodeKey> {
    (any::<u64>(), any::<u64>()).prop_map(|(dev, ino)| InodeKey { dev, ino })
}

fn unit() -> impl Strategy<Value = WireUnit> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(WireUnit::Lease),
        any::<u64>().prop_map(|file_id| WireUnit::Oplock { file_id }),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[ -~é/]{0,40}"
}

fn message() -> impl Strategy<Value = Message> {
    let kernel_lease = prop_oneof![
        Just(None),
        Just(Some(LeaseType::Read)),
        Just(Some(LeaseType::Write))
    ];
    let kind = prop_oneof![
        Just(GrantKind::Oplock),
        any::<[u8; 16]>().prop_map(GrantKind::Lease)
    ];
    prop_oneof![
        (
            any::<u64>(),
            text(),
            any::<u64>(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of((kind.clone(), caching(), text(), text()))
        )
            .prop_map(
                |(request_id, share_path, file_id, want_write, nonblocking, provisional)| {
                    Message::OpenDescription {
                        request_id,
                        share_path,
                        file_id,
                        want_write,
                        nonblocking,
                        provisional: provisional.map(
                            |(kind, requested, client_address, server_address)| Provisional {
                                kind,
                                requested,
                                client_address,
                                server_address,
                            },
                        ),
                    }
                }
            ),
        (any::<u64>(), inode(), any::<bool>(), caching(), any::<u32>()).prop_map(
            |(request_id, inode, writable, caching, bridge_fd)| Message::DescriptionOpened {
                request_id,
                inode,
                writable,
                caching,
                bridge_fd,
            }
        ),
        (any::<u64>(), any::<u32>())
            .prop_map(|(request_id, signo)| Message::DirectBreaks { request_id, signo }),
        (any::<u64>(), any::<u64>()).prop_map(|(request_id, break_timeout_ms)| {
            Message::DirectBreaksAccepted {
                request_id,
                break_timeout_ms,
            }
        }),
        (any::<u64>(), inode())
            .prop_map(|(request_id, inode)| Message::BreakSeen { request_id, inode }),
        (any::<u64>(), inode(), any::<u64>(), caching()).prop_map(
            |(request_id, inode, file_id, caching)| Message::AdjustGrant {
                request_id,
                inode,
                file_id,
                caching,
            }
        ),
        (
            any::<u64>(),
            inode(),
            any::<u64>(),
            kind,
            caching(),
            text(),
            text(),
            text()
        )
            .prop_map(
                |(
                    request_id,
                    inode,
                    file_id,
                    kind,
                    requested,
                    share_path,
                    client_address,
                    server_address,
                )| {
                    Message::Grant {
                        request_id,
                        inode,
                        file_id,
                        kind,
                        requested,
                        share_path,
                        client_address,
                        server_address,
                    }
                }
            ),
        (any::<u64>(), caching(), kernel_lease).prop_map(|(request_id, caching, kernel_lease)| {
            Message::Granted {
                request_id,
                caching,
                kernel_lease,
            }
        }),
        (any::<u64>(), inode(), any::<u64>()).prop_map(|(request_id, inode, file_id)| {
            Message::Close {
                request_id,
                inode,
                file_id,
            }
        }),
        (any::<u64>(), inode(), unit(), caching(), caching(), any::<u64>()).prop_map(
            |(request_id, inode, unit, current, break_to, release_until)| Message::BreakNotify {
                request_id,
                inode,
                unit,
                current,
                break_to,
                release_until,
            }
        ),
        (any::<u64>(), inode(), unit(), caching()).prop_map(
            |(request_id, inode, unit, caching)| Message::BreakAck {
                request_id,
                inode,
                unit,
                caching
            }
        ),
        any::<u64>().prop_map(|request_id| Message::Done { request_id }),
        (any::<u64>(), any::<i32>())
            .prop_map(|(request_id, errno)| Message::Failed { request_id, errno }),
        any::<u64>().prop_map(|request_id| Message::ListLeases { request_id }),
        any::<u64>().prop_map(|request_id| Message::LeaseList { request_id }),
    ]
}

fn scope() -> impl Strategy<Value = ReleaseScope> {
    prop_oneof![
        text().prop_map(ReleaseScope::ServerAddress),
        (any::<u64>(), text()).prop_map(|(dev, path)| ReleaseScope::FileSystem { dev, path }),
    ]
}

fn failover_message() -> impl Strategy<Value = Message> {
    let entry = (text(), text(), any::<u64>())
        .prop_map(|(address, path, remaining_ms)| GraceEntry { address, path, remaining_ms });
    prop_oneof![
        (any::<u64>(), scope(), any::<u64>())
            .prop_map(|(request_id, scope, timeout_ms)| Message::Release { request_id, scope, timeout_ms }),
        any::<u64>().prop_map(|request_id| Message::ReleaseReport { request_id }),
        (any::<u64>(), scope()).prop_map(|(request_id, scope)| Message::ReleaseRequest { request_id, scope }),
        (any::<u64>(), any::<bool>())
            .prop_map(|(request_id, releasing)| Message::ReleaseAnswer { request_id, releasing }),
        (any::<u64>(), text(), text(), any::<u64>()).prop_map(|(request_id, address, path, duration_ms)| {
            Message::Grace { request_id, address, path, duration_ms }
        }),
        any::<u64>().prop_map(|request_id| Message::GraceQuery { request_id }),
        (any::<u64>(), proptest::collection::vec(entry, 0..5))
            .prop_map(|(request_id, entries)| Message::GraceState { request_id, entries }),
    ]
}

proptest! {
    #[test]
    fn every_failover_message_round_trips(message in failover_message()) {
        prop_assert_eq!(decode(&message.encode()), Ok(message));
    }

    #[test]
    fn every_proper_prefix_of_a_failover_message_is_refused(message in failover_message()) {
        let bytes = message.encode();
        for len in 0..bytes.len() {
            prop_assert!(decode(&bytes[..len]).is_err());
        }
    }
    #[test]
    fn every_message_round_trips(message in message()) {
        prop_assert_eq!(decode(&message.encode()), Ok(message));
    }

    #[test]
    fn every_proper_prefix_of_a_message_is_refused(message in message()) {
        let bytes = message.encode();
        for len in 0..bytes.len() {
            prop_assert!(decode(&bytes[..len]).is_err(), "prefix of {} bytes accepted", len);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert_eq!(decode(&longer), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_decodes_reencodes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(message) = decode(&bytes) {
            prop_assert_eq!(message.encode(), bytes);
        }
    }

    #[test]
    fn corrupted_messages_never_panic(message in message(), position in any::<usize>(), value in any::<u8>()) {
        let mut bytes = message.encode();
        let position = position % bytes.len();
        bytes[position] = value;
        if let Ok(decoded) = decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }
}

#[test]
fn malformed_headers_and_fields_are_named() {
    assert_eq!(decode(b""), Err(DecodeError::Truncated));
    assert_eq!(
        decode(b"XX\x01\x08\0\0\0\0\0\0\0\0"),
        Err(DecodeError::BadMagic)
    );
    assert_eq!(
        decode(b"NB\x01\x08\0\0\0\0\0\0\0\0"),
        Err(DecodeError::UnsupportedVersion(1)),
        "version 1 had no file id in OpenDescription"
    );
    assert_eq!(
        decode(b"NB\x02\x08\0\0\0\0\0\0\0\0"),
        Err(DecodeError::UnsupportedVersion(2)),
        "version 2 had no provisional grant"
    );
    assert_eq!(
        decode(b"NB\x03\x08\0\0\0\0\0\0\0\0"),
        Err(DecodeError::UnsupportedVersion(3)),
        "version 3 had no release_until in BreakNotify"
    );
    assert_eq!(
        decode(b"NB\x04\x08\0\0\0\0\0\0\0\0"),
        Err(DecodeError::UnsupportedVersion(4)),
        "version 4 had no bridge_fd in DescriptionOpened and no direct breaks"
    );
    assert_eq!(
        decode(b"NB\x05\xee\0\0\0\0\0\0\0\0"),
        Err(DecodeError::UnknownTag(0xee))
    );
    assert_eq!(
        decode(b"NB\x05\x08\x05\0\0\0\0\0\0\0"),
        Ok(Message::Done { request_id: 5 })
    );
    // Granted with an unknown caching bit (0x8) and with a lease type of 3.
    assert_eq!(
        decode(b"NB\x05\x04\0\0\0\0\0\0\0\0\x08\x00"),
        Err(DecodeError::InvalidValue {
            field: "caching",
            value: 8
        })
    );
    assert_eq!(
        decode(b"NB\x05\x04\0\0\0\0\0\0\0\0\x07\x03"),
        Err(DecodeError::InvalidValue {
            field: "kernel lease",
            value: 3
        })
    );
    // OpenDescription whose string claims more than PATH_MAX, and one that is not UTF-8.
    let mut long = b"NB\x05\x01\0\0\0\0\0\0\0\0".to_vec();
    long.extend_from_slice(&((MAX_STRING_LEN + 1) as u16).to_le_bytes());
    assert_eq!(
        decode(&long),
        Err(DecodeError::StringTooLong(MAX_STRING_LEN + 1))
    );
    let mut latin1 = b"NB\x05\x01\0\0\0\0\0\0\0\0\x01\x00\xe9\x07\0\0\0\0\0\0\0\x00".to_vec();
    assert_eq!(decode(&latin1), Err(DecodeError::NotUtf8));
    latin1[14] = b'/';
    assert_eq!(
        decode(&latin1),
        Ok(Message::OpenDescription {
            request_id: 0,
            share_path: "/".into(),
            file_id: 7,
            want_write: false,
            nonblocking: false,
            provisional: None,
        })
    );
}

#[test]
fn wire_units_take_the_pid_of_the_connection() {
    let key = [3u8; 16];
    assert_eq!(
        WireUnit::Lease(key).with_pid(42),
        BreakUnit::Lease { smbd_pid: 42, key }
    );
    let oplock = BreakUnit::Oplock(OpenId {
        smbd_pid: 42,
        file_id: 9,
    });
    assert_eq!(WireUnit::from_unit(oplock), WireUnit::Oplock { file_id: 9 });
    assert_eq!(WireUnit::from_unit(oplock).with_pid(42), oplock);
}

#[test]
fn peer_policy_admits_configured_uids_and_exact_share_roots() {
    let policy = PeerPolicy {
        allowed_uids: vec![0],
        share_roots: vec!["/srv/share".into()],
    };
    let root = PeerCredentials {
        pid: 1234,
        uid: 0,
        gid: 0,
    };
    assert_eq!(policy.admit(root), Ok(1234));
    assert_eq!(
        policy.admit(PeerCredentials { uid: 1000, ..root }),
        Err(PeerRefused::Uid(1000))
    );
    assert_eq!(policy.check_share("/srv/share"), Ok(()));
    for other in [
        "/srv/share/",
        "/srv/share/../etc",
        "/srv",
        "/srv/sharex",
        "",
    ] {
        assert_eq!(
            policy.check_share(other),
            Err(PeerRefused::Share(other.into()))
        );
    }
}

#[test]
fn a_request_with_a_descriptor_crosses_a_seqpacket_pair() {
    let (smbd_side, daemon_side) = transport::seqpacket_pair().unwrap();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(b"shared bytes").unwrap();

    let request = Message::OpenDescription {
        request_id: 77,
        share_path: "/srv/share".into(),
        file_id: 0x0123_4567_89ab_cdef,
        want_write: true,
        nonblocking: true,
        provisional: None,
    };
    transport::send_message(smbd_side.as_fd(), &request.encode(), &[file.as_fd()]).unwrap();

    let received = transport::recv_message(daemon_side.as_fd())
        .unwrap()
        .expect("a message");
    let decoded = decode(&received.bytes).unwrap();
    assert_eq!(decoded, request);
    assert_eq!(received.fds.len(), decoded.descriptors_carried());
    // The descriptor shares the sender's open file description: same offset, same bytes.
    let mut passed = std::fs::File::from(received.fds.into_iter().next().unwrap());
    passed.seek(SeekFrom::Start(7)).unwrap();
    assert_eq!(
        file.stream_position().unwrap(),
        7,
        "one file description, one offset"
    );
    let mut tail = String::new();
    passed.read_to_string(&mut tail).unwrap();
    assert_eq!(tail, "bytes");

    // The daemon learns who sent it from the kernel, not from the message.
    let peer = transport::peer_credentials(daemon_side.as_fd()).unwrap();
    assert_eq!(peer.pid, std::process::id());

    // Message boundaries hold, and a closed peer reads as end of stream.
    transport::send_message(
        smbd_side.as_fd(),
        &Message::Done { request_id: 1 }.encode(),
        &[],
    )
    .unwrap();
    transport::send_message(
        smbd_side.as_fd(),
        &Message::Done { request_id: 2 }.encode(),
        &[],
    )
    .unwrap();
    for expected in [1, 2] {
        let packet = transport::recv_message(daemon_side.as_fd())
            .unwrap()
            .unwrap();
        assert!(packet.fds.is_empty());
        assert_eq!(decode(&packet.bytes).unwrap().request_id(), expected);
    }
    drop(smbd_side);
    assert!(transport::recv_message(daemon_side.as_fd())
        .unwrap()
        .is_none());
}

#[test]
fn oversized_packets_and_too_many_descriptors_are_refused() {
    let (sender, receiver) = transport::seqpacket_pair().unwrap();
    let huge = vec![0u8; transport::MAX_MESSAGE_LEN + 100];
    transport::send_message(sender.as_fd(), &huge, &[]).unwrap();
    let error = transport::recv_message(receiver.as_fd()).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);

    let file = tempfile::tempfile().unwrap();
    let too_many = vec![file.as_fd(); transport::MAX_FDS_PER_MESSAGE + 1];
    let error = transport::send_message(sender.as_fd(), b"x", &too_many).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);

    // A hostile peer sending more descriptors than the receiver makes room for: the kernel
    // truncates the control data (MSG_CTRUNC) and the message is refused.
    let flood = vec![file.as_fd(); 3 * transport::MAX_FDS_PER_MESSAGE];
    let mut space = vec![
        std::mem::MaybeUninit::<u8>::uninit();
        rustix::cmsg_space!(ScmRights(3 * transport::MAX_FDS_PER_MESSAGE))
    ];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&flood)));
    let bytes = Message::Done { request_id: 3 }.encode();
    rustix::net::sendmsg(
        &sender,
        &[std::io::IoSlice::new(&bytes)],
        &mut control,
        rustix::net::SendFlags::empty(),
    )
    .unwrap();
    let error = transport::recv_message(receiver.as_fd()).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
}
