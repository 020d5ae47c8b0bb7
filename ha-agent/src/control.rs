//! The control socket (`RUN_DIR/control.sock`): `ha-agent status` and `ha-agent ctl …`.
//!
//! A client sends one request line (`status`, `drain`, `resume`, `reload`, or `handover` with
//! `group=ID` and `to=NODE` if given) and reads the answer
//! until the agent closes: the status report as JSON, or one line saying what the command did.
//! Each connection is read by a task of its own and its request handed to the agent's loop over a
//! channel, so that a client that connects and stays silent can never hold up the loop (and with
//! it the heartbeats). The socket is root's alone (mode 0600), or open to one group
//! (`control_group`, mode 0660); a refused client gets a clear one-line error.

use std::{
    ffi::CString,
    io::{self, Read as _, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    ids::{GroupId, NodeId},
    status::{socket_path, StatusError},
};

/// What a client asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// The status report (JSON).
    Status,
    /// Hand the VIPs over gap-free and stay out of elections (maintenance).
    Drain,
    /// Back into elections after a drain.
    Resume,
    /// Re-read the config file (as SIGHUP).
    Reload,
    /// Hand the VIPs of the groups this node holds (or of one group) to a node, or to the most
    /// worthy live peer.
    Handover {
        /// Only this group.
        group: Option<GroupId>,
        /// To this node.
        to: Option<NodeId>,
    },
}

impl Request {
    /// The request's name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Drain => "drain",
            Self::Resume => "resume",
            Self::Reload => "reload",
            Self::Handover { .. } => "handover",
        }
    }

    /// The request's line on the wire.
    #[must_use]
    pub fn line(self) -> String {
        match self {
            Self::Handover { group, to } => {
                let group = group.map(|g| format!(" group={g}")).unwrap_or_default();
                let to = to.map(|n| format!(" to={n}")).unwrap_or_default();
                format!("handover{group}{to}")
            }
            _ => self.as_str().to_string(),
        }
    }

    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let request = match words.next()? {
            "status" => Self::Status,
            "drain" => Self::Drain,
            "resume" => Self::Resume,
            "reload" => Self::Reload,
            "handover" => {
                let (mut group, mut to) = (None, None);
                for word in words.by_ref() {
                    match word.split_once('=')? {
                        ("group", id) => group = Some(GroupId(id.parse().ok()?)),
                        ("to", node) => to = Some(node.parse().ok()?),
                        _ => return None,
                    }
                }
                Self::Handover { group, to }
            }
            _ => return None,
        };
        words.next().is_none().then_some(request)
    }
}

/// A request and where its answer goes.
pub type Pending = (Request, oneshot::Sender<Vec<u8>>);

/// The agent's end of the control socket; the socket file goes when it is dropped.
pub struct ControlSocket {
    requests: mpsc::UnboundedReceiver<Pending>,
    acceptor: JoinHandle<()>,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `RUN_DIR/control.sock`, refusing to steal it from a live agent that still answers
    /// there (a stale file of a crashed one is replaced), root's alone or open to `group`.
    /// Needs a tokio runtime.
    ///
    /// The socket listens from the moment it is bound, and a connection made then outlives any
    /// later change of the file's mode: so it is bound under a name of its own with the umask
    /// letting only its owner in, given its group and mode there, and only then renamed to
    /// `control.sock`. A client (or a test) that reaches it under its name finds it as it stays.
    pub fn bind(run_dir: &Path, group: Option<&str>) -> Result<Self, StatusError> {
        let setup = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| StatusError::Setup { action, path, source }
        };
        std::fs::create_dir_all(run_dir).map_err(setup("create", run_dir))?;
        let path = socket_path(run_dir);
        if UnixStream::connect(&path).is_ok() {
            return Err(StatusError::InUse(run_dir.to_path_buf()));
        }
        let gid = group
            .map(|name| group_id(name).ok_or_else(|| StatusError::NoGroup(name.to_string())))
            .transpose()?;
        let binding = path.with_extension("sock.new");
        let _ = std::fs::remove_file(&binding);
        let listener = bind_owner_only(&binding).map_err(setup("bind", &binding))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&binding, None, Some(gid)).map_err(setup("chown", &binding))?;
        }
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(&binding, std::fs::Permissions::from_mode(mode))
            .map_err(setup("chmod", &binding))?;
        // Replaces a stale file of a crashed agent in one step.
        std::fs::rename(&binding, &path).map_err(setup("rename", &binding))?;
        listener.set_nonblocking(true).map_err(setup("bind", &path))?;
        let listener = UnixListener::from_std(listener).map_err(setup("bind", &path))?;
        let (sender, requests) = mpsc::unbounded_channel();
        let acceptor = tokio::spawn(accept(listener, sender));
        Ok(Self { requests, acceptor, path })
    }

    /// The next request, with where to send its answer.
    pub async fn next(&mut self) -> Option<Pending> {
        self.requests.recv().await
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.acceptor.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A listening socket bound at `path`, its file created with mode 0600 whatever the umask.
fn bind_owner_only(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    // The umask is the process's: set for the bind alone, at start-up, when no other thread
    // creates files (the checks' and hooks' processes are started from the loop, later).
    // SAFETY: umask has no memory preconditions.
    let previous = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(previous) };
    bound
}

/// Accepts clients, each served by a task of its own.
async fn accept(listener: UnixListener, requests: mpsc::UnboundedSender<Pending>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve(stream, requests.clone()));
    }
}

/// Reads one request line (a second at most), hands it to the loop, writes the answer back (a
/// second at most).
async fn serve(stream: tokio::net::UnixStream, requests: mpsc::UnboundedSender<Pending>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    let answer = match tokio::time::timeout(Duration::from_secs(1), reader.read_line(&mut line)).await {
        Ok(Ok(_)) => match Request::parse(&line) {
            Some(request) => {
                let (reply, answer) = oneshot::channel();
                if requests.send((request, reply)).is_err() {
                    return;
                }
                answer.await.unwrap_or_default()
            }
            None => format!(
                "error: unknown request '{}': status, drain, resume, reload or handover\n",
                line.trim()
            )
            .into_bytes(),
        },
        _ => return,
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write.write_all(&answer)).await;
}

/// Sends `request` to the agent with run directory `run_dir`; returns its answer. An answer that
/// starts with `error: ` is an error.
pub fn request(run_dir: &Path, request: Request) -> Result<String, StatusError> {
    let path = socket_path(run_dir);
    let mut stream = UnixStream::connect(&path).map_err(|err| {
        if err.kind() == io::ErrorKind::PermissionDenied {
            StatusError::Refused(path.clone())
        } else {
            StatusError::NoAgent(path.clone(), err)
        }
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(StatusError::Read)?;
    writeln!(stream, "{}", request.line()).map_err(StatusError::Read)?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(StatusError::Read)?;
    match text.strip_prefix("error: ") {
        Some(message) => Err(StatusError::Command(message.trim().to_string())),
        None => Ok(text),
    }
}

/// The id of group `name`.
fn group_id(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: `name` is NUL-terminated; getgrnam returns null or a pointer to a static record
    // that is read at once, before any other call could overwrite it.
    let group = unsafe { libc::getgrnam(name.as_ptr()) };
    // SAFETY: checked for null; gr_gid is a plain integer field.
    (!group.is_null()).then(|| unsafe { (*group).gr_gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_lines() {
        let handovers = [
            Request::Handover { group: None, to: None },
            Request::Handover { group: Some(GroupId(7)), to: Some(NodeId(0xc000_020b)) },
        ];
        for request in
            [Request::Status, Request::Drain, Request::Resume, Request::Reload].into_iter().chain(handovers)
        {
            assert_eq!(Request::parse(&format!("{}\n", request.line())), Some(request));
        }
        for bad in ["reboot", "drain now", "handover to=", "handover to=xyz", "handover colour=red", ""] {
            assert_eq!(Request::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn groups_by_name() {
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-ha"), None);
    }
}
