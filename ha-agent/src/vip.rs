//! The VIP edge: add and remove the virtual addresses over rtnetlink, idempotently.

use std::net::IpAddr;

use futures::TryStreamExt as _;
use rtnetlink::{
    packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage},
    Handle,
};

use crate::config::Vip;

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
    #[error("netlink: {0}")]
    Connection(#[from] std::io::Error),
    /// The kernel refused a request.
    #[error("{op} {vip}: {reason}")]
    Request {
        /// add, remove or list.
        op: &'static str,
        /// The address.
        vip: String,
        /// The kernel's answer.
        reason: String,
    },
}

impl VipManager {
    /// Opens a netlink connection (spawned on the current tokio runtime).
    pub fn new(ifindex: u32, vips: Vec<Vip>) -> Result<Self, VipError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle, ifindex, vips })
    }

    /// The VIPs it manages.
    pub fn vips(&self) -> &[Vip] {
        &self.vips
    }

    /// Adds every VIP; one already present counts as added.
    pub async fn add_all(&self) -> Result<(), VipError> {
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
                Err(err) => {
                    return Err(VipError::Request {
                        op: "add",
                        vip: vip.to_string(),
                        reason: err.to_string(),
                    })
                }
            }
        }
        Ok(())
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
                Err(err) => {
                    return Err(VipError::Request { op: "remove", vip: shown, reason: err.to_string() })
                }
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
        let list_err = |err: rtnetlink::Error| VipError::Request {
            op: "list",
            vip: "addresses".into(),
            reason: err.to_string(),
        };
        let mut stream = self.handle.address().get().set_link_index_filter(self.ifindex).execute();
        let mut found = Vec::new();
        while let Some(message) = stream.try_next().await.map_err(list_err)? {
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

fn address_of(message: &AddressMessage) -> Option<IpAddr> {
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
