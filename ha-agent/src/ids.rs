//! Identifiers: a node's id and a VIP group's id. Newtypes, so that the two `u32`s (and the
//! interval, the priority…) cannot be swapped silently where they travel side by side.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's id, unique among the nodes of a group (default: the last four bytes of its MAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl NodeId {
    /// Derives a node id from a MAC address: its last four bytes, unique on the LAN by
    /// construction. `None` for a MAC whose last four bytes are zero (0 is no node id).
    #[must_use]
    pub fn from_mac(mac: [u8; 6]) -> Option<Self> {
        let id = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
        (id != 0).then_some(Self(id))
    }
}

impl std::str::FromStr for NodeId {
    type Err = String;

    /// A node id as `status` prints it (`0xc000020b`), or in decimal.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => text.parse(),
        };
        match parsed {
            Ok(id) if id != 0 => Ok(Self(id)),
            _ => Err(format!("bad node id '{text}': expected e.g. 0xc000020b or 3221226059")),
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A VIP group's id: independent groups can share a LAN and a heartbeat port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(pub u32);

impl Default for GroupId {
    /// Group 1, what a single-group setup uses.
    fn default() -> Self {
        Self(1)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_from_mac() {
        assert_eq!(NodeId::from_mac([0x02, 0, 0xc0, 0, 0x02, 0x0b]), Some(NodeId(0xc000_020b)));
        assert_eq!(NodeId::from_mac([0; 6]), None);
        assert_eq!(NodeId(0xab).to_string(), "0xab");
        assert_eq!("0xab".parse::<NodeId>(), Ok(NodeId(0xab)));
        assert_eq!("171".parse::<NodeId>(), Ok(NodeId(0xab)));
        assert!("0".parse::<NodeId>().is_err() && "0xzz".parse::<NodeId>().is_err());
    }
}
