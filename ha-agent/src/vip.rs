//! VIPs: the [`Vip`] type, and the edge that adds and removes them over rtnetlink, idempotently.

use std::{fmt, net::IpAddr, str::FromStr};

use futures::TryStreamExt as _;
use rtnetlink::{
    packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
    Handle,
};
use serde::{Deserialize, Deserializer};

/// A virtual address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

/// Why a text is not a VIP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad VIP '{text}': {reason}; expected ADDRESS/PREFIX, e.g. 192.0.2.100/24")]
pub struct VipParseError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: VipParseReason,
}

/// What is wrong with a VIP's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VipParseReason {
    /// No `/PREFIX`.
    #[error("no prefix length")]
    NoPrefix,
    /// The part before the `/` is no IP address.
    #[error("not an IP address")]
    NotAnAddress,
    /// The prefix is no number.
    #[error("prefix length is not a number")]
    PrefixNotANumber,
    /// The prefix is longer than the address.
    #[error("prefix length above {0}")]
    PrefixTooLong(u8),
    /// Unspecified, multicast or loopback.
    #[error("not a unicast address")]
    NotUnicast,
}

impl FromStr for Vip {
    type Err = VipParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| VipParseError { text: text.to_string(), reason };
        let (addr, prefix) = text.split_once('/').ok_or_else(|| bad(VipParseReason::NoPrefix))?;
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad(VipParseReason::NotAnAddress))?;
        let prefix: u8 = prefix.trim().parse().map_err(|_| bad(VipParseReason::PrefixNotANumber))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad(VipParseReason::PrefixTooLong(max)));
        }
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(bad(VipParseReason::NotUnicast));
        }
        Ok(Self { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for Vip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Adds and removes this agent's VIPs on one interface.
pub struct VipManager {
    handle: Handle,
    ifindex: u32,
    vips: Vec<Vip>,
}

/// Errors of the VIP edge.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// The netlink socket could not be opened.
    #[error("opening a netlink socket")]
    Connection(#[from] std::io::Error),
    /// The kernel refused to add a VIP.
    #[error("adding {0}")]
    Add(Vip, #[source] rtnetlink::Error),
    /// The kernel refused to remove an address.
    #[error("removing {0}")]
    Remove(String, #[source] rtnetlink::Error),
    /// The interface's addresses could not be listed.
    #[error("listing the addresses")]
    List(#[source] rtnetlink::Error),
}

impl VipManager {
    /// Opens a netlink connection (spawned on the current tokio runtime).
    pub fn new(ifindex: u32, vips: Vec<Vip>) -> Result<Self, VipError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle, ifindex, vips })
    }

    /// A manager of `vips` on the same interface, sharing this one's netlink connection.
    #[must_use]
    pub fn with_vips(&self, vips: Vec<Vip>) -> Self {
        Self { handle: self.handle.clone(), ifindex: self.ifindex, vips }
    }

    /// Manages them on the interface of index `ifindex` from now on (it was recreated).
    pub fn set_ifindex(&mut self, ifindex: u32) {
        self.ifindex = ifindex;
    }

    /// The VIPs it manages.
    pub fn vips(&self) -> &[Vip] {
        &self.vips
    }

    /// Adds every VIP, each on its own: one the kernel refuses does not keep the others off. One
    /// already present counts as added. Returns the failures, none when all are on.
    pub async fn add_all(&self) -> Vec<VipError> {
        let mut failures = Vec::new();
        for vip in &self.vips {
            let mut request = self.handle.address().add(self.ifindex, vip.addr, vip.prefix);
            if vip.addr.is_ipv6() {
                // No duplicate address detection: the VIP must answer at once, and uniqueness is
                // what the election guarantees.
                let message = request.message_mut();
                message.header.flags |= AddressHeaderFlags::Nodad;
                message.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            match request.execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(msg))
                    if msg.code.map(|c| -c.get()) == Some(libc::EEXIST) => {}
                Err(err) => failures.push(VipError::Add(*vip, err)),
            }
        }
        failures
    }

    /// Removes every VIP that is on the interface; returns how many were.
    pub async fn remove_all(&self) -> Result<usize, VipError> {
        let mut removed = 0;
        for message in self.present_messages().await? {
            let shown = describe(&message);
            match self.handle.address().del(message).execute().await {
                Ok(()) => removed += 1,
                Err(rtnetlink::Error::NetlinkError(msg))
                    if msg.code.map(|c| -c.get()) == Some(libc::EADDRNOTAVAIL) => {}
                Err(err) => return Err(VipError::Remove(shown, err)),
            }
        }
        Ok(removed)
    }

    /// The VIPs currently on the interface.
    pub async fn present(&self) -> Result<Vec<Vip>, VipError> {
        Ok(self
            .present_messages()
            .await?
            .iter()
            .filter_map(|m| address_of(m).map(|addr| Vip { addr, prefix: m.header.prefix_len }))
            .collect())
    }

    async fn present_messages(&self) -> Result<Vec<AddressMessage>, VipError> {
        let mut stream = self.handle.address().get().set_link_index_filter(self.ifindex).execute();
        let mut found = Vec::new();
        while let Some(message) = stream.try_next().await.map_err(VipError::List)? {
            if message.header.index != self.ifindex {
                continue;
            }
            if address_of(&message).is_some_and(|addr| self.vips.iter().any(|v| v.addr == addr)) {
                found.push(message);
            }
        }
        Ok(found)
    }
}

/// The address an address message is about (IFA_LOCAL, else IFA_ADDRESS).
pub(crate) fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on point-to-point links).
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(addr) => Some(*addr),
        _ => None,
    });
    local.or_else(|| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(addr) => Some(*addr),
            _ => None,
        })
    })
}

fn describe(message: &AddressMessage) -> String {
    match address_of(message) {
        Some(addr) => format!("{addr}/{}", message.header.prefix_len),
        None => "an address".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vips_parse_and_print() {
        let vip: Vip = " 2001:db8::100/64".trim().parse().unwrap();
        assert_eq!(vip.to_string(), "2001:db8::100/64");
        let cases = [
            ("192.0.2.1", VipParseReason::NoPrefix),
            ("nonsense/24", VipParseReason::NotAnAddress),
            ("192.0.2.1/x", VipParseReason::PrefixNotANumber),
            ("192.0.2.1/33", VipParseReason::PrefixTooLong(32)),
            ("2001:db8::1/129", VipParseReason::PrefixTooLong(128)),
            ("224.0.0.1/24", VipParseReason::NotUnicast),
            ("127.0.0.1/8", VipParseReason::NotUnicast),
        ];
        for (text, reason) in cases {
            assert_eq!(text.parse::<Vip>().unwrap_err().reason, reason, "{text}");
        }
    }
}
