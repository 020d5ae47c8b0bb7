//! Which `GROUP_ENTRIES` index each served group has. A known peer's `PeerSlot` holds its group's
//! index, so a group that stays keeps its index across a reload; a new group takes the lowest
//! free one, and a freed index may go to another group (the program tells them apart by the
//! group id in the entry).

use std::collections::BTreeMap;

use ha_common::MAX_GROUPS;

/// The served groups' indices in `GROUP_ENTRIES`.
#[derive(Debug, Default)]
pub(super) struct GroupEntries(BTreeMap<u32, u32>);

impl GroupEntries {
    /// `group`'s index, if it has one.
    pub(super) fn index(&self, group: u32) -> Option<u32> {
        self.0.get(&group).copied()
    }

    /// Gives `group` the lowest free index (its own if it has one); `None` when all
    /// [`MAX_GROUPS`] are taken.
    pub(super) fn assign(&mut self, group: u32) -> Option<u32> {
        if let Some(index) = self.index(group) {
            return Some(index);
        }
        let taken: std::collections::BTreeSet<u32> = self.0.values().copied().collect();
        let index = (0..MAX_GROUPS).find(|index| !taken.contains(index))?;
        self.0.insert(group, index);
        Some(index)
    }

    /// Frees `group`'s index; returns it.
    pub(super) fn release(&mut self, group: u32) -> Option<u32> {
        self.0.remove(&group)
    }

    /// The groups with an index.
    pub(super) fn groups(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_keeps_its_index_and_a_new_one_takes_the_lowest_free() {
        let mut entries = GroupEntries::default();
        assert_eq!((entries.assign(7), entries.assign(3), entries.assign(9)), (Some(0), Some(1), Some(2)));
        assert_eq!(entries.assign(3), Some(1), "assigned again, the same");
        assert_eq!(entries.release(7), Some(0));
        assert_eq!(entries.release(7), None);
        assert_eq!(entries.assign(11), Some(0), "the freed index");
        assert_eq!((entries.index(3), entries.index(9), entries.index(7)), (Some(1), Some(2), None));
        assert_eq!(entries.groups().collect::<Vec<_>>(), [3, 9, 11]);
    }

    #[test]
    fn no_more_than_max_groups() {
        let mut entries = GroupEntries::default();
        for group in 0..MAX_GROUPS {
            assert_eq!(entries.assign(group + 100), Some(group));
        }
        assert_eq!(entries.assign(1), None);
    }
}
