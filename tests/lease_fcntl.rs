//! The kernel lease calls of `lease::fcntl` and the signalfd of `lease::signals`, on real
//! files. The holder is this process; a second `open()` of the same path from this process is
//! a foreign opener to the kernel (another open file description), exactly as in
//! `tests/lease_kernel.rs`, where the holder is a separate Python process.
//!
//! A lease break signals the lease's owner process. The default break signal, SIGIO,
//! terminates a process without a handler, so every lease here first gets `F_SETSIG` to
//! SIGWINCH, whose default action is to ignore it: the test harness's threads survive the
//! breaks these tests cause.
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nfsbridge::lease::fcntl;
use nfsbridge::lease::kernel::{self, LeaseState, LeaseType};
use nfsbridge::lease::signals::{self, SignalSet};

mod common;
use common::{kernel_version, open_nonblocking, test_file};

fn open_holder(path: &Path, write: bool) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .expect("holder opens the file");
    fcntl::set_signal(file.as_fd(), libc::SIGWINCH).expect("F_SETSIG and F_SETOWN");
    file
}

fn errno(error: &std::io::Error) -> i32 {
    error.raw_os_error().expect("an OS error")
}

#[test]
fn write_lease_is_taken_reported_broken_and_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_file(&dir, b"held");
    let holder = open_holder(&path, true);
    assert_eq!(fcntl::get_lease(holder.as_fd()).unwrap(), None);
    fcntl::set_lease(holder.as_fd(), Some(LeaseType::Write)).expect("F_WRLCK on the only open");
    assert_eq!(
        fcntl::get_lease(holder.as_fd()).unwrap(),
        Some(LeaseType::Write)
    );
    assert_eq!(
        kernel::lease_state(holder.as_fd()).unwrap(),
        LeaseState::Held(LeaseType::Write),
        "fdinfo agrees with F_GETLEASE"
    );

    // A foreign reader is turned away at once and starts a break to read.
    let refused = open_nonblocking(&path, false).expect_err("the lease holds readers off");
    assert_eq!(errno(&refused), libc::EWOULDBLOCK);
    assert_eq!(
        fcntl::get_lease(holder.as_fd()).unwrap(),
        Some(LeaseType::Read),
        "during a break F_GETLEASE reports the target"
    );
    assert_eq!(
        kernel::lease_state(holder.as_fd()).unwrap(),
        LeaseState::Breaking {
            target: Some(LeaseType::Read)
        }
    );
    fcntl::set_lease(holder.as_fd(), None).expect("F_UNLCK during the break");
    assert_eq!(fcntl::get_lease(holder.as_fd()).unwrap(), None);
    open_nonblocking(&path, false).expect("the reader gets in once the lease is gone");
}

#[test]
fn a_foreign_writer_breaks_to_none_and_read_leases_need_a_read_only_description() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_file(&dir, b"x");
    let writable = open_holder(&path, true);
    let refused = fcntl::set_lease(writable.as_fd(), Some(LeaseType::Read))
        .expect_err("F_RDLCK on an O_RDWR description");
    assert_eq!(errno(&refused), libc::EAGAIN);
    fcntl::set_lease(writable.as_fd(), Some(LeaseType::Write)).unwrap();
    let refused = open_nonblocking(&path, true).expect_err("a writer waits for the holder");
    assert_eq!(errno(&refused), libc::EWOULDBLOCK);
    assert_eq!(fcntl::get_lease(writable.as_fd()).unwrap(), None);
    fcntl::set_lease(writable.as_fd(), None).unwrap();
    drop(writable);

    let read_only = open_holder(&path, false);
    fcntl::set_lease(read_only.as_fd(), Some(LeaseType::Read)).expect("F_RDLCK, no writer");
    let reader = open_nonblocking(&path, false).expect("readers coexist with a read lease");
    assert_eq!(
        fcntl::get_lease(read_only.as_fd()).unwrap(),
        Some(LeaseType::Read)
    );
    drop(reader);
    let refused = open_nonblocking(&path, true).expect_err("a writer breaks a read lease");
    assert_eq!(errno(&refused), libc::EWOULDBLOCK);
    assert_eq!(fcntl::get_lease(read_only.as_fd()).unwrap(), None);
}

#[test]
fn a_second_open_refuses_a_write_lease_and_o_path_does_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_file(&dir, b"x");
    let holder = open_holder(&path, true);
    // An O_PATH reference (what smbd sends the bridge) is not an open of the file's data.
    let reference = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(&path)
        .unwrap();
    fcntl::set_lease(holder.as_fd(), Some(LeaseType::Write)).expect("O_PATH does not conflict");
    fcntl::set_lease(holder.as_fd(), None).unwrap();
    let other = File::open(&path).unwrap();
    let refused = fcntl::set_lease(holder.as_fd(), Some(LeaseType::Write))
        .expect_err("another open of the file");
    assert_eq!(errno(&refused), libc::EAGAIN);
    drop((other, reference));
}

#[test]
fn delegations_are_probed_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_file(&dir, b"x");
    let file = File::open(&path).unwrap();
    let supported = fcntl::delegations_supported(file.as_fd());
    assert_eq!(supported, kernel_version() >= (6, 19));
    if !supported {
        let refused = fcntl::set_delegation(file.as_fd(), Some(LeaseType::Read))
            .expect_err("no F_SETDELEG before 6.19");
        assert_eq!(errno(&refused), libc::EINVAL);
    }
}

#[test]
fn a_blocked_signal_is_read_from_the_signalfd_with_its_number() {
    // The test harness runs tests on threads of one process: the signal is blocked and raised
    // on this thread only (raise() is thread-directed), so no other test sees it.
    let set = SignalSet::new(&[signals::lease_break_signal()]).unwrap();
    set.block().unwrap();
    let signalfd = set.signalfd().unwrap();
    assert!(signals::read_signals(&signalfd).unwrap().is_empty());
    for _ in 0..3 {
        // SAFETY: raise() sends a blocked signal to the calling thread; it stays pending.
        assert_eq!(unsafe { libc::raise(signals::lease_break_signal()) }, 0);
    }
    let read = signals::read_signals(&signalfd).unwrap();
    assert_eq!(read.len(), 3, "realtime signals queue one per raise");
    for info in read {
        assert_eq!(info.signo, signals::lease_break_signal());
        assert_eq!(info.code, libc::SI_TKILL);
    }
    assert!(signals::read_signals(&signalfd).unwrap().is_empty());
}

/// `(F_GETSIG, F_GETOWN)` of the description behind `file`.
fn break_signal_and_owner(file: &File) -> (i32, i32) {
    use std::os::fd::AsRawFd;
    const F_GETSIG: i32 = 11;
    // SAFETY: F_GETSIG and F_GETOWN take no argument; the descriptor is open.
    let signo = unsafe { libc::fcntl(file.as_raw_fd(), F_GETSIG) };
    // SAFETY: as above.
    let owner = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETOWN) };
    (signo, owner)
}

#[test]
fn a_lease_taken_again_after_its_release_still_signals_its_break_to_us() {
    let dir = tempfile::tempdir().unwrap();
    let path = test_file(&dir, b"held");
    let holder = open_holder(&path, true);
    let me = std::process::id() as i32;
    assert_eq!(break_signal_and_owner(&holder), (libc::SIGWINCH, me));

    // The kernel rule take_lease exists for: giving a lease up clears both settings.
    fcntl::set_lease(holder.as_fd(), Some(LeaseType::Write)).unwrap();
    fcntl::set_lease(holder.as_fd(), None).unwrap();
    assert_eq!(break_signal_and_owner(&holder), (0, 0), "F_UNLCK clears F_SETSIG and F_SETOWN");

    fcntl::take_lease(holder.as_fd(), LeaseType::Write, libc::SIGWINCH).unwrap();
    assert_eq!(fcntl::get_lease(holder.as_fd()).unwrap(), Some(LeaseType::Write));
    assert_eq!(break_signal_and_owner(&holder), (libc::SIGWINCH, me));
    fcntl::set_lease(holder.as_fd(), None).unwrap();
}
