//! The lease bridge daemon with real kernel leases: each test starts its own `nfsbridge
//! lease-bridge` process (own socket, own share directory) and plays smbd through
//! `BridgeClient`; local processes are this test process opening the files by path, which the
//! kernel treats as foreign opens. Where an smbd must die or run as another uid, it is a small
//! Python process speaking the wire format directly. Every wait is bounded.
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nfsbridge::lease::client::{BreakRequest, BridgeClient};
use nfsbridge::lease::fcntl;
use nfsbridge::lease::kernel::{self, LeaseState, LeaseType};
use nfsbridge::lease::protocol::{self, Provisional, WireUnit};
use nfsbridge::lease::table::{Caching, GrantKind, InodeKey};
use nfsbridge::lease::transport;

mod common;
use common::{eventually, exclusive, reference, Bridge, WAIT};

const CLIENT: &str = "ipv4:127.0.0.2:50000";
const SERVER: &str = "ipv4:127.0.0.1:445";

fn inode_of(path: &Path) -> InodeKey {
    let metadata = std::fs::metadata(path).unwrap();
    InodeKey {
        dev: metadata.dev(),
        ino: metadata.ino(),
    }
}

/// A local (non-SMB) open of `path`, closed at once.
fn local_open(path: &Path, write: bool) -> std::io::Result<()> {
    let _opening = exclusive();
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map(drop)
}

fn errno(error: &std::io::Error) -> i32 {
    error
        .raw_os_error()
        .unwrap_or_else(|| panic!("not an OS error: {error}"))
}

/// Waits until the client has received at least `count` break requests.
fn break_requests(client: &mut BridgeClient, count: usize) -> Vec<BreakRequest> {
    let mut received = Vec::new();
    let start = Instant::now();
    while received.len() < count && start.elapsed() < WAIT {
        received.extend(client.take_break_requests().unwrap());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(received.len(), count, "break requests received");
    received
}

fn grant_rwh(bridge: &Bridge, client: &mut BridgeClient, inode: InodeKey, file_id: u64) -> Caching {
    client
        .grant(
            inode,
            file_id,
            GrantKind::Lease([file_id as u8; 16]),
            Caching::RWH,
            &bridge.share,
            CLIENT,
            SERVER,
        )
        .expect("grant")
}

#[test]
fn opens_share_one_description_and_a_local_reader_breaks_the_lease_until_the_ack() {
    let bridge = Bridge::start(&[]);
    let path = bridge.file("shared.txt", b"0123456789");
    let mut client = bridge.client();
    let reference = reference(&path);
    let (first, inode, writable) = client
        .open_description(reference.as_fd(), &bridge.share, 1, true, true)
        .expect("first open");
    let (second, again, _) = client
        .open_description(reference.as_fd(), &bridge.share, 2, true, true)
        .expect("second open of the same inode");
    assert_eq!(inode, inode_of(&path));
    assert_eq!(again, inode);
    assert!(writable);
    // One open file description: a write through one is read through the other, and they
    // share the file offset.
    rustix::io::pwrite(&first, b"AB", 2).unwrap();
    let mut buffer = [0u8; 10];
    rustix::io::pread(&second, &mut buffer, 0).unwrap();
    assert_eq!(&buffer, b"01AB456789");
    rustix::fs::seek(&first, rustix::fs::SeekFrom::Start(7)).unwrap();
    assert_eq!(
        rustix::fs::seek(&second, rustix::fs::SeekFrom::Current(0)).unwrap(),
        7
    );
    assert!(
        client.take_break_requests().unwrap().is_empty(),
        "no break between SMB opens"
    );

    assert_eq!(grant_rwh(&bridge, &mut client, inode, 1), Caching::RWH);
    assert_eq!(
        kernel::lease_state(first.as_fd()).unwrap(),
        LeaseState::Held(LeaseType::Write),
        "the kernel lease is on the shared description"
    );

    let refused = local_open(&path, false).expect_err("a local reader waits for the SMB client");
    assert_eq!(errno(&refused), libc::EWOULDBLOCK);
    let [request] = <[BreakRequest; 1]>::try_from(break_requests(&mut client, 1)).unwrap();
    assert_eq!(request.inode, inode);
    assert_eq!(request.unit, WireUnit::Lease([1; 16]));
    assert_eq!(request.current, Caching::RWH);
    assert_eq!(
        request.break_to,
        Caching::NONE,
        "a writable description cannot hold F_RDLCK: the break goes to none"
    );
    // Until the client answers, the local reader stays out.
    assert_eq!(
        errno(&local_open(&path, false).unwrap_err()),
        libc::EWOULDBLOCK
    );

    let acked = Instant::now();
    client
        .break_ack(request.request_id, inode, request.unit, Caching::NONE)
        .unwrap();
    assert!(
        eventually(WAIT, || local_open(&path, false).is_ok()),
        "the local reader gets in after the acknowledgement"
    );
    assert!(acked.elapsed() < Duration::from_secs(2));
    assert_eq!(
        kernel::lease_state(first.as_fd()).unwrap(),
        LeaseState::Unleased
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"01AB456789");
    client.close(inode, 1).unwrap();
    client.close(inode, 2).unwrap();
}

#[test]
fn a_client_that_never_acknowledges_loses_the_lease_at_the_break_timeout() {
    let bridge = Bridge::start(&["--break-timeout", "1"]);
    let path = bridge.file("silent.txt", b"x");
    let mut client = bridge.client();
    let (description, inode, _) = client
        .open_description(reference(&path).as_fd(), &bridge.share, 1, true, true)
        .unwrap();
    assert_eq!(grant_rwh(&bridge, &mut client, inode, 1), Caching::RWH);
    let started = Instant::now();
    assert_eq!(
        errno(&local_open(&path, true).unwrap_err()),
        libc::EWOULDBLOCK
    );
    let first = break_requests(&mut client, 1);
    assert_eq!(first[0].break_to, Caching::NONE);
    // No acknowledgement: the bridge forces the unit down after one second and tells smbd.
    assert!(eventually(WAIT, || local_open(&path, true).is_ok()));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "released after the break timeout, not before: {waited:?}"
    );
    let revoked = break_requests(&mut client, 1);
    assert_eq!(
        revoked[0].break_to,
        Caching::NONE,
        "smbd is told to drop it"
    );
    assert_eq!(
        kernel::lease_state(description.as_fd()).unwrap(),
        LeaseState::Unleased
    );
    assert!(bridge.log_text().contains("break timed out"));
}

/// The wire format of `src/lease/protocol.rs` (version 5) for the Python "smbd"s below: a
/// message header, and a string field.
const PYTHON_WIRE: &str = r#"
import struct
def header(tag, request_id):
    return b"NB" + bytes([5, tag]) + struct.pack("<Q", request_id)
def string(text):
    data = text.encode()
    return struct.pack("<H", len(data)) + data
"#;

/// An "smbd" that opens a file through the bridge, is granted a batch oplock, then sleeps
/// without reading its socket.
const PYTHON_SMBD: &str = r#"
import os, socket, struct, sys, time
signal_alarm = __import__("signal").alarm(60)
sock_path, share, path = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sock_path)
if len(sys.argv) > 4 and sys.argv[4] == "list":
    try:
        s.send(header(10, 1))
        reply = s.recv(8192)
    except (BrokenPipeError, ConnectionResetError):
        reply = b""
    if not reply:
        print("eof", flush=True)
    elif reply[3] == 9:
        print("failed %d" % struct.unpack_from("<i", reply, 12)[0], flush=True)
    else:
        print("tag %d" % reply[3], flush=True)
    sys.exit(0)
ref = os.open(path, os.O_PATH)
socket.send_fds(s, [header(1, 1) + string(share) + struct.pack("<Q", 9) + bytes([3])], [ref])
message, fds, _, _ = socket.recv_fds(s, 8192, 4)
assert message[3] == 2, message
dev, ino = struct.unpack_from("<QQ", message, 12)
s.send(header(3, 2) + struct.pack("<QQQ", dev, ino, 9) + bytes([1, 7])
       + string(share) + string("ipv4:127.0.0.9:1") + string("ipv4:127.0.0.1:445"))
reply = s.recv(8192)
assert reply[3] == 4, reply
print("granted %d %d" % (reply[12], reply[13]), flush=True)
time.sleep(60)
"#;

fn python_smbd(bridge: &Bridge, path: &Path, uid: Option<u32>, mode: &str) -> (Child, String) {
    let mut command = Command::new("python3");
    command
        .args(["-c", &format!("{PYTHON_WIRE}{PYTHON_SMBD}")])
        .arg(&bridge.socket)
        .arg(&bridge.share)
        .arg(path)
        .arg(mode)
        .stdout(Stdio::piped());
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let mut child = {
        let _forking = exclusive();
        command.spawn().expect("python3 runs")
    };
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_string())
}

#[test]
fn an_smbd_that_dies_mid_break_has_its_lease_dropped_at_once() {
    // Default break timeout (40 s): only the death can release the lease within the test.
    let bridge = Bridge::start(&[]);
    let path = bridge.file("dying.txt", b"x");
    let (mut smbd, granted) = python_smbd(&bridge, &path, None, "grant");
    assert_eq!(granted, "granted 7 2", "RWH backed by a write lease");
    assert_eq!(
        errno(&local_open(&path, false).unwrap_err()),
        libc::EWOULDBLOCK
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        errno(&local_open(&path, false).unwrap_err()),
        libc::EWOULDBLOCK,
        "the silent smbd still holds it"
    );
    let killed = Instant::now();
    smbd.kill().unwrap();
    smbd.wait().unwrap();
    assert!(eventually(WAIT, || local_open(&path, false).is_ok()));
    assert!(killed.elapsed() < Duration::from_secs(2));
    // The bridge logs the drop after releasing the lease: the line may follow the open.
    assert!(eventually(WAIT, || bridge
        .log_text()
        .contains("opens of a departed smbd dropped")));
}

fn thousand_files_broken_at_once(bridge: &Bridge) {
    const FILES: u64 = 1000;
    let mut client = bridge.client();
    let mut files = Vec::new();
    for file_id in 0..FILES {
        let path = bridge.file(&format!("f{file_id}"), b"x");
        let (description, inode, _) = client
            .open_description(reference(&path).as_fd(), &bridge.share, file_id, true, true)
            .unwrap();
        let granted = client
            .grant(
                inode,
                file_id,
                GrantKind::Oplock,
                Caching::RWH,
                &bridge.share,
                CLIENT,
                SERVER,
            )
            .unwrap();
        assert_eq!(granted, Caching::RWH);
        // The bridge keeps the description (and the lease); this "smbd" needs no descriptor.
        drop(description);
        files.push((path, inode));
    }
    for (path, _) in &files {
        assert_eq!(
            errno(&local_open(path, false).unwrap_err()),
            libc::EWOULDBLOCK
        );
    }
    let requests = break_requests(&mut client, FILES as usize);
    for request in requests {
        assert_eq!(request.break_to, Caching::NONE);
        client
            .break_ack(
                request.request_id,
                request.inode,
                request.unit,
                Caching::NONE,
            )
            .unwrap();
    }
    for (path, _) in &files {
        assert!(
            eventually(WAIT, || local_open(path, false).is_ok()),
            "{} still leased",
            path.display()
        );
    }
}

#[test]
fn a_thousand_leased_files_broken_at_once_all_end() {
    let bridge = Bridge::start(&[]);
    thousand_files_broken_at_once(&bridge);
}

#[test]
fn breaks_end_even_when_the_signal_queue_overflows() {
    let bridge = Bridge::start(&[]);
    // Sixteen queued signals at most: the kernel falls back to SIGIO without si_fd and the
    // bridge must find the breaking leases by asking each description.
    let pid = rustix::process::Pid::from_raw(bridge.child.id() as i32).unwrap();
    rustix::process::prlimit(
        Some(pid),
        rustix::process::Resource::Sigpending,
        rustix::process::Rlimit {
            current: Some(16),
            maximum: Some(16),
        },
    )
    .unwrap();
    thousand_files_broken_at_once(&bridge);
    assert!(bridge.log_text().contains("signal queue overflowed"));
}

#[test]
fn peers_and_requests_outside_the_policy_are_refused() {
    let bridge = Bridge::start(&["--allow-uid", "65533"]);
    let metadata = std::fs::metadata(&bridge.socket).unwrap();
    assert_eq!(metadata.mode() & 0o777, 0o600, "socket is root's alone");
    assert_eq!(metadata.uid(), 0);
    let path = bridge.file("policy.txt", b"x");
    // Open the socket's mode so that the uid check itself is what refuses.
    std::fs::set_permissions(&bridge.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (_, line) = python_smbd(&bridge, &path, Some(65534), "list");
    assert_eq!(line, "eof", "uid 65534 is not allowed: connection closed");
    let (_, line) = python_smbd(&bridge, &path, Some(65533), "list");
    assert_eq!(
        line,
        format!("failed {}", libc::EPERM),
        "an allowed uid that is not root may not list leases"
    );
    assert!(bridge.log_text().contains("connection refused"));

    let mut client = bridge.client();
    let outside = bridge.dir.path().join("outside.txt");
    {
        let _opening = exclusive();
        std::fs::write(&outside, b"x").unwrap();
    }
    let refused = client
        .open_description(reference(&path).as_fd(), "/tmp", 1, false, true)
        .expect_err("not a configured share");
    assert_eq!(errno(&refused), libc::EACCES);
    let refused = client
        .open_description(reference(&outside).as_fd(), &bridge.share, 1, false, true)
        .expect_err("a file outside the share");
    assert_eq!(errno(&refused), libc::EACCES);
    let directory = reference(Path::new(&bridge.share));
    let refused = client
        .open_description(directory.as_fd(), &bridge.share, 1, false, true)
        .expect_err("not a regular file");
    assert_eq!(errno(&refused), libc::EINVAL);
    let (_, inode, _) = client
        .open_description(reference(&path).as_fd(), &bridge.share, 1, false, true)
        .unwrap();
    let refused = client
        .grant(
            inode,
            1,
            GrantKind::Oplock,
            Caching::RWH,
            "/tmp",
            CLIENT,
            SERVER,
        )
        .expect_err("grant for another share");
    assert_eq!(errno(&refused), libc::EACCES);

    // A malformed packet closes that connection only.
    let raw = transport::connect_seqpacket(&bridge.socket).unwrap();
    transport::send_message(raw.as_fd(), b"NB\x03\xee garbage", &[]).unwrap();
    assert!(transport::recv_message(raw.as_fd()).unwrap().is_none());
    assert!(bridge.log_text().contains("malformed message"));
    assert_eq!(grant_rwh(&bridge, &mut client, inode, 1), Caching::RWH);
}

/// Removes the attribute flags it set, so the temporary directory can be deleted.
struct Chattr<'a>(&'a Path, &'static str);

impl Drop for Chattr<'_> {
    fn drop(&mut self) {
        let _forking = exclusive();
        let _ = Command::new("chattr").arg(self.1).arg(self.0).status();
    }
}

#[test]
fn immutable_and_append_only_files_get_a_read_only_description() {
    let bridge = Bridge::start(&[]);
    let mut client = bridge.client();
    let plain = bridge.file("plain.txt", b"x");
    let (_, _, writable) = client
        .open_description(reference(&plain).as_fd(), &bridge.share, 1, false, true)
        .unwrap();
    assert!(
        writable,
        "root's description is O_RDWR when the file allows it"
    );
    for (flag, name) in [("+i", "immutable.txt"), ("+a", "append-only.txt")] {
        let path = bridge.file(name, b"x");
        let set = {
            let _forking = exclusive();
            Command::new("chattr")
                .arg(flag)
                .arg(&path)
                .status()
                .unwrap()
        };
        if !set.success() {
            eprintln!("chattr {flag} not supported here: skipping {name}");
            continue;
        }
        let _undo = Chattr(&path, if flag == "+i" { "-i" } else { "-a" });
        let reference = reference(&path);
        let refused = client
            .open_description(reference.as_fd(), &bridge.share, 2, true, true)
            .expect_err("write access to an immutable or append-only file");
        assert_eq!(errno(&refused), libc::EPERM, "{name}");
        let (description, _, writable) = client
            .open_description(reference.as_fd(), &bridge.share, 3, false, true)
            .unwrap();
        assert!(!writable, "{name}: read-only description");
        let mut byte = [0u8; 1];
        assert_eq!(rustix::io::pread(&description, &mut byte, 0).unwrap(), 1);
        assert!(rustix::io::pwrite(&description, b"y", 0).is_err());
    }
}

#[test]
fn an_open_against_a_local_lease_fails_with_ewouldblock_until_it_is_released() {
    let bridge = Bridge::start(&[]);
    let path = bridge.file("local.txt", b"x");
    let local = {
        let _opening = exclusive();
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap()
    };
    // SIGWINCH is ignored by default: the break signal does not hurt this test process.
    fcntl::set_signal(local.as_fd(), libc::SIGWINCH).unwrap();
    fcntl::set_lease(local.as_fd(), Some(LeaseType::Write)).unwrap();
    let mut client = bridge.client();
    let reference = reference(&path);
    let refused = client
        .open_description(reference.as_fd(), &bridge.share, 1, false, true)
        .expect_err("a local lease holds the bridge off");
    assert_eq!(errno(&refused), libc::EWOULDBLOCK);
    assert_eq!(
        fcntl::get_lease(local.as_fd()).unwrap(),
        None,
        "the bridge's O_RDWR open broke the local lease to none"
    );
    fcntl::set_lease(local.as_fd(), None).unwrap();
    let (_, _, writable) = client
        .open_description(reference.as_fd(), &bridge.share, 1, false, true)
        .expect("open once the local lease is gone");
    assert!(writable);
}

#[test]
fn the_lease_listing_shows_holders_opens_and_the_break_in_progress() {
    let bridge = Bridge::start(&[]);
    let path = bridge.file("listed.txt", b"x");
    let other = bridge.file("unleased.txt", b"x");
    let mut client = bridge.client();
    let (_, inode, _) = client
        .open_description(reference(&path).as_fd(), &bridge.share, 5, true, true)
        .unwrap();
    client
        .open_description(reference(&path).as_fd(), &bridge.share, 6, false, true)
        .unwrap();
    client
        .open_description(reference(&other).as_fd(), &bridge.share, 7, false, true)
        .unwrap();
    assert_eq!(grant_rwh(&bridge, &mut client, inode, 5), Caching::RWH);

    let listing = client.list_leases().unwrap();
    assert_eq!(listing.bridge_pid, bridge.child.id());
    assert_eq!(listing.inodes.len(), 2);
    let row = listing
        .inodes
        .iter()
        .find(|row| row.ino == inode.ino)
        .unwrap();
    assert_eq!(row.path, path.to_str().unwrap());
    assert_eq!(row.share_path, bridge.share);
    assert_eq!(row.kernel_lease.as_deref(), Some("write"));
    assert!(row.description_writable);
    assert_eq!(row.opens.len(), 2);
    let [holder] = row.holders.as_slice() else {
        panic!("one holder: {:?}", row.holders)
    };
    assert_eq!(holder.smbd_pid, std::process::id());
    assert_eq!(holder.file_id, 5);
    assert_eq!(holder.client_address, CLIENT);
    assert_eq!(holder.server_address, SERVER);
    assert_eq!(holder.lease_key.as_deref(), Some("05".repeat(16).as_str()));
    assert_eq!(holder.caching, "RWH");
    assert!(row.pending_break.is_none());

    // A local reader starts a break; the listing shows it until the client answers.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(local_open(&path, false).is_err());
    let [request] = <[BreakRequest; 1]>::try_from(break_requests(&mut client, 1)).unwrap();
    let listing = client.list_leases().unwrap();
    let row = listing
        .inodes
        .iter()
        .find(|row| row.ino == inode.ino)
        .unwrap();
    let pending = row.pending_break.as_ref().expect("break in progress");
    assert_eq!(pending.kernel_target.as_deref(), Some("read"));
    assert_eq!(pending.smb_target, "");
    assert_eq!(pending.waiting.len(), 1);
    assert_eq!(pending.waiting[0].smbd_pid, std::process::id());
    assert!(pending.started_unix_ms + 1000 >= before && pending.started_unix_ms <= before + 5000);

    // The CLI: JSON, the human table, the filters, and its refusal of non-root callers.
    let cli = |args: &[&str], uid: Option<u32>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nfsbridge"));
        command
            .arg("leases")
            .arg("--socket")
            .arg(&bridge.socket)
            .args(args);
        if let Some(uid) = uid {
            command.uid(uid);
        }
        let _forking = exclusive();
        command.output().unwrap()
    };
    let json = cli(&["--json"], None);
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let shown: nfsbridge::lease::listing::LeaseListing =
        serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(shown.inodes.len(), 2);
    let table = String::from_utf8(cli(&[], None).stdout).unwrap();
    let line = table
        .lines()
        .find(|line| line.starts_with(path.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no line for the file in:\n{table}"));
    for expected in ["write", CLIENT, SERVER, "RWH", "to read since"] {
        assert!(
            line.contains(expected),
            "{expected:?} missing from {line:?}"
        );
    }
    assert!(table.contains("(1 opens)"), "{table}");
    let by_ip: nfsbridge::lease::listing::LeaseListing =
        serde_json::from_slice(&cli(&["--json", "--ip", "127.0.0.2"], None).stdout).unwrap();
    assert_eq!(by_ip.inodes.len(), 1);
    let other_ip: nfsbridge::lease::listing::LeaseListing =
        serde_json::from_slice(&cli(&["--json", "--ip", "127.0.0.3"], None).stdout).unwrap();
    assert!(other_ip.inodes.is_empty());
    let by_path: nfsbridge::lease::listing::LeaseListing =
        serde_json::from_slice(&cli(&["--json", "--path", other.to_str().unwrap()], None).stdout)
            .unwrap();
    assert_eq!(by_path.inodes.len(), 1);
    assert_eq!(by_path.inodes[0].ino, inode_of(&other).ino);
    let refused = cli(&[], Some(65534));
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only root"));

    client
        .break_ack(request.request_id, inode, request.unit, Caching::NONE)
        .unwrap();
    assert!(eventually(WAIT, || client
        .list_leases()
        .unwrap()
        .inodes
        .iter()
        .all(
            |row| row.pending_break.is_none() && row.kernel_lease.is_none()
        )));
}

#[test]
fn closing_every_open_closes_the_description_and_sigterm_stops_the_bridge() {
    let mut bridge = Bridge::start(&[]);
    let path = bridge.file("closed.txt", b"x");
    let mut client = bridge.client();
    let (description, inode, _) = client
        .open_description(reference(&path).as_fd(), &bridge.share, 1, true, true)
        .unwrap();
    client
        .open_description(reference(&path).as_fd(), &bridge.share, 2, true, true)
        .unwrap();
    assert_eq!(grant_rwh(&bridge, &mut client, inode, 1), Caching::RWH);
    client.close(inode, 1).unwrap();
    // The lease goes with the only holder; the description stays for open 2.
    assert!(eventually(WAIT, || kernel::lease_state(
        description.as_fd()
    )
    .unwrap()
        == LeaseState::Unleased));
    assert_eq!(client.list_leases().unwrap().inodes.len(), 1);
    client.close(inode, 2).unwrap();
    assert!(eventually(WAIT, || client
        .list_leases()
        .unwrap()
        .inodes
        .is_empty()));
    drop(description);

    let pid = rustix::process::Pid::from_raw(bridge.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = bridge.child.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
    assert!(!bridge.socket.exists(), "the socket is removed");
    let eof = client.take_break_requests().unwrap_err();
    assert_eq!(eof.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[test]
fn a_stalled_bridge_times_requests_out_and_its_late_replies_are_dropped() {
    let bridge = Bridge::start(&[]);
    let path = bridge.file("stalled.txt", b"x");
    let mut client = bridge.client();
    client.set_timeout(Duration::from_millis(300));
    let (_, inode, _) = client
        .open_description(reference(&path).as_fd(), &bridge.share, 1, true, true)
        .unwrap();
    let pid = rustix::process::Pid::from_raw(bridge.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let asked = Instant::now();
    let timed_out = client
        .grant(
            inode,
            1,
            GrantKind::Oplock,
            Caching::RWH,
            &bridge.share,
            CLIENT,
            SERVER,
        )
        .expect_err("a stopped bridge never answers");
    assert_eq!(errno(&timed_out), libc::ETIMEDOUT);
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "bounded wait: {waited:?}"
    );
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    // The late `Granted` arrives first and must not be taken for the answer to the listing.
    let listing = client.list_leases().expect("the bridge answers again");
    assert_eq!(listing.inodes.len(), 1);
    assert_eq!(listing.inodes[0].kernel_lease.as_deref(), Some("write"));
    assert!(client.take_break_requests().unwrap().is_empty());
}

#[test]
fn a_grant_made_with_the_open_is_backed_at_once_and_lowered_by_adjust_grant() {
    let bridge = Bridge::start(&[]);
    let path = bridge.file("provisional.txt", b"contents");
    let mut client = bridge.client();
    let reference = reference(&path);
    let provisional = Provisional {
        kind: GrantKind::Lease([7; 16]),
        requested: Caching::RWH,
        client_address: CLIENT.into(),
        server_address: SERVER.into(),
    };
    let opened = client
        .open_description_granting(reference.as_fd(), &bridge.share, 1, true, true, Some(provisional.clone()))
        .expect("open with a provisional grant");
    assert_eq!(opened.caching, Caching::RWH, "one round trip: the lease is taken with the open");
    assert_eq!(
        kernel::lease_state(opened.description.as_fd()).unwrap(),
        LeaseState::Held(LeaseType::Write)
    );
    // smbd granted only RH: the holder is lowered (no reply is sent to wait for) and a local
    // reader still breaks it, to none, because the description is writable.
    client.adjust_grant(opened.inode, 1, Caching::RH).unwrap();
    let listing = client.list_leases().expect("listing (root)");
    let row = listing.inodes.iter().find(|row| row.ino == opened.inode.ino).expect("the file's row");
    let holders: Vec<(u64, &str)> = row.holders.iter().map(|h| (h.file_id, h.caching.as_str())).collect();
    assert_eq!(holders, [(1, "RH")]);
    assert_eq!(errno(&local_open(&path, false).unwrap_err()), libc::EWOULDBLOCK);
    let [request] = <[BreakRequest; 1]>::try_from(break_requests(&mut client, 1)).unwrap();
    assert_eq!((request.unit, request.current, request.break_to), (WireUnit::Lease([7; 16]), Caching::RH, Caching::NONE));
    client.break_ack(request.request_id, opened.inode, request.unit, Caching::NONE).unwrap();
    assert!(eventually(WAIT, || local_open(&path, false).is_ok()));

    // While a local process has the file open, a provisional grant gets nothing: the kernel
    // refuses the lease, and smbd must grant no caching.
    let local = File::open(&path).unwrap();
    let second = client
        .open_description_granting(reference.as_fd(), &bridge.share, 2, true, true, Some(Provisional { kind: GrantKind::Oplock, ..provisional }))
        .expect("open while a local reader has the file");
    assert_eq!(second.caching, Caching::NONE);
    drop(local);
    client.close(opened.inode, 1).unwrap();
    client.close(second.inode, 2).unwrap();
}

#[test]
fn only_the_one_unit_a_break_waits_for_may_release_the_lease_itself_before_the_timeout() {
    let bridge = Bridge::start(&["--break-timeout", "20"]);
    let path = bridge.file("sole.txt", b"x");
    let mut client = bridge.client();
    let reference = reference(&path);
    let (first, inode, _) = client
        .open_description(reference.as_fd(), &bridge.share, 1, true, true)
        .unwrap();

    // One unit caches: it may release, until a second before the break could time out.
    assert_eq!(grant_rwh(&bridge, &mut client, inode, 1), Caching::RWH);
    let asked = protocol::monotonic_now_ns();
    assert_eq!(errno(&local_open(&path, false).unwrap_err()), libc::EWOULDBLOCK);
    let [request] = <[BreakRequest; 1]>::try_from(break_requests(&mut client, 1)).unwrap();
    let after = protocol::monotonic_now_ns();
    // The break started between `asked` and `after`; it may be released until a second before
    // its 20 s timeout (1 ms of slack for the two clock reads).
    let less_a_second = Duration::from_secs(19).as_nanos() as u64;
    let slack = Duration::from_millis(1).as_nanos() as u64;
    assert!(
        (asked + less_a_second - slack..=after + less_a_second + slack)
            .contains(&request.release_until),
        "release_until {} is 19 s after the break started, between {asked} and {after}",
        request.release_until
    );
    // The unit gives the lease up itself (as the module does), then acknowledges: the bridge
    // finds the lease gone and ends the break as usual.
    fcntl::set_lease(first.as_fd(), None).unwrap();
    assert!(eventually(WAIT, || local_open(&path, false).is_ok()));
    client
        .break_ack(request.request_id, inode, request.unit, Caching::NONE)
        .unwrap();
    assert!(eventually(WAIT, || bridge.log_text().contains("break ended: every holder acknowledged")));

    // Two units cache: neither may release (the other's caching still needs the lease).
    let (_second, _, _) = client
        .open_description(reference.as_fd(), &bridge.share, 2, true, true)
        .unwrap();
    assert_eq!(grant_rwh(&bridge, &mut client, inode, 1), Caching::RWH);
    assert_eq!(grant_rwh(&bridge, &mut client, inode, 2), Caching::RWH);
    assert_eq!(errno(&local_open(&path, true).unwrap_err()), libc::EWOULDBLOCK);
    let requests = break_requests(&mut client, 2);
    assert!(requests.iter().all(|request| request.release_until == 0), "{requests:?}");
    for request in &requests {
        client
            .break_ack(request.request_id, inode, request.unit, Caching::NONE)
            .unwrap();
    }
    assert!(eventually(WAIT, || local_open(&path, true).is_ok()));
    client.close(inode, 1).unwrap();
    client.close(inode, 2).unwrap();
}

/// An "smbd" that may offer direct breaks (`DirectBreaks`), opens a file, is granted a batch
/// oplock, and then answers the first break, whichever way it comes: the kernel's signal
/// (it gives the lease up itself and sends a direct `BreakAck`) or the bridge's notice.
/// Prints "granted C K", then "signalled", "signalled and notified" or "notified".
const PYTHON_DIRECT_SMBD: &str = r#"
import fcntl, os, signal, socket, struct, sys, time
signal.alarm(60)
sock_path, share, path, mode, file_id = sys.argv[1:6]
file_id = int(file_id)
SIG = signal.SIGRTMIN + 5
signal.pthread_sigmask(signal.SIG_BLOCK, {SIG})
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sock_path)
if mode == "direct":
    s.send(header(20, 1) + struct.pack("<I", SIG))
    reply = s.recv(8192)
    assert reply[3] == 21, reply
ref = os.open(path, os.O_PATH)
socket.send_fds(s, [header(1, 2) + string(share) + struct.pack("<Q", file_id) + bytes([3])], [ref])
message, fds, _, _ = socket.recv_fds(s, 8192, 4)
assert message[3] == 2, message
dev, ino = struct.unpack_from("<QQ", message, 12)
s.send(header(3, 3) + struct.pack("<QQQ", dev, ino, file_id) + bytes([1, 7])
       + string(share) + string("ipv4:127.0.0.9:1") + string("ipv4:127.0.0.1:445"))
reply = s.recv(8192)
assert reply[3] == 4, reply
print("granted %d %d" % (reply[12], reply[13]), flush=True)
def ack(request_id):
    s.send(header(7, request_id) + struct.pack("<QQ", dev, ino) + bytes([1])
           + struct.pack("<Q", file_id) + bytes([0]))
s.setblocking(False)
deadline = time.time() + 30
while time.time() < deadline:
    if signal.sigtimedwait({SIG}, 0.01) is not None:
        time.sleep(0.2)
        try:
            notified = s.recv(8192)[3] == 6
        except BlockingIOError:
            notified = False
        fcntl.fcntl(fds[0], fcntl.F_SETLEASE, fcntl.F_UNLCK)
        ack(0)
        print("signalled and notified" if notified else "signalled", flush=True)
        break
    try:
        notice = s.recv(8192)
    except BlockingIOError:
        continue
    if notice[3] == 6:
        ack(struct.unpack_from("<Q", notice, 4)[0])
        print("notified", flush=True)
        break
time.sleep(60)
"#;

/// Starts [`PYTHON_DIRECT_SMBD`]; returns it with its output and the first line.
fn python_direct_smbd(
    bridge: &Bridge,
    path: &Path,
    mode: &str,
    file_id: u64,
) -> (Child, BufReader<ChildStdout>, String) {
    let mut child = {
        let _forking = exclusive();
        Command::new("python3")
            .args(["-c", &format!("{PYTHON_WIRE}{PYTHON_DIRECT_SMBD}")])
            .arg(&bridge.socket)
            .arg(&bridge.share)
            .arg(path)
            .arg(mode)
            .arg(file_id.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs")
    };
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    (child, output, line.trim().to_string())
}

fn next_line(output: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    line.trim().to_string()
}

#[test]
fn a_break_of_a_file_one_smbd_alone_caches_on_is_signalled_to_that_smbd() {
    let bridge = Bridge::start(&[]);
    let path = bridge.file("direct.txt", b"x");
    let (mut smbd, mut output, granted) = python_direct_smbd(&bridge, &path, "direct", 9);
    assert_eq!(granted, "granted 7 2", "RWH backed by a write lease");
    assert!(eventually(WAIT, || bridge.log_text().contains("break signal handed to smbd")));
    let inode = inode_of(&path);
    let signalled_pid = |client: &mut BridgeClient| {
        let listing = client.list_leases().unwrap();
        let row = listing.inodes.into_iter().find(|row| (row.dev, row.ino) == (inode.dev, inode.ino));
        row.expect("listed").break_signal_pid
    };
    let mut client = bridge.client();
    assert_eq!(signalled_pid(&mut client), Some(smbd.id()), "the listing names the smbd");
    // The local reader starts the break; the smbd gets the kernel's signal, not a notice,
    // gives the lease up itself and answers directly.
    assert_eq!(errno(&local_open(&path, false).unwrap_err()), libc::EWOULDBLOCK);
    assert_eq!(next_line(&mut output), "signalled", "{}", bridge.log_text());
    assert!(eventually(WAIT, || local_open(&path, false).is_ok()));
    assert!(eventually(WAIT, || bridge
        .log_text()
        .contains("break ended: every holder acknowledged")));
    assert!(!bridge.log_text().contains("acknowledgement refused"), "{}", bridge.log_text());
    // The table took the answer: the smbd caches nothing, no lease is left, and the signal
    // is the bridge's again.
    assert_eq!(signalled_pid(&mut client), None);
    let listing = client.list_leases().unwrap();
    let row = listing
        .inodes
        .iter()
        .find(|row| (row.dev, row.ino) == (inode.dev, inode.ino))
        .expect("still open");
    assert_eq!(row.kernel_lease, None, "{listing:?}");
    smbd.kill().unwrap();
    smbd.wait().unwrap();
}

#[test]
fn a_second_smbd_caching_on_the_file_takes_the_signal_back_to_the_bridge() {
    let bridge = Bridge::start(&[]);
    let path = bridge.file("shared.txt", b"x");
    let (mut first, mut first_output, granted) = python_direct_smbd(&bridge, &path, "direct", 9);
    assert_eq!(granted, "granted 7 2");
    assert!(eventually(WAIT, || bridge.log_text().contains("break signal handed to smbd")));
    let (mut second, mut second_output, granted) = python_direct_smbd(&bridge, &path, "plain", 10);
    assert_eq!(granted, "granted 7 2", "a second unit on the same write lease");
    // Both units must answer: the bridge breaks, and each smbd gets a notice.
    assert_eq!(errno(&local_open(&path, false).unwrap_err()), libc::EWOULDBLOCK);
    assert_eq!(next_line(&mut first_output), "notified", "{}", bridge.log_text());
    assert_eq!(next_line(&mut second_output), "notified");
    assert!(eventually(WAIT, || local_open(&path, false).is_ok()));
    for smbd in [&mut first, &mut second] {
        smbd.kill().unwrap();
        smbd.wait().unwrap();
    }
}
