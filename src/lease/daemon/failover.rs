//! The bridge's half of the failover controls (`docs/failover.md`): `Release` asks every smbd
//! to end its client connection if it is in scope and answers the admin once those smbds are
//! gone and no caching in scope is left (their exit closed every open, so the table dropped
//! their holders and the kernel leases, and smbd released their byte-range locks); `Grace`
//! keeps grace periods and pushes them to every smbd, which applies them in its create path.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tracing::{info, warn};

use super::{Daemon, Gone};
use crate::lease::failover::{
    same_address, GraceTable, ReleaseReport, ReleaseScope, RemainingHolder, RemainingSmbd,
};
use crate::lease::listing;
use crate::lease::protocol::Message;
use crate::lease::table::InodeKey;
use crate::lease::transport::MAX_MESSAGE_LEN;

/// How often smbds that have not answered a release are asked again.
const ASK_AGAIN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Waiting,
    Releasing,
    NotMine,
}

struct PendingRelease {
    admin_token: u64,
    request_id: u64,
    scope: ReleaseScope,
    started: Duration,
    deadline: Duration,
    /// When the smbds that have not answered were last asked.
    last_asked: Duration,
    /// Every smbd asked, by pid, and what it answered.
    asked: BTreeMap<u32, Answer>,
    /// Our `ReleaseRequest` ids, by connection token: which smbd an answer is from.
    notices: HashMap<(u64, u64), u32>,
}

/// What the daemon keeps for failover.
#[derive(Default)]
pub(super) struct FailoverState {
    grace: GraceTable,
    releases: Vec<PendingRelease>,
    /// Connections that spoke as an smbd (the module asks for the grace periods right after
    /// connecting): only they are asked to release; admin tools are not.
    smbd_tokens: HashSet<u64>,
}

impl Daemon {
    /// Called for every message before it is handled: notes which connections are smbds.
    pub(super) fn failover_note(&mut self, token: u64, message: &Message) {
        let speaks_as_smbd = matches!(
            message,
            Message::OpenDescription { .. }
                | Message::Grant { .. }
                | Message::Close { .. }
                | Message::BreakAck { .. }
                | Message::GraceQuery { .. }
                | Message::ReleaseAnswer { .. }
        );
        if speaks_as_smbd && self.failover.smbd_tokens.insert(token) {
            // An smbd that connected while a release is pending is asked too (a client that
            // came in through the address before it was torn down).
            let pending: Vec<usize> = (0..self.failover.releases.len()).collect();
            for index in pending {
                self.ask_release(index, token);
            }
        }
    }

    pub(super) fn failover_forget(&mut self, token: u64) {
        self.failover.smbd_tokens.remove(&token);
    }

    /// Handles the failover messages; gives any other message back.
    pub(super) fn failover_message(
        &mut self,
        token: u64,
        message: Message,
    ) -> Result<Result<(), Gone>, Message> {
        let Some(peer) = self.peer_of(token) else {
            return Ok(Ok(()));
        };
        let result = match message {
            Message::Release {
                request_id,
                scope,
                timeout_ms,
            } => {
                if peer.uid != 0 {
                    warn!(pid = peer.pid, uid = peer.uid, "release refused: not root");
                    return Ok(self.fail(token, request_id, libc::EPERM));
                }
                self.start_release(token, request_id, scope, Duration::from_millis(timeout_ms));
                Ok(())
            }
            Message::ReleaseAnswer {
                request_id,
                releasing,
            } => {
                for release in &mut self.failover.releases {
                    if let Some(pid) = release.notices.remove(&(token, request_id)) {
                        let answer = if releasing {
                            Answer::Releasing
                        } else {
                            Answer::NotMine
                        };
                        release.asked.insert(pid, answer);
                        if releasing {
                            info!(pid, scope = %release.scope, "smbd is ending its client connection");
                        }
                    }
                }
                Ok(())
            }
            Message::Grace {
                request_id,
                address,
                path,
                duration_ms,
            } => {
                if peer.uid != 0 {
                    warn!(pid = peer.pid, uid = peer.uid, "grace refused: not root");
                    return Ok(self.fail(token, request_id, libc::EPERM));
                }
                self.set_grace(
                    token,
                    request_id,
                    address,
                    path,
                    Duration::from_millis(duration_ms),
                )
            }
            Message::GraceQuery { request_id } => {
                let entries = self.failover.grace.active(self.now());
                self.reply(
                    token,
                    Message::GraceState {
                        request_id,
                        entries,
                    },
                    None,
                )
            }
            Message::ReleaseReport { .. }
            | Message::ReleaseRequest { .. }
            | Message::GraceState { .. } => Err(Gone::Failed(
                "peer sent a message only the bridge sends".to_string(),
            )),
            other => return Err(other),
        };
        Ok(result)
    }

    fn set_grace(
        &mut self,
        token: u64,
        request_id: u64,
        address: String,
        path: String,
        duration: Duration,
    ) -> Result<(), Gone> {
        let now = self.now();
        let mut grace = self.failover.grace.clone();
        if crate::lease::failover::ip_of(&address).is_none() || !path.starts_with('/') {
            return self.fail(token, request_id, libc::EINVAL);
        }
        if !grace.set(&address, &path, duration, now) {
            return self.fail(token, request_id, libc::ENOSPC);
        }
        let entries = grace.active(now);
        let state = Message::GraceState {
            request_id: 0,
            entries: entries.clone(),
        };
        if state.encode().len() > MAX_MESSAGE_LEN {
            return self.fail(token, request_id, libc::ENOSPC);
        }
        self.failover.grace = grace;
        if duration.is_zero() {
            info!(address, path, "grace period ended");
        } else {
            info!(
                address,
                path,
                seconds = duration.as_secs_f64(),
                "grace period started: only reclaims there"
            );
        }
        let smbds: Vec<u64> = self.failover.smbd_tokens.iter().copied().collect();
        for smbd in smbds {
            let Some(connection) = self.connections.get_mut(&smbd) else {
                continue;
            };
            let request_id = connection.next_request_id();
            let message = Message::GraceState {
                request_id,
                entries: entries.clone(),
            };
            if let Err(gone) = connection.send(&message, None) {
                self.drop_connection(smbd, gone);
            }
        }
        self.reply(token, Message::Done { request_id }, None)
    }

    fn start_release(
        &mut self,
        admin_token: u64,
        request_id: u64,
        scope: ReleaseScope,
        timeout: Duration,
    ) {
        let now = self.now();
        info!(%scope, timeout_s = timeout.as_secs_f64(), smbds = self.failover.smbd_tokens.len(), "release requested");
        self.failover.releases.push(PendingRelease {
            admin_token,
            request_id,
            scope,
            started: now,
            deadline: now + timeout,
            last_asked: now,
            asked: BTreeMap::new(),
            notices: HashMap::new(),
        });
        let index = self.failover.releases.len() - 1;
        let smbds: Vec<u64> = self.failover.smbd_tokens.iter().copied().collect();
        for smbd in smbds {
            self.ask_release(index, smbd);
        }
        self.progress_releases();
    }

    /// Sends release `index`'s request to the smbd on connection `token`.
    fn ask_release(&mut self, index: usize, token: u64) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        let pid = connection.peer.pid;
        let release = &mut self.failover.releases[index];
        let request_id = connection.next_request_id();
        release.notices.insert((token, request_id), pid);
        release.asked.entry(pid).or_insert(Answer::Waiting);
        let message = Message::ReleaseRequest {
            request_id,
            scope: release.scope.clone(),
        };
        if let Err(gone) = connection.send(&message, None) {
            self.drop_connection(token, gone);
        }
    }

    /// The earliest release deadline (or time to ask the silent smbds again).
    pub(super) fn failover_deadline(&self) -> Option<Duration> {
        self.failover
            .releases
            .iter()
            .map(|release| release.deadline.min(release.last_asked + ASK_AGAIN))
            .min()
    }

    /// Asks again the smbds that have not answered: a request the module read while it was
    /// waiting for another reply sits in its queue until its socket is readable again.
    fn ask_silent_again(&mut self, now: Duration) {
        for index in 0..self.failover.releases.len() {
            let release = &mut self.failover.releases[index];
            if now < release.last_asked + ASK_AGAIN {
                continue;
            }
            release.last_asked = now;
            let silent: Vec<u32> = release
                .asked
                .iter()
                .filter(|(_, answer)| **answer == Answer::Waiting)
                .map(|(pid, _)| *pid)
                .collect();
            let tokens: Vec<u64> = self
                .failover
                .smbd_tokens
                .iter()
                .copied()
                .filter(|token| {
                    self.connections
                        .get(token)
                        .is_some_and(|connection| silent.contains(&connection.peer.pid))
                })
                .collect();
            for token in tokens {
                self.ask_release(index, token);
            }
        }
    }

    fn is_connected(&self, pid: u32) -> bool {
        self.connections
            .values()
            .any(|connection| connection.peer.pid == pid)
    }

    fn in_scope(scope: &ReleaseScope, inode: InodeKey, server_address: &str) -> bool {
        match scope {
            ReleaseScope::ServerAddress(address) => same_address(address, server_address),
            ReleaseScope::FileSystem { dev, .. } => inode.dev == *dev,
        }
    }

    /// Caching still held in scope.
    fn holders_in_scope(&self, scope: &ReleaseScope) -> Vec<RemainingHolder> {
        self.table
            .inodes()
            .flat_map(|(inode, entry)| {
                entry
                    .holders()
                    .filter(|holder| Self::in_scope(scope, *inode, &holder.server_address))
                    .map(|holder| (*inode, holder.clone()))
                    .collect::<Vec<_>>()
            })
            .map(|(inode, holder)| RemainingHolder {
                path: self.path_of(inode),
                smbd_pid: holder.open.smbd_pid,
                client_address: holder.client_address,
                server_address: holder.server_address,
                caching: listing::caching_letters(holder.caching),
            })
            .collect()
    }

    /// Answers every release that is complete or past its deadline. Called after every poll
    /// round (an smbd that ended shows up as its connection's end).
    pub(super) fn progress_releases(&mut self) {
        let now = self.now();
        self.ask_silent_again(now);
        let mut index = 0;
        while index < self.failover.releases.len() {
            let release = &self.failover.releases[index];
            let unresolved: Vec<RemainingSmbd> = release
                .asked
                .iter()
                .filter(|(pid, answer)| **answer != Answer::NotMine && self.is_connected(**pid))
                .map(|(pid, answer)| RemainingSmbd {
                    smbd_pid: *pid,
                    state: match answer {
                        Answer::Waiting => "no answer",
                        _ => "still running",
                    }
                    .to_string(),
                })
                .collect();
            let holders = self.holders_in_scope(&release.scope);
            let complete = unresolved.is_empty() && holders.is_empty();
            if !complete && now < release.deadline {
                index += 1;
                continue;
            }
            let release = self.failover.releases.remove(index);
            let released: Vec<u32> = release
                .asked
                .iter()
                .filter(|(pid, answer)| **answer == Answer::Releasing && !self.is_connected(**pid))
                .map(|(pid, _)| *pid)
                .collect();
            let report = ReleaseReport {
                scope: release.scope.to_string(),
                complete,
                elapsed_ms: now.saturating_sub(release.started).as_millis() as u64,
                asked: release.asked.len(),
                released,
                remaining: unresolved,
                holders,
            };
            if complete {
                info!(scope = %release.scope, released = report.released.len(), "release done");
            } else {
                warn!(
                    scope = %release.scope,
                    smbds = report.remaining.len(),
                    holders = report.holders.len(),
                    "release timed out with caching or smbds left in scope"
                );
            }
            let sent = super::sealed_json_memfd("nfsbridge-release", &report).map_err(|error| {
                warn!(%error, "cannot write the release report");
                error.raw_os_error().unwrap_or(libc::EIO)
            });
            let result = match sent {
                Ok(memfd) => self.reply(
                    release.admin_token,
                    Message::ReleaseReport {
                        request_id: release.request_id,
                    },
                    Some(memfd),
                ),
                Err(errno) => self.fail(release.admin_token, release.request_id, errno),
            };
            if let Err(gone) = result {
                self.drop_connection(release.admin_token, gone);
            }
        }
    }
}

