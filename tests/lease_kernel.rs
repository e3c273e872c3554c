//! What kernel leases do on this machine, with real files and real second processes.
//!
//! The lease holder is a separate Python process (Python's `fcntl` module has `F_SETLEASE`), so
//! these facts are checked independently of the crate's own `lease::fcntl` wrappers, which
//! `tests/lease_fcntl.rs` tests. This test process is the "foreign" opener, receives the holder's descriptor over the crate's
//! SEQPACKET transport, and checks the holder's lease through `lease::kernel`'s fdinfo query
//! against the holder's own `F_GETLEASE`. Every wait is bounded.
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nfsbridge::lease::kernel::{self, LeaseState, LeaseType, F_RDLCK, F_UNLCK, F_WRLCK};
use nfsbridge::lease::transport;

mod common;
use common::{eventually, kernel_version, open_nonblocking, test_file};

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The holder: one command per stdin line, one reply per stdout line. It takes leases with the
/// default break signal (SIGIO) and counts the signals it gets. `alarm` ends it if the test
/// dies without closing its stdin.
const HOLDER: &str = r#"
import fcntl, os, signal, socket, sys
signal.alarm(60)
breaks = 0
def on_break(signum, frame):
    global breaks
    breaks += 1
signal.signal(signal.SIGIO, on_break)
path = sys.argv[1]
fd = None
def reply(text):
    sys.stdout.write(text + "\n"); sys.stdout.flush()
for line in sys.stdin:
    words = line.split()
    try:
        if words[0] == "open":
            fd = os.open(path, os.O_RDWR if words[1] == "rw" else os.O_RDONLY)
            reply("fd %d" % fd)
        elif words[0] == "lease":
            fcntl.fcntl(fd, fcntl.F_SETLEASE, int(words[1]))
            reply("ok")
        elif words[0] == "get":
            reply("lease %d" % fcntl.fcntl(fd, fcntl.F_GETLEASE))
        elif words[0] == "breaks":
            reply("breaks %d" % breaks)
        elif words[0] == "send":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(words[1])
            socket.send_fds(s, [b"leased"], [fd])
            s.close()
            reply("ok")
        elif words[0] == "deleg":
            # F_SETDELEG (F_LINUX_SPECIFIC_BASE + 16, Linux 6.19) with a zeroed struct
            # delegation: d_flags 0, d_type F_RDLCK.
            fcntl.fcntl(fd, 1024 + 16, bytes(8))
            reply("ok")
        elif words[0] == "close":
            os.close(fd); fd = None
            reply("ok")
    except OSError as e:
        reply("errno %d" % e.errno)
"#;

/// The helper process and a line reader that never blocks the test for long.
struct Holder {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Holder {
    fn start(path: &Path) -> Holder {
        let mut child = Command::new("python3")
            .args(["-c", HOLDER])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the lease holder");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Holder {
            child,
            stdin,
            lines,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("holder reads commands");
        self.lines
            .recv_timeout(REPLY_TIMEOUT)
            .unwrap_or_else(|_| panic!("holder answers {command:?}"))
    }

    /// Opens the file in the holder and returns the holder's descriptor number.
    fn open(&mut self, mode: &str) -> i32 {
        let reply = self.ask(&format!("open {mode}"));
        reply
            .strip_prefix("fd ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("open: {reply}"))
    }

    fn set_lease(&mut self, raw: i32) -> Result<(), i32> {
        let reply = self.ask(&format!("lease {raw}"));
        match reply.strip_prefix("errno ") {
            Some(errno) => Err(errno.parse().expect("numeric errno")),
            None => {
                assert_eq!(reply, "ok");
                Ok(())
            }
        }
    }

    fn get_lease(&mut self) -> i32 {
        let reply = self.ask("get");
        reply
            .strip_prefix("lease ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("get: {reply}"))
    }

    fn breaks(&mut self) -> u32 {
        let reply = self.ask("breaks");
        reply
            .strip_prefix("breaks ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("breaks: {reply}"))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Our own child, by its id: a test that failed mid-break must not leave a lease behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens `path` read-only on another thread; the result arrives on the returned channel.
fn open_in_background(path: &Path) -> Receiver<(std::io::Result<File>, Instant)> {
    let path = path.to_path_buf();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let result = File::open(&path);
        let _ = sender.send((result, Instant::now()));
    });
    receiver
}

#[test]
fn write_lease_is_broken_to_read_by_a_foreign_reader_and_release_lets_it_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_file(&dir, b"cached by the holder");
    let mut holder = Holder::start(&path);
    let fd = holder.open("rw");
    holder
        .set_lease(F_WRLCK)
        .expect("write lease on the only open of the file");
    assert_eq!(holder.get_lease(), F_WRLCK);
    assert_eq!(
        kernel::lease_state_of(holder.pid(), fd).unwrap(),
        LeaseState::Held(LeaseType::Write)
    );

    // A non-blocking reader is turned away and starts the break.
    let refused = open_nonblocking(&path, false).expect_err("reader must wait for the holder");
    assert_eq!(
        refused.raw_os_error(),
        Some(rustix::io::Errno::WOULDBLOCK.raw_os_error())
    );
    assert!(
        eventually(REPLY_TIMEOUT, || holder.breaks() >= 1),
        "holder gets the break signal"
    );
    // During the break F_GETLEASE and fdinfo both report the target: down to read.
    assert_eq!(holder.get_lease(), F_RDLCK);
    assert_eq!(
        kernel::lease_state_of(holder.pid(), fd).unwrap(),
        LeaseState::Breaking {
            target: Some(LeaseType::Read)
        }
    );

    // A blocking reader waits while the holder keeps its lease...
    let opened = open_in_background(&path);
    assert!(
        opened.recv_timeout(Duration::from_millis(300)).is_err(),
        "reader blocked by the lease"
    );
    // ...and gets in as soon as the holder lets go.
    let released_at = Instant::now();
    holder.set_lease(F_UNLCK).expect("release during a break");
    let (result, opened_at) = opened
        .recv_timeout(REPLY_TIMEOUT)
        .expect("reader let in after release");
    let mut reader = result.expect("reader opens");
    assert!(opened_at.duration_since(released_at) < Duration::from_secs(1));
    let mut content = String::new();
    std::io::Read::read_to_string(&mut reader, &mut content).unwrap();
    assert_eq!(content, "cached by the holder");
    assert_eq!(
        kernel::lease_state_of(holder.pid(), fd).unwrap(),
        LeaseState::Unleased
    );
}

#[test]
fn write_lease_is_broken_to_none_by_a_foreign_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_file(&dir, b"x");
    let mut holder = Holder::start(&path);
    let fd = holder.open("rw");
    holder.set_lease(F_WRLCK).unwrap();
    let refused = open_nonblocking(&path, true).expect_err("writer must wait for the holder");
    assert_eq!(
        refused.raw_os_error(),
        Some(rustix::io::Errno::WOULDBLOCK.raw_os_error())
    );
    assert_eq!(
        holder.get_lease(),
        F_UNLCK,
        "a writer breaks the lease all the way"
    );
    assert_eq!(
        kernel::lease_state_of(holder.pid(), fd).unwrap(),
        LeaseState::Breaking { target: None }
    );
    holder.set_lease(F_UNLCK).unwrap();
    assert!(
        open_nonblocking(&path, true).is_ok(),
        "writer gets in once the lease is gone"
    );
}

#[test]
fn read_lease_is_refused_while_a_writer_exists_and_needs_a_read_only_description() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_file(&dir, b"x");
    let mut holder = Holder::start(&path);
    let eagain = rustix::io::Errno::AGAIN.raw_os_error();

    let writer = OpenOptions::new().write(true).open(&path).unwrap();
    let fd = holder.open("ro");
    assert_eq!(
        holder.set_lease(F_RDLCK),
        Err(eagain),
        "read lease while another process writes"
    );
    drop(writer);
    holder
        .set_lease(F_RDLCK)
        .expect("read lease once the writer is gone");
    assert_eq!(
        kernel::lease_state_of(holder.pid(), fd).unwrap(),
        LeaseState::Held(LeaseType::Read)
    );
    // A reader coexists with a read lease: no break.
    let reader = open_nonblocking(&path, false).expect("readers do not break a read lease");
    assert_eq!(holder.get_lease(), F_RDLCK);
    drop(reader);
    assert_eq!(holder.breaks(), 0);

    // The holder's own writable description rules a read lease out (the bridge's shared
    // O_RDWR description can only ever hold F_WRLCK).
    holder.set_lease(F_UNLCK).unwrap();
    holder.ask("close");
    holder.open("rw");
    assert_eq!(
        holder.set_lease(F_RDLCK),
        Err(eagain),
        "read lease on an O_RDWR description"
    );
}

#[test]
fn lease_on_a_shared_description_survives_io_through_a_dup_passed_with_scm_rights() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_file(&dir, b"0123456789");
    let socket_path = dir.path().join("bridge.sock");
    let listener = transport::listen_seqpacket(&socket_path, 4).unwrap();
    let mut holder = Holder::start(&path);
    let fd = holder.open("rw");
    holder.set_lease(F_WRLCK).unwrap();

    // The holder connects and sends its leased descriptor; we are its second user.
    let (sent, accepted) = std::thread::scope(|scope| {
        let accepting = scope.spawn(|| transport::accept_seqpacket(listener.as_fd()));
        (
            holder.ask(&format!("send {}", socket_path.display())),
            accepting.join().unwrap(),
        )
    });
    assert_eq!(sent, "ok");
    let connection = accepted.unwrap();
    let peer = transport::peer_credentials(connection.as_fd()).unwrap();
    assert_eq!(
        peer.pid,
        holder.pid(),
        "SO_PEERCRED names the sending process"
    );
    // /proc/self belongs to our own (effective) uid, which the helper inherited.
    assert_eq!(
        peer.uid,
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap())
    );
    let message = transport::recv_message(connection.as_fd())
        .unwrap()
        .expect("one message");
    assert_eq!(message.bytes, b"leased");
    let [shared] = <[_; 1]>::try_from(message.fds).expect("exactly one descriptor");

    // Our dup is the same open file description: fdinfo shows the holder's lease on it.
    assert_eq!(
        kernel::lease_state(shared.as_fd()).unwrap(),
        LeaseState::Held(LeaseType::Write)
    );
    rustix::io::pwrite(&shared, b"AB", 2).unwrap();
    let mut buffer = [0u8; 10];
    assert_eq!(rustix::io::pread(&shared, &mut buffer, 0).unwrap(), 10);
    assert_eq!(&buffer, b"01AB456789");
    rustix::fs::ftruncate(&shared, 6).unwrap();
    rustix::fs::fsync(&shared).unwrap();
    // None of that is an open or a foreign truncate: the lease is intact, nobody was signalled.
    assert_eq!(holder.get_lease(), F_WRLCK);
    assert_eq!(holder.breaks(), 0);
    assert_eq!(
        kernel::lease_state(shared.as_fd()).unwrap(),
        LeaseState::Held(LeaseType::Write)
    );
    assert_eq!(
        kernel::lease_state_of(holder.pid(), fd).unwrap(),
        LeaseState::Held(LeaseType::Write)
    );

    // And it is a real lease: an open by path from this very process still breaks it.
    let refused = open_nonblocking(&path, false).expect_err("an open by path is foreign");
    assert_eq!(
        refused.raw_os_error(),
        Some(rustix::io::Errno::WOULDBLOCK.raw_os_error())
    );
    assert!(eventually(REPLY_TIMEOUT, || holder.breaks() >= 1));
    assert_eq!(
        kernel::lease_state(shared.as_fd()).unwrap(),
        LeaseState::Breaking {
            target: Some(LeaseType::Read)
        }
    );
    // The lease belongs to the open file description, not to the process that took it: the
    // holder's exit leaves it (still breaking) on our dup, and closing the last descriptor of
    // the description is what ends it and lets the waiting opener in.
    drop(holder);
    assert_eq!(
        kernel::lease_state(shared.as_fd()).unwrap(),
        LeaseState::Breaking {
            target: Some(LeaseType::Read)
        }
    );
    let opened = open_in_background(&path);
    assert!(
        opened.recv_timeout(Duration::from_millis(200)).is_err(),
        "still held through the dup"
    );
    drop(shared);
    let (result, _) = opened
        .recv_timeout(REPLY_TIMEOUT)
        .expect("closing the last dup ends the lease");
    result.expect("reader opens");
}

#[test]
fn setdeleg_is_detected_by_einval_before_linux_6_19() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_file(&dir, b"x");
    let mut holder = Holder::start(&path);
    holder.open("ro");
    let reply = holder.ask("deleg");
    let einval = format!("errno {}", rustix::io::Errno::INVAL.raw_os_error());
    if kernel_version() < (6, 19) {
        assert_eq!(
            reply, einval,
            "F_SETDELEG is an unknown fcntl command before 6.19"
        );
    } else {
        assert_ne!(reply, einval, "F_SETDELEG exists from 6.19 on");
    }
}
