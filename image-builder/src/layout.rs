//! Disk layout arithmetic (`image-layout.md` §1): pure functions, no I/O.
//!
//! Every size is in MiB. A bank (EFI, BOOT, ROOT, HASH, RESERVED) is exactly 500 × G MiB; the
//! scale factors are fixed forever because in-place updates write into partitions whose offsets
//! must never move.
use gpt_contract::{DATA_FALLBACK_UNIQUE_GUID, DATA_PREFERRED_UNIQUE_GUID, Guid, PartitionRole};
use serde::{Serialize, Serializer};
use std::fmt;

/// 1 MiB in 512-byte sectors.
pub const SECTORS_PER_MIB: u64 = 2048;
/// 1 MiB in bytes.
pub const MIB: u64 = 1024 * 1024;
/// The largest OS or data image size accepted, in GiB (keeps every product far from overflow).
pub const MAX_IMAGE_SIZE_GIB: u32 = 16 * 1024;

/// How the data partition is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionPlan {
    /// OS disk of G GiB with a 1 MiB DATA-A, plus a separate data disk holding DATA-B.
    Split,
    /// One disk of G + D GiB whose DATA-A holds the data.
    Unified,
}

/// Whether the OS disk has two banks (A/B, in-place updates) or one bank of double size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Banks {
    /// Banks A and B (image feature `in-place-updates`, the default).
    #[serde(rename = "ab")]
    AB,
    /// Bank A only, each of its partitions doubled (`in-place-updates = false`).
    Single,
}

/// The inputs of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LayoutSettings {
    /// G: the OS image size in GiB.
    pub os_image_size_gib: u32,
    /// D: the data image size in GiB.
    pub data_image_size_gib: u32,
    /// Split or unified.
    pub partition_plan: PartitionPlan,
    /// A/B or single bank.
    pub banks: Banks,
}

impl Default for LayoutSettings {
    /// The variant defaults: G = 2, D = 1, split, A/B.
    fn default() -> Self {
        LayoutSettings {
            os_image_size_gib: 2,
            data_image_size_gib: 1,
            partition_plan: PartitionPlan::Split,
            banks: Banks::AB,
        }
    }
}

/// One of the two partition sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Bank {
    /// Bank A (partitions 2–6).
    A,
    /// Bank B (partitions 7–11).
    B,
}

/// One partition of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// GPT partition number (1-based, in start order).
    pub number: u32,
    /// GPT partition name (empty for data partitions).
    pub name: &'static str,
    /// What the partition is for; gives the type GUID.
    #[serde(serialize_with = "serialize_role")]
    pub role: PartitionRole,
    /// The partition's type GUID (text form).
    #[serde(serialize_with = "serialize_guid")]
    pub type_guid: Guid,
    /// The bank it belongs to, if any.
    pub bank: Option<Bank>,
    /// First MiB.
    pub start_mib: u64,
    /// Size in MiB.
    pub size_mib: u64,
}

impl Partition {
    /// First 512-byte sector.
    pub fn first_sector(&self) -> u64 {
        self.start_mib * SECTORS_PER_MIB
    }

    /// Last 512-byte sector (inclusive): `(start + size) × 2048 − 1`.
    pub fn last_sector(&self) -> u64 {
        (self.start_mib + self.size_mib) * SECTORS_PER_MIB - 1
    }

    /// Byte offset of the partition on its disk.
    pub fn offset_bytes(&self) -> u64 {
        self.start_mib * MIB
    }

    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_mib * MIB
    }

    /// The fixed unique GUID of a data partition, if this is one (`image-layout.md` §2.2).
    pub fn fixed_unique_guid(&self, plan: PartitionPlan, on_data_disk: bool) -> Option<Guid> {
        let guid = match (plan, on_data_disk) {
            (PartitionPlan::Split, false) => DATA_FALLBACK_UNIQUE_GUID,
            _ => DATA_PREFERRED_UNIQUE_GUID,
        };
        (self.role == PartitionRole::Data).then_some(guid)
    }
}

fn serialize_role<S: Serializer>(role: &PartitionRole, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role_name(*role))
}

fn serialize_guid<S: Serializer>(guid: &Guid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(guid)
}

/// A short lower-case name of a role, used in reports and messages.
pub fn role_name(role: PartitionRole) -> &'static str {
    match role {
        PartitionRole::BiosBoot => "bios-boot",
        PartitionRole::EfiSystem => "efi-system",
        PartitionRole::EfiBackup => "efi-backup",
        PartitionRole::Boot => "boot",
        PartitionRole::Root => "root",
        PartitionRole::Hash => "hash",
        PartitionRole::Reserved => "reserved",
        PartitionRole::Private => "private",
        PartitionRole::Data => "data",
    }
}

/// The partitions of one disk image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    /// Disk size in MiB (the last MiB holds the backup GPT).
    pub size_mib: u64,
    /// Partitions in number order.
    pub partitions: Vec<Partition>,
}

impl Disk {
    /// Disk size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_mib * MIB
    }

    /// The partition of `role` in `bank` (`None` for shared partitions).
    pub fn find(&self, role: PartitionRole, bank: Option<Bank>) -> Option<&Partition> {
        self.partitions
            .iter()
            .find(|p| p.role == role && p.bank == bank)
    }
}

/// The OS disk and, in the split plan, the data disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// The settings this layout was computed from.
    pub settings: LayoutSettings,
    /// The OS disk (`<prefix>.img`).
    pub os_disk: Disk,
    /// The data disk (`<prefix>-data.img`), split plan only.
    pub data_disk: Option<Disk>,
}

/// Why a layout cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError(pub String);

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LayoutError {}

struct Planned {
    name: &'static str,
    role: PartitionRole,
    bank: Option<Bank>,
    size_mib: u64,
}

fn planned(name: &'static str, role: PartitionRole, bank: Option<Bank>, size_mib: u64) -> Planned {
    Planned {
        name,
        role,
        bank,
        size_mib,
    }
}

/// Place `items` one after the other from 1 MiB, numbering them from 1.
fn place(items: Vec<Planned>) -> Vec<Partition> {
    let mut start = 1;
    let mut number = 0;
    items
        .into_iter()
        .map(|item| {
            number += 1;
            let partition = Partition {
                number,
                name: item.name,
                role: item.role,
                type_guid: item.role.type_guid(),
                bank: item.bank,
                start_mib: start,
                size_mib: item.size_mib,
            };
            start += item.size_mib;
            partition
        })
        .collect()
}

fn bank_items(bank: Bank, g: u64, scale: u64) -> Vec<Planned> {
    let (efi_name, efi_role, boot, root, hash, reserved) = match bank {
        Bank::A => (
            "EFI-SYSTEM",
            PartitionRole::EfiSystem,
            "BOTTLEROCKET-BOOT-A",
            "BOTTLEROCKET-ROOT-A",
            "BOTTLEROCKET-HASH-A",
            "BOTTLEROCKET-RESERVED-A",
        ),
        Bank::B => (
            "EFI-BACKUP",
            PartitionRole::EfiBackup,
            "BOTTLEROCKET-BOOT-B",
            "BOTTLEROCKET-ROOT-B",
            "BOTTLEROCKET-HASH-B",
            "BOTTLEROCKET-RESERVED-B",
        ),
    };
    let bank = Some(bank);
    vec![
        planned(efi_name, efi_role, bank, 5 * scale),
        planned(boot, PartitionRole::Boot, bank, 20 * g * scale),
        planned(root, PartitionRole::Root, bank, 460 * g * scale),
        planned(hash, PartitionRole::Hash, bank, 5 * g * scale),
        planned(
            reserved,
            PartitionRole::Reserved,
            bank,
            (15 * g - 5) * scale,
        ),
    ]
}

impl Layout {
    /// Compute the layout of `settings`, checking every invariant the boot path relies on.
    pub fn compute(settings: LayoutSettings) -> Result<Layout, LayoutError> {
        let (g32, d32) = (settings.os_image_size_gib, settings.data_image_size_gib);
        for (what, value) in [("OS image", g32), ("data image", d32)] {
            if value == 0 || value > MAX_IMAGE_SIZE_GIB {
                return Err(LayoutError(format!(
                    "the {what} size must be between 1 and {MAX_IMAGE_SIZE_GIB} GiB, not {value}"
                )));
            }
        }
        let (g, d) = (u64::from(g32), u64::from(d32));
        let mut items = vec![planned("BIOS-BOOT", PartitionRole::BiosBoot, None, 4)];
        match settings.banks {
            Banks::AB => {
                items.extend(bank_items(Bank::A, g, 1));
                items.extend(bank_items(Bank::B, g, 1));
            }
            Banks::Single => items.extend(bank_items(Bank::A, g, 2)),
        }
        items.push(planned(
            "BOTTLEROCKET-PRIVATE",
            PartitionRole::Private,
            None,
            24 * g - 7,
        ));
        let (data_a_mib, os_disk_mib) = match settings.partition_plan {
            PartitionPlan::Split => (1, g * 1024),
            PartitionPlan::Unified => (d * 1024, (g + d) * 1024),
        };
        items.push(planned("", PartitionRole::Data, None, data_a_mib));
        let os_disk = Disk {
            size_mib: os_disk_mib,
            partitions: place(items),
        };
        let data_disk = (settings.partition_plan == PartitionPlan::Split).then(|| Disk {
            size_mib: d * 1024,
            partitions: place(vec![planned("", PartitionRole::Data, None, d * 1024 - 2)]),
        });
        let layout = Layout {
            settings,
            os_disk,
            data_disk,
        };
        layout.check()?;
        Ok(layout)
    }

    /// Check the invariants: MiB-aligned, no gaps or overlaps, inside the usable area (1 MiB
    /// kept at each end for the GPT), and ROOT = BOOT + 1, HASH = BOOT + 2 in every bank.
    pub fn check(&self) -> Result<(), LayoutError> {
        for disk in std::iter::once(&self.os_disk).chain(&self.data_disk) {
            let mut next = 1;
            for (index, p) in disk.partitions.iter().enumerate() {
                if p.number as usize != index + 1 || p.start_mib != next || p.size_mib == 0 {
                    return Err(LayoutError(format!(
                        "partition {} ({}) does not follow its predecessor",
                        p.number, p.name
                    )));
                }
                next = p.start_mib + p.size_mib;
            }
            if next + 1 > disk.size_mib {
                return Err(LayoutError(format!(
                    "the partitions end at {next} MiB, past the usable end of a {} MiB disk",
                    disk.size_mib
                )));
            }
        }
        for bank in [Bank::A, Bank::B] {
            let Some(boot) = self.os_disk.find(PartitionRole::Boot, Some(bank)) else {
                continue;
            };
            for (role, offset) in [(PartitionRole::Root, 1), (PartitionRole::Hash, 2)] {
                let found = self.os_disk.find(role, Some(bank)).map(|p| p.number);
                if found != Some(boot.number + offset) {
                    return Err(LayoutError(format!(
                        "bank {bank:?}: {} must be partition BOOT+{offset} ({}), found {found:?}",
                        role_name(role),
                        boot.number + offset
                    )));
                }
            }
        }
        Ok(())
    }

    /// The partition of `role` in bank A (the bank the build populates).
    pub fn bank_a(&self, role: PartitionRole) -> Option<&Partition> {
        self.os_disk.find(role, Some(Bank::A))
    }

    /// The shared partition of `role` on the OS disk (PRIVATE, DATA-A, BIOS-BOOT).
    pub fn shared(&self, role: PartitionRole) -> Option<&Partition> {
        self.os_disk.find(role, None)
    }
}

/// Publish sizes (`image-layout.md` §1): `P = max(hint, G + D)`; split → (G, P − G), unified →
/// (P, none). Returns the OS volume and the optional data volume, in GiB.
pub fn publish_volume_sizes(settings: LayoutSettings, hint_gib: u32) -> (u32, Option<u32>) {
    let g = settings.os_image_size_gib;
    let p = hint_gib.max(g.saturating_add(settings.data_image_size_gib));
    match settings.partition_plan {
        PartitionPlan::Split => (g, Some(p - g)),
        PartitionPlan::Unified => (p, None),
    }
}

#[cfg(test)]
mod tests {
    use super::{Bank, Banks, Layout, LayoutSettings, PartitionPlan, publish_volume_sizes};
    use gpt_contract::{DATA_FALLBACK_UNIQUE_GUID, DATA_PREFERRED_UNIQUE_GUID, PartitionRole};

    fn split(g: u32) -> Layout {
        Layout::compute(LayoutSettings {
            os_image_size_gib: g,
            ..LayoutSettings::default()
        })
        .unwrap()
    }

    fn table(layout: &Layout) -> Vec<(u32, &'static str, u64, u64)> {
        layout
            .os_disk
            .partitions
            .iter()
            .map(|p| (p.number, p.name, p.start_mib, p.size_mib))
            .collect()
    }

    const NAMES: [&str; 13] = [
        "BIOS-BOOT",
        "EFI-SYSTEM",
        "BOTTLEROCKET-BOOT-A",
        "BOTTLEROCKET-ROOT-A",
        "BOTTLEROCKET-HASH-A",
        "BOTTLEROCKET-RESERVED-A",
        "EFI-BACKUP",
        "BOTTLEROCKET-BOOT-B",
        "BOTTLEROCKET-ROOT-B",
        "BOTTLEROCKET-HASH-B",
        "BOTTLEROCKET-RESERVED-B",
        "BOTTLEROCKET-PRIVATE",
        "",
    ];

    /// The spec's table §1.1: (G, [(start, size); 13], disk size).
    /// (start MiB, size MiB) of partitions 1–13.
    type Rows = [(u64, u64); 13];

    const SPEC_TABLE: [(u32, Rows, u64); 4] = [
        (
            1,
            [
                (1, 4),
                (5, 5),
                (10, 20),
                (30, 460),
                (490, 5),
                (495, 10),
                (505, 5),
                (510, 20),
                (530, 460),
                (990, 5),
                (995, 10),
                (1005, 17),
                (1022, 1),
            ],
            1024,
        ),
        (
            2,
            [
                (1, 4),
                (5, 5),
                (10, 40),
                (50, 920),
                (970, 10),
                (980, 25),
                (1005, 5),
                (1010, 40),
                (1050, 920),
                (1970, 10),
                (1980, 25),
                (2005, 41),
                (2046, 1),
            ],
            2048,
        ),
        (
            4,
            [
                (1, 4),
                (5, 5),
                (10, 80),
                (90, 1840),
                (1930, 20),
                (1950, 55),
                (2005, 5),
                (2010, 80),
                (2090, 1840),
                (3930, 20),
                (3950, 55),
                (4005, 89),
                (4094, 1),
            ],
            4096,
        ),
        (
            8,
            [
                (1, 4),
                (5, 5),
                (10, 160),
                (170, 3680),
                (3850, 40),
                (3890, 115),
                (4005, 5),
                (4010, 160),
                (4170, 3680),
                (7850, 40),
                (7890, 115),
                (8005, 185),
                (8190, 1),
            ],
            8192,
        ),
    ];

    #[test]
    fn split_plan_matches_the_spec_tables() {
        for (g, rows, disk_mib) in SPEC_TABLE {
            let layout = split(g);
            let expected: Vec<_> = rows
                .iter()
                .zip(NAMES)
                .enumerate()
                .map(|(i, (&(start, size), name))| (i as u32 + 1, name, start, size))
                .collect();
            assert_eq!(table(&layout), expected, "G = {g}");
            assert_eq!(layout.os_disk.size_mib, disk_mib, "G = {g}");
            // The data disk: one partition at 1 MiB of D × 1024 − 2.
            let data = layout.data_disk.as_ref().unwrap();
            assert_eq!(data.size_mib, 1024);
            assert_eq!(data.partitions.len(), 1);
            assert_eq!(
                (data.partitions[0].start_mib, data.partitions[0].size_mib),
                (1, 1022)
            );
            assert_eq!(data.partitions[0].role, PartitionRole::Data);
        }
    }

    #[test]
    fn types_and_banks() {
        let layout = split(2);
        let roles: Vec<_> = layout.os_disk.partitions.iter().map(|p| p.role).collect();
        use PartitionRole::{
            BiosBoot, Boot, Data, EfiBackup, EfiSystem, Hash, Private, Reserved, Root,
        };
        assert_eq!(
            roles,
            [
                BiosBoot, EfiSystem, Boot, Root, Hash, Reserved, EfiBackup, Boot, Root, Hash,
                Reserved, Private, Data
            ]
        );
        for p in &layout.os_disk.partitions {
            assert_eq!(p.type_guid, p.role.type_guid());
            let expected_bank = match p.number {
                2..=6 => Some(Bank::A),
                7..=11 => Some(Bank::B),
                _ => None,
            };
            assert_eq!(p.bank, expected_bank, "partition {}", p.number);
        }
        assert_eq!(layout.bank_a(Boot).unwrap().number, 3);
        assert_eq!(layout.os_disk.find(Boot, Some(Bank::B)).unwrap().number, 8);
        assert_eq!(layout.shared(Private).unwrap().number, 12);
        assert_eq!(layout.shared(Data).unwrap().number, 13);
    }

    #[test]
    fn sectors_follow_the_end_formula() {
        let layout = split(2);
        let root_a = layout.bank_a(PartitionRole::Root).unwrap();
        assert_eq!(root_a.first_sector(), 50 * 2048);
        assert_eq!(root_a.last_sector(), 970 * 2048 - 1);
        for pair in layout.os_disk.partitions.windows(2) {
            assert_eq!(pair[0].last_sector() + 1, pair[1].first_sector());
        }
    }

    #[test]
    fn unified_plan_matches_the_spec() {
        let layout = Layout::compute(LayoutSettings {
            os_image_size_gib: 4,
            data_image_size_gib: 1,
            partition_plan: PartitionPlan::Unified,
            banks: Banks::AB,
        })
        .unwrap();
        let four = split(4);
        assert_eq!(table(&layout)[..12], table(&four)[..12]);
        let data = layout.shared(PartitionRole::Data).unwrap();
        assert_eq!(
            (data.number, data.start_mib, data.size_mib),
            (13, 4094, 1024)
        );
        assert_eq!(layout.os_disk.size_mib, 5120);
        assert!(layout.data_disk.is_none());
        assert_eq!(
            data.fixed_unique_guid(PartitionPlan::Unified, false),
            Some(DATA_PREFERRED_UNIQUE_GUID)
        );
    }

    #[test]
    fn data_guids_follow_the_plan() {
        let layout = split(2);
        let data_a = layout.shared(PartitionRole::Data).unwrap();
        assert_eq!(
            data_a.fixed_unique_guid(PartitionPlan::Split, false),
            Some(DATA_FALLBACK_UNIQUE_GUID)
        );
        let data_b = &layout.data_disk.as_ref().unwrap().partitions[0];
        assert_eq!(
            data_b.fixed_unique_guid(PartitionPlan::Split, true),
            Some(DATA_PREFERRED_UNIQUE_GUID)
        );
        assert_eq!(
            layout
                .bank_a(PartitionRole::Boot)
                .unwrap()
                .fixed_unique_guid(PartitionPlan::Split, false),
            None
        );
    }

    #[test]
    fn single_bank_matches_the_spec() {
        let layout = Layout::compute(LayoutSettings {
            banks: Banks::Single,
            ..LayoutSettings::default()
        })
        .unwrap();
        assert_eq!(
            table(&layout),
            [
                (1, "BIOS-BOOT", 1, 4),
                (2, "EFI-SYSTEM", 5, 10),
                (3, "BOTTLEROCKET-BOOT-A", 15, 80),
                (4, "BOTTLEROCKET-ROOT-A", 95, 1840),
                (5, "BOTTLEROCKET-HASH-A", 1935, 20),
                (6, "BOTTLEROCKET-RESERVED-A", 1955, 50),
                (7, "BOTTLEROCKET-PRIVATE", 2005, 41),
                (8, "", 2046, 1),
            ]
        );
        assert_eq!(layout.os_disk.size_mib, 2048);
        assert!(
            layout
                .os_disk
                .find(PartitionRole::Boot, Some(Bank::B))
                .is_none()
        );
    }

    #[test]
    fn every_size_gives_a_consistent_layout() {
        for g in 1..=64 {
            for d in 1..=4 {
                for plan in [PartitionPlan::Split, PartitionPlan::Unified] {
                    for banks in [Banks::AB, Banks::Single] {
                        let settings = LayoutSettings {
                            os_image_size_gib: g,
                            data_image_size_gib: d,
                            partition_plan: plan,
                            banks,
                        };
                        let layout = Layout::compute(settings).unwrap();
                        let bank_total: u64 = layout
                            .os_disk
                            .partitions
                            .iter()
                            .filter(|p| p.bank.is_some())
                            .map(|p| p.size_mib)
                            .sum();
                        assert_eq!(bank_total, 1000 * u64::from(g));
                        let last = layout.os_disk.partitions.last().unwrap();
                        let tail = layout.os_disk.size_mib - (last.start_mib + last.size_mib);
                        let expected_tail = if plan == PartitionPlan::Split { 1 } else { 2 };
                        assert_eq!(tail, expected_tail);
                    }
                }
            }
        }
    }

    #[test]
    fn bad_sizes_are_rejected() {
        for (g, d) in [(0, 1), (1, 0), (super::MAX_IMAGE_SIZE_GIB + 1, 1)] {
            let error = Layout::compute(LayoutSettings {
                os_image_size_gib: g,
                data_image_size_gib: d,
                ..LayoutSettings::default()
            })
            .unwrap_err();
            assert!(error.0.contains("must be between"), "{error}");
        }
    }

    #[test]
    fn check_catches_a_broken_bank_order() {
        let mut layout = split(2);
        layout.os_disk.partitions.swap(3, 4);
        assert!(layout.check().is_err());
    }

    #[test]
    fn publish_sizes() {
        let defaults = LayoutSettings::default();
        assert_eq!(publish_volume_sizes(defaults, 22), (2, Some(20)));
        let unified = LayoutSettings {
            os_image_size_gib: 4,
            partition_plan: PartitionPlan::Unified,
            ..defaults
        };
        assert_eq!(publish_volume_sizes(unified, 22), (22, None));
        let big = LayoutSettings {
            os_image_size_gib: 30,
            ..defaults
        };
        assert_eq!(publish_volume_sizes(big, 22), (30, Some(1)));
    }
}
