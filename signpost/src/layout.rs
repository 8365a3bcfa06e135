//! Finding the two partition sets and the PRIVATE partition in a table, by type GUID only
//! (`reference/signpost.md` §3.1; names and labels are never used).
//!
//! Set A is the first BOOT, ROOT and HASH partition in table order, set B the second. Unlike
//! the reference, which ignores extra ones, a third BOOT/ROOT/HASH partition or a second
//! PRIVATE partition is an error: such a disk is not one this tool can reason about. Each set
//! must also be numbered BOOT, BOOT+1, BOOT+2, since the kernel command line finds ROOT and
//! HASH relative to the BOOT partition the bootloader chose (`image-layout.md` §1.2).

use crate::Result;
use crate::ab::SetId;
use crate::error::{
    ExtraPartitionsSnafu, MissingPartitionSnafu, MissingPrivateSnafu, SetNotContiguousSnafu,
};
use crate::gpt::Table;
use crate::gpt_types::{Guid, PartitionRole};
use serde::Serialize;
use std::path::Path;

/// The partition numbers (1-based) of one set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SetPartitions {
    /// The BOOT partition; it carries the set's gptprio flags.
    pub boot: u32,
    /// The ROOT partition (BOOT + 1).
    pub root: u32,
    /// The HASH partition (BOOT + 2).
    pub hash: u32,
}

impl SetPartitions {
    /// Whether partition `number` belongs to this set.
    pub fn contains(&self, number: u32) -> bool {
        [self.boot, self.root, self.hash].contains(&number)
    }
}

/// Where the sets and the PRIVATE partition are in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Set A.
    pub a: SetPartitions,
    /// Set B.
    pub b: SetPartitions,
    /// The PRIVATE partition (bit 57).
    pub private: u32,
}

/// Human name of a role in messages.
fn role_name(role: PartitionRole) -> &'static str {
    match role {
        PartitionRole::Boot => "BOOT",
        PartitionRole::Root => "ROOT",
        PartitionRole::Hash => "HASH",
        PartitionRole::Private => "PRIVATE",
        _ => "other",
    }
}

fn numbers_of(table: &Table, role: PartitionRole) -> Vec<u32> {
    let wanted = role.type_guid();
    (1..)
        .zip(table.entries())
        .filter(|(_, entry)| Guid(entry.partition_type_guid) == wanted)
        .map(|(number, _)| number)
        .collect()
}

fn list(numbers: &[u32]) -> String {
    numbers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Layout {
    /// Find the sets in `table` (`path` names the disk in errors).
    pub fn find(table: &Table, path: &Path) -> Result<Layout> {
        let mut found = Vec::new();
        for role in [
            PartitionRole::Boot,
            PartitionRole::Root,
            PartitionRole::Hash,
        ] {
            let numbers = numbers_of(table, role);
            if numbers.len() > 2 {
                return ExtraPartitionsSnafu {
                    path,
                    role: role_name(role),
                    numbers: list(&numbers),
                    expected: 2_usize,
                }
                .fail();
            }
            for set in SetId::BOTH {
                if numbers.len() <= set as usize {
                    return MissingPartitionSnafu {
                        path,
                        set,
                        role: role_name(role),
                        type_guid: role.type_guid().to_string(),
                    }
                    .fail();
                }
            }
            found.push(numbers);
        }
        let private = numbers_of(table, PartitionRole::Private);
        let private = match private.as_slice() {
            [] => return MissingPrivateSnafu { path }.fail(),
            [one] => *one,
            more => {
                return ExtraPartitionsSnafu {
                    path,
                    role: "PRIVATE",
                    numbers: list(more),
                    expected: 1_usize,
                }
                .fail();
            }
        };
        let set = |index: usize| SetPartitions {
            boot: found[0][index],
            root: found[1][index],
            hash: found[2][index],
        };
        let layout = Layout {
            a: set(0),
            b: set(1),
            private,
        };
        for id in SetId::BOTH {
            let parts = layout.set(id);
            if parts.root != parts.boot + 1 || parts.hash != parts.boot + 2 {
                return SetNotContiguousSnafu {
                    path,
                    set: id,
                    boot: parts.boot,
                    root: parts.root,
                    hash: parts.hash,
                }
                .fail();
            }
        }
        Ok(layout)
    }

    /// The partitions of `set`.
    pub const fn set(&self, set: SetId) -> SetPartitions {
        match set {
            SetId::A => self.a,
            SetId::B => self.b,
        }
    }

    /// The set partition `number` belongs to, if any.
    pub fn set_of(&self, number: u32) -> Option<SetId> {
        SetId::BOTH
            .into_iter()
            .find(|set| self.set(*set).contains(number))
    }
}
