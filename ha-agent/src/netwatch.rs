//! The link and address watch: the kernel's rtnetlink notifications, so that the agent hears of
//! its interface going down, disappearing or coming back under the same name, and of a VIP
//! removed behind its back, at once and without polling `ip`.

use std::{io, net::IpAddr};

use futures::{channel::mpsc::UnboundedReceiver, StreamExt as _};
use rtnetlink::{
    constants::{RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK},
    packet_core::{NetlinkMessage, NetlinkPayload},
    packet_route::{
        link::{LinkAttribute, LinkFlags, LinkMessage},
        RouteNetlinkMessage,
    },
    sys::{AsyncSocket as _, SocketAddr},
};

use crate::vip::address_of;

/// A change the agent may have to react to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetEvent {
    /// A link was created or changed.
    Link {
        /// Its name.
        name: String,
        /// Its index (a recreated interface has a new one).
        index: u32,
        /// Whether it is up and has a carrier.
        usable: bool,
    },
    /// A link was deleted.
    LinkGone {
        /// Its index.
        index: u32,
    },
    /// An address was removed from a link.
    AddressRemoved {
        /// The link's index.
        index: u32,
        /// The address.
        addr: IpAddr,
    },
}

/// The notifications of one rtnetlink socket subscribed to link and address changes.
pub struct NetWatch {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
}

impl NetWatch {
    /// Subscribes (the connection runs on the current tokio runtime).
    pub fn open() -> io::Result<Self> {
        let (mut connection, _handle, messages) = rtnetlink::new_connection()?;
        let groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
        connection.socket_mut().socket_mut().bind(&SocketAddr::new(0, groups))?;
        tokio::spawn(connection);
        Ok(Self { messages })
    }

    /// The next change the agent may care about; `None` if the connection is gone.
    pub async fn next(&mut self) -> Option<NetEvent> {
        loop {
            let (message, _) = self.messages.next().await?;
            if let NetlinkPayload::InnerMessage(inner) = message.payload {
                if let Some(event) = decode(&inner) {
                    return Some(event);
                }
            }
        }
    }
}

/// The event a notification means, if it is one the agent may care about.
#[must_use]
pub fn decode(message: &RouteNetlinkMessage) -> Option<NetEvent> {
    match message {
        RouteNetlinkMessage::NewLink(link) => Some(NetEvent::Link {
            name: link_name(link)?,
            index: link.header.index,
            usable: link.header.flags.contains(LinkFlags::Up | LinkFlags::Running),
        }),
        RouteNetlinkMessage::DelLink(link) => Some(NetEvent::LinkGone { index: link.header.index }),
        RouteNetlinkMessage::DelAddress(address) => {
            Some(NetEvent::AddressRemoved { index: address.header.index, addr: address_of(address)? })
        }
        _ => None,
    }
}

fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|attribute| match attribute {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};

    use super::*;

    fn link(index: u32, name: &str, flags: LinkFlags) -> LinkMessage {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = flags;
        link.attributes.push(LinkAttribute::IfName(name.into()));
        link
    }

    #[test]
    fn link_and_address_notifications_decode() {
        let up = link(7, "eth0", LinkFlags::Up | LinkFlags::Running | LinkFlags::LowerUp);
        assert_eq!(
            decode(&RouteNetlinkMessage::NewLink(up)),
            Some(NetEvent::Link { name: "eth0".into(), index: 7, usable: true })
        );
        let no_carrier = link(7, "eth0", LinkFlags::Up);
        assert_eq!(
            decode(&RouteNetlinkMessage::NewLink(no_carrier)),
            Some(NetEvent::Link { name: "eth0".into(), index: 7, usable: false })
        );
        assert_eq!(
            decode(&RouteNetlinkMessage::DelLink(link(7, "eth0", LinkFlags::empty()))),
            Some(NetEvent::LinkGone { index: 7 })
        );
        let mut address = AddressMessage::default();
        address.header.index = 7;
        address.attributes.push(AddressAttribute::Local("192.0.2.100".parse().unwrap()));
        assert_eq!(
            decode(&RouteNetlinkMessage::DelAddress(address.clone())),
            Some(NetEvent::AddressRemoved { index: 7, addr: "192.0.2.100".parse().unwrap() })
        );
        assert_eq!(decode(&RouteNetlinkMessage::NewAddress(address)), None);
    }
}
