//! Bootconfig data in the kernel's on-disk format (`image-layout.md` §5, kernel
//! `Documentation/admin-guide/bootconfig.rst`), as a file with an empty initrd:
//! `[text][NUL][NUL padding][size: le32][checksum: le32][#BOOTCONFIG\n]`.
use crate::error::{self, Result};
use snafu::ensure;

/// The magic that ends the file.
pub const MAGIC: &[u8; 12] = b"#BOOTCONFIG\n";
/// The kernel's limit on the configuration text (`XBC_DATA_MAX`).
pub const MAX_DATA: usize = 32 * 1024 - 1;
/// The no-op configuration used when there are no snippets.
pub const NOOP_CONFIG: &str = "kernel {}\ninit {}\n";

/// Encode `text` (the concatenated snippets) as `bootconfig.data`.
pub fn encode(text: &str) -> Result<Vec<u8>> {
    ensure!(
        !text.as_bytes().contains(&0),
        error::InvalidSettingSnafu {
            reason: "the bootconfig text contains a NUL byte"
        }
    );
    let mut data = text.as_bytes().to_vec();
    data.push(0);
    while !data.len().is_multiple_of(4) {
        data.push(0);
    }
    ensure!(
        data.len() <= MAX_DATA,
        error::InvalidSettingSnafu {
            reason: format!(
                "the bootconfig data is {} bytes, over the kernel's limit of {MAX_DATA}",
                data.len()
            )
        }
    );
    // Both values fit: the data is at most 32 KiB of bytes ≤ 255.
    let size = data.len() as u32;
    let checksum = data
        .iter()
        .map(|&b| u32::from(b))
        .fold(0_u32, u32::wrapping_add);
    data.extend_from_slice(&size.to_le_bytes());
    data.extend_from_slice(&checksum.to_le_bytes());
    data.extend_from_slice(MAGIC);
    Ok(data)
}

/// Decode `bootconfig.data` the way the kernel does (`get_boot_config_from_initrd`): find the
/// magic at the end (allowing up to 3 bytes of alignment padding after it), then check the size
/// and checksum. Returns the text without its NUL terminator.
pub fn decode(file: &[u8]) -> Option<&str> {
    let end = (0..4).find_map(|pad| {
        let end = file.len().checked_sub(pad)?;
        file[..end].ends_with(MAGIC).then_some(end)
    })?;
    let footer = end.checked_sub(MAGIC.len() + 8)?;
    let size = u32::from_le_bytes(file[footer..footer + 4].try_into().ok()?) as usize;
    let checksum = u32::from_le_bytes(file[footer + 4..footer + 8].try_into().ok()?);
    let data = file.get(footer.checked_sub(size)?..footer)?;
    let sum = data
        .iter()
        .map(|&b| u32::from(b))
        .fold(0_u32, u32::wrapping_add);
    if sum != checksum {
        return None;
    }
    let text_end = data.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&data[..text_end]).ok()
}

#[cfg(test)]
mod tests {
    use super::{MAGIC, NOOP_CONFIG, decode, encode};
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

    #[test]
    fn noop_config_layout() {
        let file = encode(NOOP_CONFIG).unwrap();
        // 18 bytes of text + NUL = 19, padded to 20, then the 20-byte footer.
        assert_eq!(file.len(), 40);
        assert_eq!(&file[..18], NOOP_CONFIG.as_bytes());
        assert_eq!(&file[18..20], &[0, 0]);
        assert_eq!(u32::from_le_bytes(file[20..24].try_into().unwrap()), 20);
        let sum: u32 = NOOP_CONFIG.bytes().map(u32::from).sum();
        assert_eq!(u32::from_le_bytes(file[24..28].try_into().unwrap()), sum);
        assert_eq!(&file[28..], MAGIC);
        assert_eq!(decode(&file), Some(NOOP_CONFIG));
    }

    #[test]
    fn bad_input_is_rejected() {
        assert!(encode("a\0b").is_err());
        assert!(encode(&"x".repeat(40_000)).is_err());
        let mut file = encode("kernel.foo = 1\n").unwrap();
        file[0] ^= 1;
        assert_eq!(decode(&file), None);
    }

    proptest! {
        #[test]
        fn round_trip_with_alignment_padding(text in "[a-z. ={}\n\"]{0,200}", pad in 0_usize..4) {
            let mut file = encode(&text).unwrap();
            prop_assert_eq!(file.len() % 4, 0);
            file.extend(std::iter::repeat_n(0, pad));
            prop_assert_eq!(decode(&file), Some(text.as_str()));
            prop_assert!(file.len() >= 20);
        }
    }
}
