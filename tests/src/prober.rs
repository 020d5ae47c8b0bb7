//! A client pinging the VIP on a strict clock, from a thread inside the client's namespace.
//!
//! Not `ping -i 0.002`: iputils ping, asked for an interval under 10 ms, sleeps 10 ms whenever a
//! reply is outstanding, so during an outage it sends every 10 ms and every outage it measures is
//! rounded up to the next 10 ms (a 23 ms gap read as 32). Here requests keep to the interval
//! whether answered or not, and each reply's time is the kernel's receive stamp, as ping's is.

use std::{
    collections::BTreeSet,
    fs, io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _};

use crate::{Lan, VIP};

/// ICMP echo request and reply types.
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
/// How long the receiver waits for replies still in flight once the sender has stopped.
const DRAIN: Duration = Duration::from_millis(100);

/// A client pinging the VIP every few ms in the background; [`Prober::stop`] returns the reply
/// times, from which the outage (the longest gap between replies) follows.
pub struct Prober {
    stop_sending: Arc<AtomicBool>,
    stop_receiving: Arc<AtomicBool>,
    sender: Option<JoinHandle<u64>>,
    receiver: Option<JoinHandle<Vec<(u64, f64)>>>,
}

/// A raw ICMP socket created inside network namespace `name` (the calling thread enters it;
/// the socket stays in it wherever it is then used).
fn icmp_socket_in(name: &str) -> io::Result<OwnedFd> {
    let netns = fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns with an open namespace file; it moves this thread only, which ends after.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket takes plain integers; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned by socket, owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // Short receive timeouts: the receiver checks now and then whether it should stop.
    set_option(&socket, libc::SO_RCVTIMEO, &libc::timeval { tv_sec: 0, tv_usec: 20_000 })?;
    set_option(&socket, libc::SO_TIMESTAMPNS, &(1 as libc::c_int))?;
    Ok(socket)
}

/// Sets the `SOL_SOCKET` option `name` of `socket` to `value`.
fn set_option<T>(socket: &OwnedFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live T of the size given.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            std::ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if set == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The internet checksum of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    !ha_common::ones_sum(bytes, 0)
}

/// An echo request with `id` carrying `sequence` (whole, in the payload, so that it never wraps).
fn echo_request(id: u16, sequence: u64) -> [u8; 16] {
    let mut packet = [0u8; 16];
    packet[0] = ECHO_REQUEST;
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[6..8].copy_from_slice(&(sequence as u16).to_be_bytes());
    packet[8..].copy_from_slice(&sequence.to_be_bytes());
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// The sequence of an echo reply with `id` from the VIP in `datagram` (IP header included).
fn echo_reply(datagram: &[u8], id: u16) -> Option<u64> {
    let header = usize::from(*datagram.first()? & 0x0f) * 4;
    let icmp = datagram.get(header..)?;
    let from_vip = datagram.get(12..16)? == VIP.octets();
    let ours = icmp.first() == Some(&ECHO_REPLY) && icmp.get(4..6)? == id.to_be_bytes();
    if !(from_vip && ours) {
        return None;
    }
    Some(u64::from_be_bytes(icmp.get(8..16)?.try_into().ok()?))
}

fn wall_clock() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// Receives one datagram into `buffer`; returns its length and when the kernel took it in
/// (`SO_TIMESTAMPNS`, wall clock seconds), or when it was read if the kernel gave no stamp. The
/// kernel's stamp keeps the receiving thread's own wake-up delay out of the gaps measured.
fn receive_stamped(socket: &OwnedFd, buffer: &mut [u8]) -> Option<(usize, f64)> {
    let mut iov = libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() };
    // Room for one control message holding a timespec, aligned as cmsghdr needs.
    let mut control = [0u64; 8];
    // SAFETY: all-zero is a valid msghdr; the pointers are set just below.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &raw mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = size_of_val(&control);
    // SAFETY: the message's buffers are live and writable for the lengths given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut message, 0) };
    let n = usize::try_from(n).ok()?;
    let mut at = None;
    // The CMSG macros walk the control buffer recvmsg filled in, within the length it set.
    // SAFETY: a message whose control buffer recvmsg filled in.
    let mut header = unsafe { libc::CMSG_FIRSTHDR(&raw const message) };
    // SAFETY: (each) a non-null header the macros returned, inside the control buffer.
    while let Some(current) = unsafe { header.as_ref() } {
        if current.cmsg_level == libc::SOL_SOCKET && current.cmsg_type == libc::SO_TIMESTAMPNS {
            // SAFETY: an SO_TIMESTAMPNS message carries one timespec, possibly unaligned.
            let data = unsafe { libc::CMSG_DATA(header) };
            // SAFETY: as above.
            let stamp = unsafe { data.cast::<libc::timespec>().read_unaligned() };
            at = Some(stamp.tv_sec as f64 + stamp.tv_nsec as f64 / 1e9);
        }
        // SAFETY: the message and a header inside its control buffer.
        header = unsafe { libc::CMSG_NXTHDR(&raw const message, header) };
    }
    Some((n, at.unwrap_or_else(wall_clock)))
}

impl Prober {
    /// Pings the VIP from host `client` every 5 ms.
    pub fn start(lan: &Lan, client: usize) -> anyhow::Result<Self> {
        Self::start_every(lan, client, "0.005")
    }

    /// Pings the VIP from host `client` every `interval` seconds (as ping's `-i`).
    pub fn start_every(lan: &Lan, client: usize, interval: &str) -> anyhow::Result<Self> {
        let seconds: f64 = interval.parse().with_context(|| format!("bad ping interval '{interval}'"))?;
        let interval = Duration::from_secs_f64(seconds);
        let name = lan.hosts[client].ns.name.clone();
        let socket = thread::spawn(move || icmp_socket_in(&name))
            .join()
            .map_err(|_| anyhow::anyhow!("the prober's setup thread panicked"))?
            .context("opening the prober's ICMP socket in the client's namespace")?;
        let receive = socket.try_clone()?;
        // Unique per prober, so that two probers on one machine tell their replies apart.
        let id =
            (std::process::id() as u16) ^ ((crate::LAN_COUNTER.fetch_add(1, Ordering::SeqCst) as u16) << 8);
        let stop_sending = Arc::new(AtomicBool::new(false));
        let stop_receiving = Arc::new(AtomicBool::new(false));
        let receiver = {
            let stop = Arc::clone(&stop_receiving);
            thread::spawn(move || {
                let mut replies = Vec::new();
                let mut buffer = [0u8; 1500];
                while !stop.load(Ordering::SeqCst) {
                    let Some((n, at)) = receive_stamped(&receive, &mut buffer) else { continue };
                    if let Some(sequence) = echo_reply(&buffer[..n], id) {
                        replies.push((sequence, at));
                    }
                }
                replies
            })
        };
        let sender = {
            let stop = Arc::clone(&stop_sending);
            thread::spawn(move || {
                // Real-time, as a measuring instrument: woken on time however busy the two cores
                // are with the daemons, or a trial's longest gap would be the sender's own worst
                // wake-up delay. Best effort: without it the figures are only coarser.
                let param = libc::sched_param { sched_priority: 1 };
                // SAFETY: 0 is the calling thread; `param` is a valid sched_param.
                let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) };
                let to = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(VIP.octets()) },
                    sin_zero: [0; 8],
                };
                let mut sent = 0u64;
                let mut next = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    sent += 1;
                    let packet = echo_request(id, sent);
                    // SAFETY: the packet and the address are valid for the lengths given. A
                    // failed send (no ARP answer yet) counts as a request that got no reply.
                    unsafe {
                        libc::sendto(
                            socket.as_raw_fd(),
                            packet.as_ptr().cast(),
                            packet.len(),
                            0,
                            (&raw const to).cast(),
                            size_of::<libc::sockaddr_in>() as libc::socklen_t,
                        );
                    }
                    // On a strict grid; a sender that fell behind by more than a request starts
                    // a new grid rather than sending a burst.
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        next = now;
                    }
                    thread::sleep(next - now);
                }
                sent
            })
        };
        Ok(Self { stop_sending, stop_receiving, sender: Some(sender), receiver: Some(receiver) })
    }

    /// Stops pinging; returns the reply timestamps in seconds.
    pub fn stop(self) -> anyhow::Result<Vec<f64>> {
        Ok(self.stop_with_counts()?.0)
    }

    /// Stops pinging; returns the reply timestamps and the counts of requests sent and of those
    /// answered.
    pub fn stop_with_counts(mut self) -> anyhow::Result<(Vec<f64>, u64, u64)> {
        let (sent, replies) = self.end()?;
        let answered = answered(&replies).len() as u64;
        Ok((replies.into_iter().map(|(_, at)| at).collect(), sent, answered))
    }

    /// Stops pinging; returns how many requests got no reply, not counting those after the
    /// last reply (still in flight when pinging stopped).
    pub fn stop_counting_lost(mut self) -> anyhow::Result<u64> {
        let (_, replies) = self.end()?;
        let answered = answered(&replies);
        let Some(&last) = answered.last() else {
            bail!("the prober got no reply at all");
        };
        // Numbered from 1.
        Ok(last - answered.len() as u64)
    }

    /// Stops the sender, waits for replies in flight, stops the receiver.
    fn end(&mut self) -> anyhow::Result<(u64, Vec<(u64, f64)>)> {
        if self.sender.is_none() && self.receiver.is_none() {
            return Ok((0, Vec::new()));
        }
        self.stop_sending.store(true, Ordering::SeqCst);
        let sent = match self.sender.take() {
            Some(sender) => sender.join().map_err(|_| anyhow::anyhow!("the prober's sender panicked"))?,
            None => 0,
        };
        thread::sleep(DRAIN);
        self.stop_receiving.store(true, Ordering::SeqCst);
        let replies = match self.receiver.take() {
            Some(receiver) => {
                receiver.join().map_err(|_| anyhow::anyhow!("the prober's receiver panicked"))?
            }
            None => Vec::new(),
        };
        Ok((sent, replies))
    }
}

/// The requests answered (a duplicate reply counts once), by sequence.
fn answered(replies: &[(u64, f64)]) -> BTreeSet<u64> {
    replies.iter().map(|&(sequence, _)| sequence).collect()
}

impl Drop for Prober {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_request_carries_its_whole_sequence_and_a_valid_checksum() {
        let packet = echo_request(0x1234, 70_000);
        assert_eq!(packet[0], ECHO_REQUEST);
        assert_eq!(checksum(&packet), 0, "a packet with its checksum in sums to zero");
        assert_eq!(u64::from_be_bytes(packet[8..].try_into().unwrap()), 70_000);
    }

    #[test]
    fn only_replies_from_the_vip_with_our_id_count() {
        let mut datagram = vec![0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0];
        datagram.extend_from_slice(&VIP.octets());
        datagram.extend_from_slice(&[192, 0, 2, 14]);
        let mut icmp = echo_request(7, 42);
        icmp[0] = ECHO_REPLY;
        datagram.extend_from_slice(&icmp);
        assert_eq!(echo_reply(&datagram, 7), Some(42));
        assert_eq!(echo_reply(&datagram, 8), None, "another prober's reply");
        datagram[12] = 10;
        assert_eq!(echo_reply(&datagram, 7), None, "not from the VIP");
    }
}
