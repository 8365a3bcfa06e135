//! The on-disk contract of the A/B scheme: partition type GUIDs and the "gptprio" attribute
//! bits. Its own small crate at the bottom of the workspace, so that `image-builder` (which
//! lays out the disk and sets the initial bits) and `signpost` (which reads and flips them on
//! the host) agree by construction without one tool depending on the other.
//!
//! Bit positions follow ChromeOS `cgpt` / CoreOS gptprio (see `reference/signpost.md` §1):
//! priority 48–51, tries left 52–55, successful 56, and on the PRIVATE partition only, bit 57
//! "boot has ever succeeded".

use std::fmt;
use std::str::FromStr;

/// A GUID, kept in its on-disk byte order (first three fields little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID (an unused partition entry).
    pub const NIL: Guid = Guid([0; 16]);

    /// Build a GUID from its canonical text fields (`aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee`).
    pub const fn from_fields(a: u32, b: u16, c: u16, d: u16, e: u64) -> Guid {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        let d = d.to_be_bytes();
        let e = e.to_be_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], e[2], e[3], e[4], e[5],
            e[6], e[7],
        ])
    }

    /// Parse the canonical text form (case-insensitive, with hyphens).
    pub fn parse(text: &str) -> Option<Guid> {
        let parts: Vec<&str> = text.split('-').collect();
        let lengths = [8, 4, 4, 4, 12];
        if parts.len() != 5 || parts.iter().zip(lengths).any(|(p, l)| p.len() != l) {
            return None;
        }
        let a = u32::from_str_radix(parts[0], 16).ok()?;
        let b = u16::from_str_radix(parts[1], 16).ok()?;
        let c = u16::from_str_radix(parts[2], 16).ok()?;
        let d = u16::from_str_radix(parts[3], 16).ok()?;
        let e = u64::from_str_radix(parts[4], 16).ok()?;
        Some(Guid::from_fields(a, b, c, d, e))
    }

    /// The on-disk bytes, as `gptman` stores them in a partition entry.
    pub const fn bytes(&self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Display for Guid {
    /// Canonical lower-case text form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for byte in &b[10..] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One of the two partition sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetId {
    /// Set A: the first BOOT/ROOT/HASH partitions in table order.
    A,
    /// Set B: the second BOOT/ROOT/HASH partitions in table order.
    B,
}

impl SetId {
    /// Both sets, A first.
    pub const BOTH: [SetId; 2] = [SetId::A, SetId::B];

    /// The other set.
    pub const fn other(self) -> SetId {
        match self {
            SetId::A => SetId::B,
            SetId::B => SetId::A,
        }
    }

    /// `"a"` or `"b"`, as the CLI and the JSON output spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            SetId::A => "a",
            SetId::B => "b",
        }
    }
}

impl fmt::Display for SetId {
    /// `A` or `B`, as the reference's messages spell it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetId::A => "A",
            SetId::B => "B",
        })
    }
}

impl FromStr for SetId {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<SetId, String> {
        match text {
            "a" | "A" => Ok(SetId::A),
            "b" | "B" => Ok(SetId::B),
            other => Err(format!(
                "unknown partition set '{other}': expected 'a' or 'b'"
            )),
        }
    }
}

/// `"a"` / `"b"` in JSON (and any serde format).
impl serde::Serialize for SetId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for SetId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SetId, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "a" => Ok(SetId::A),
            "b" => Ok(SetId::B),
            _ => Err(serde::de::Error::unknown_variant(&text, &["a", "b"])),
        }
    }
}

/// The role of a partition, identified by its type GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionRole {
    /// BIOS boot partition (sgdisk `ef02`).
    BiosBoot,
    /// EFI system partition.
    EfiSystem,
    /// Placeholder for bank B's EFI slot.
    EfiBackup,
    /// BOOT (kernel, grub.cfg); carries the gptprio bits for its set.
    Boot,
    /// ROOT (the root filesystem, verified by dm-verity).
    Root,
    /// HASH (the dm-verity hash tree of ROOT).
    Hash,
    /// RESERVED (never written by updates).
    Reserved,
    /// PRIVATE (shared; carries bit 57).
    Private,
    /// DATA (shared; the writable data partition).
    Data,
}

impl PartitionRole {
    /// Every role, in layout order.
    pub const ALL: [PartitionRole; 9] = [
        PartitionRole::BiosBoot,
        PartitionRole::EfiSystem,
        PartitionRole::EfiBackup,
        PartitionRole::Boot,
        PartitionRole::Root,
        PartitionRole::Hash,
        PartitionRole::Reserved,
        PartitionRole::Private,
        PartitionRole::Data,
    ];

    /// The partition type GUID of this role.
    pub const fn type_guid(self) -> Guid {
        // Indexed by the enum's declaration order, which `ALL` follows.
        const TYPE_GUIDS: [Guid; 9] = [
            Guid::from_fields(0x21686148, 0x6449, 0x6e6f, 0x744e, 0x656564454649), // BIOS boot
            Guid::from_fields(0xc12a7328, 0xf81f, 0x11d2, 0xba4b, 0x00a0c93ec93b), // EFI system
            Guid::from_fields(0xb39ce39c, 0x0a00, 0xb4ab, 0x2d11, 0xf18f8237a21c), // EFI backup
            Guid::from_fields(0x6b636168, 0x7420, 0x6568, 0x2070, 0x6c616e657421), // BOOT
            Guid::from_fields(0x5526016a, 0x1a97, 0x4ea4, 0xb39a, 0xb7c8c6ca4502), // ROOT
            Guid::from_fields(0x598f10af, 0xc955, 0x4456, 0x6a99, 0x7720068a6cea), // HASH
            Guid::from_fields(0x0c5d99a5, 0xd331, 0x4147, 0xbaef, 0x08e2b855bdc9), // RESERVED
            Guid::from_fields(0x440408bb, 0xeb0b, 0x4328, 0xa6e5, 0xa29038fad706), // PRIVATE
            Guid::from_fields(0x626f7474, 0x6c65, 0x6474, 0x6861, 0x726d61726b73), // DATA
        ];
        TYPE_GUIDS[self as usize]
    }

    /// The role whose type GUID is `guid`, if any.
    pub fn from_type_guid(guid: Guid) -> Option<PartitionRole> {
        PartitionRole::ALL
            .into_iter()
            .find(|role| role.type_guid() == guid)
    }
}

/// Fixed unique GUID of the preferred data partition (split plan: DATA-B on the data disk;
/// unified: DATA-A).
pub const DATA_PREFERRED_UNIQUE_GUID: Guid =
    Guid::from_fields(0x5b94e8df, 0x28b8, 0x485c, 0x9d19, 0x362263b5944c);
/// Fixed unique GUID of the fallback data partition (split plan: DATA-A on the OS disk).
pub const DATA_FALLBACK_UNIQUE_GUID: Guid =
    Guid::from_fields(0x69040874, 0x417d, 0x4e26, 0xa764, 0x7885f22007ea);

const PRIORITY_SHIFT: u32 = 48;
const TRIES_SHIFT: u32 = 52;
const SUCCESSFUL_BIT: u32 = 56;
/// Bit 57 of the PRIVATE partition: a boot has ever been marked successful on this disk.
pub const BOOT_EVER_SUCCEEDED_BIT: u32 = 57;
/// Every bit this scheme owns on a BOOT partition (priority, tries, successful).
pub const GPTPRIO_MASK: u64 = 0x1ff << PRIORITY_SHIFT;

/// The gptprio state of one BOOT partition (and so of its set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootFlags {
    /// 0–15; higher boots first, 0 never boots unless successful.
    pub priority: u8,
    /// 0–15; boot attempts left before the set is given up.
    pub tries_left: u8,
    /// The set has booted and was marked successful.
    pub successful: bool,
}

/// `priority/tries/successful`, e.g. `1/0/1`: how people write gptprio flags (cgpt's order).
impl std::fmt::Display for BootFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.priority,
            self.tries_left,
            u8::from(self.successful)
        )
    }
}

impl BootFlags {
    /// Decode the gptprio bits of a partition's 64-bit attribute field.
    pub const fn from_attributes(attributes: u64) -> BootFlags {
        BootFlags {
            priority: ((attributes >> PRIORITY_SHIFT) & 0xf) as u8,
            tries_left: ((attributes >> TRIES_SHIFT) & 0xf) as u8,
            successful: (attributes >> SUCCESSFUL_BIT) & 1 == 1,
        }
    }

    /// Write these flags into `attributes`, keeping every other bit as it was.
    /// Values above 15 are clamped to 15.
    pub const fn apply_to(self, attributes: u64) -> u64 {
        let priority = if self.priority > 15 {
            15
        } else {
            self.priority
        } as u64;
        let tries = if self.tries_left > 15 {
            15
        } else {
            self.tries_left
        } as u64;
        (attributes & !GPTPRIO_MASK)
            | (priority << PRIORITY_SHIFT)
            | (tries << TRIES_SHIFT)
            | ((self.successful as u64) << SUCCESSFUL_BIT)
    }

    /// Whether firmware/GRUB would consider booting this set.
    pub const fn will_boot(self) -> bool {
        (self.priority > 0 && self.tries_left > 0) || self.successful
    }
}

/// Whether bit 57 ("boot has ever succeeded") is set in a PRIVATE partition's attributes.
pub const fn boot_ever_succeeded(private_attributes: u64) -> bool {
    (private_attributes >> BOOT_EVER_SUCCEEDED_BIT) & 1 == 1
}

/// Set bit 57 in a PRIVATE partition's attributes, keeping the other bits.
pub const fn with_boot_ever_succeeded(private_attributes: u64) -> u64 {
    private_attributes | (1 << BOOT_EVER_SUCCEEDED_BIT)
}

#[cfg(test)]
mod tests {
    use super::{BootFlags, Guid, PartitionRole};

    #[test]
    fn flags_read_as_priority_tries_successful() {
        let flags = BootFlags {
            priority: 2,
            tries_left: 1,
            successful: false,
        };
        assert_eq!(flags.to_string(), "2/1/0");
        assert_eq!(BootFlags::from_attributes(u64::MAX).to_string(), "15/15/1");
    }

    #[test]
    fn boot_guid_bytes_spell_hack_the_planet() {
        assert_eq!(
            &PartitionRole::Boot.type_guid().bytes(),
            b"hack the planet!"
        );
    }

    #[test]
    fn each_role_has_its_own_well_known_type_guid() {
        for (i, role) in PartitionRole::ALL.into_iter().enumerate() {
            assert_eq!(role as usize, i, "ALL follows declaration order");
            assert_eq!(PartitionRole::from_type_guid(role.type_guid()), Some(role));
        }
        assert_eq!(
            PartitionRole::EfiSystem.type_guid().to_string(),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        assert_eq!(
            PartitionRole::BiosBoot.type_guid().to_string(),
            "21686148-6449-6e6f-744e-656564454649"
        );
    }

    #[test]
    fn guid_text_round_trips() {
        for role in PartitionRole::ALL {
            let text = role.type_guid().to_string();
            assert_eq!(Guid::parse(&text), Some(role.type_guid()));
            assert_eq!(Guid::parse(&text.to_uppercase()), Some(role.type_guid()));
            assert_eq!(PartitionRole::from_type_guid(role.type_guid()), Some(role));
        }
        assert_eq!(
            PartitionRole::Boot.type_guid().to_string(),
            "6b636168-7420-6568-2070-6c616e657421"
        );
        assert_eq!(Guid::parse("6b636168-7420-6568-2070-6c616e65742"), None);
    }

    #[test]
    fn attribute_examples_from_the_reference() {
        let fresh_a = BootFlags {
            priority: 1,
            tries_left: 0,
            successful: true,
        };
        assert_eq!(fresh_a.apply_to(0), 0x0101_0000_0000_0000);
        let staged_b = BootFlags {
            priority: 2,
            tries_left: 1,
            successful: false,
        };
        assert_eq!(staged_b.apply_to(0), 0x0012_0000_0000_0000);
        let max = BootFlags {
            priority: 15,
            tries_left: 15,
            successful: true,
        };
        assert_eq!(max.apply_to(0), 0x01ff_0000_0000_0000);
        assert_eq!(BootFlags::from_attributes(0x0012_0000_0000_0005), staged_b);
        // Other bits survive a read-modify-write.
        assert_eq!(
            staged_b.apply_to(0x8000_0000_0000_0007),
            0x8012_0000_0000_0007
        );
        assert!(fresh_a.will_boot() && staged_b.will_boot() && !BootFlags::default().will_boot());
    }
}
