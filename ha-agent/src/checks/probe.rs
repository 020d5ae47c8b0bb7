//! One probe of one check: the I/O. Each returns whether the check passed and, when it did not,
//! why in a few words (for the log and `status`). The caller bounds it by the check's timeout.

use std::process::Stdio;

use tokio::{net::TcpStream, process::Command};

use super::CheckKind;

/// What one kind of check needs between probes: the HTTP client is built once, so that its
/// connection pool and TLS set-up are reused.
pub(super) enum Prober {
    /// A command line.
    Exec(String),
    /// A TCP address.
    Tcp(std::net::SocketAddr),
    /// An HTTP(S) URL with its client.
    Http { client: reqwest::Client, url: String, expect_status: u16 },
    /// An interface name.
    Interface(String),
}

impl Prober {
    /// The prober for `kind`; fails only if the TLS set-up of an HTTP client fails.
    pub(super) fn new(kind: &CheckKind, timeout: std::time::Duration) -> Result<Self, String> {
        Ok(match kind {
            CheckKind::Exec(command) => Self::Exec(command.clone()),
            CheckKind::Tcp(address) => Self::Tcp(*address),
            CheckKind::Http { url, expect_status, insecure } => {
                let client = reqwest::Client::builder()
                    // A health endpoint is local: a proxy from the environment must not
                    // answer for it.
                    .no_proxy()
                    .timeout(timeout)
                    .danger_accept_invalid_certs(*insecure)
                    .build()
                    .map_err(|err| format!("building the HTTP client: {err}"))?;
                Self::Http { client, url: url.clone(), expect_status: *expect_status }
            }
            CheckKind::Interface(iface) => Self::Interface(iface.clone()),
        })
    }

    /// Runs one probe. Dropped at the timeout, an exec probe's process group is killed (see
    /// [`KillGroupOnDrop`]).
    pub(super) async fn probe(&self) -> Result<(), String> {
        match self {
            Self::Exec(command) => exec(command).await,
            Self::Tcp(address) => {
                TcpStream::connect(address).await.map(drop).map_err(|err| format!("connect: {err}"))
            }
            Self::Http { client, url, expect_status } => {
                let response = client.get(url).send().await.map_err(|err| format!("GET: {err}"))?;
                let status = response.status().as_u16();
                if status == *expect_status {
                    Ok(())
                } else {
                    Err(format!("status {status}, expected {expect_status}"))
                }
            }
            Self::Interface(iface) => {
                match pnet::datalink::interfaces().into_iter().find(|i| &i.name == iface) {
                    Some(i) if i.is_up() && i.is_running() => Ok(()),
                    Some(_) => Err(format!("{iface} is down or has no carrier")),
                    None => Err(format!("no interface {iface}")),
                }
            }
        }
    }
}

async fn exec(command: &str) -> Result<(), String> {
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A group of its own, so that what a hanging check started dies with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("did not start: {err}"))?;
    let mut guard = KillGroupOnDrop(child);
    let status = guard.0.wait().await.map_err(|err| format!("lost: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("exited with {status}"))
    }
}

/// Kills the child's whole process group when dropped before it was reaped: how a probe that
/// outlives its timeout (the future is dropped) ends, children included.
struct KillGroupOnDrop(tokio::process::Child);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            crate::hooks::kill_process_group(pid);
        }
    }
}
