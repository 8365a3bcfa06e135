//! Writing a disk image: a sparse file of the disk size, a protective MBR, both GPT copies
//! (gptman), and each filesystem image copied at its partition's offset.
use crate::error::{self, Result};
use crate::ids::Seed;
use crate::layout::{Disk, Partition, PartitionPlan};
use crate::progress::Progress;
use gpt_contract::{BootFlags, PartitionRole};
use gptman::{GPT, GPTPartitionEntry};
use snafu::{OptionExt, ResultExt};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Sector size of every image.
pub const SECTOR: u64 = 512;
/// Copy buffer; all-zero buffers are skipped, keeping the image sparse.
const COPY_CHUNK: usize = 1024 * 1024;

/// Which disk of the image this is (names the derived GUIDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskKind {
    /// The OS disk.
    Os,
    /// The split plan's data disk.
    Data,
}

impl DiskKind {
    fn label(self) -> &'static str {
        match self {
            DiskKind::Os => "os-disk",
            DiskKind::Data => "data-disk",
        }
    }
}

/// The unique GUID of `partition`: fixed for data partitions, derived from the seed otherwise.
fn unique_guid(
    seed: &Seed,
    kind: DiskKind,
    plan: PartitionPlan,
    partition: &Partition,
) -> [u8; 16] {
    partition
        .fixed_unique_guid(plan, kind == DiskKind::Data)
        .unwrap_or_else(|| seed.guid(&format!("{}/partition/{}", kind.label(), partition.number)))
        .bytes()
}

/// The initial attribute bits: BOOT-A priority 1 and successful, everything else zero.
pub fn initial_attributes(partition: &Partition) -> u64 {
    if partition.role == PartitionRole::Boot && partition.bank == Some(crate::layout::Bank::A) {
        BootFlags {
            priority: 1,
            tries_left: 0,
            successful: true,
        }
        .apply_to(0)
    } else {
        0
    }
}

/// Create `path` as a sparse disk of `disk`'s size holding its partition table.
pub fn create(
    path: &Path,
    disk: &Disk,
    kind: DiskKind,
    plan: PartitionPlan,
    seed: &Seed,
) -> Result<()> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .context(error::WriteFileSnafu { path })?;
    file.set_len(disk.size_bytes())
        .context(error::WriteFileSnafu { path })?;
    let disk_guid = seed.guid(&format!("{}/disk", kind.label())).bytes();
    let mut gpt =
        GPT::new_from(&mut file, SECTOR, disk_guid).context(error::WriteGptSnafu { path })?;
    for partition in &disk.partitions {
        gpt[partition.number] = GPTPartitionEntry {
            partition_type_guid: partition.type_guid.bytes(),
            unique_partition_guid: unique_guid(seed, kind, plan, partition),
            starting_lba: partition.first_sector(),
            ending_lba: partition.last_sector(),
            attribute_bits: initial_attributes(partition),
            partition_name: partition.name.into(),
        };
    }
    GPT::write_protective_mbr_into(&mut file, SECTOR).context(error::WriteGptSnafu { path })?;
    gpt.write_into(&mut file)
        .context(error::WriteGptSnafu { path })?;
    file.sync_all().context(error::WriteFileSnafu { path })?;
    Ok(())
}

/// Copy the filesystem image `image` into `partition` of the disk at `disk_path`.
pub fn write_partition(
    disk_path: &Path,
    partition: &Partition,
    image: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    let source = File::open(image).context(error::ReadFileSnafu { path: image })?;
    let len = source
        .metadata()
        .context(error::ReadFileSnafu { path: image })?
        .len();
    (len <= partition.size_bytes())
        .then_some(())
        .context(error::TooBigSnafu {
            what: image.display().to_string(),
            needed: len,
            partition: partition.name,
            available: partition.size_bytes(),
        })?;
    let disk = OpenOptions::new()
        .write(true)
        .open(disk_path)
        .context(error::WriteFileSnafu { path: disk_path })?;
    let mut buffer = vec![0_u8; COPY_CHUNK];
    // Compared with slice equality (a memcmp): fast in any build profile.
    let zeros = vec![0_u8; COPY_CHUNK];
    let mut position = 0;
    while position < len {
        let n = (len - position).min(COPY_CHUNK as u64) as usize;
        // The disk starts as zeros: holes and zero runs of the image are skipped, so the disk
        // stays sparse.
        let hole = crate::sparse::is_hole(&source, position, n as u64)
            .context(error::ReadFileSnafu { path: image })?;
        if !hole {
            source
                .read_exact_at(&mut buffer[..n], position)
                .context(error::ReadFileSnafu { path: image })?;
            if buffer[..n] != zeros[..n] {
                disk.write_all_at(&buffer[..n], partition.offset_bytes() + position)
                    .context(error::WriteFileSnafu { path: disk_path })?;
            }
        }
        position += n as u64;
        progress.advance(n as u64);
    }
    disk.sync_all()
        .context(error::WriteFileSnafu { path: disk_path })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{DiskKind, create, initial_attributes};
    use crate::ids::Seed;
    use crate::layout::{Layout, LayoutSettings, PartitionPlan};
    use gptman::GPT;

    #[test]
    fn partition_table_round_trips_through_gptman() {
        let layout = Layout::compute(LayoutSettings {
            os_image_size_gib: 1,
            ..LayoutSettings::default()
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let seed = Seed::from_inputs(&["test"]);
        create(
            &path,
            &layout.os_disk,
            DiskKind::Os,
            PartitionPlan::Split,
            &seed,
        )
        .unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let gpt = GPT::read_from(&mut file, 512).unwrap();
        let used: Vec<_> = gpt.iter().filter(|(_, p)| p.is_used()).collect();
        assert_eq!(used.len(), 13);
        for partition in &layout.os_disk.partitions {
            let entry = &gpt[partition.number];
            assert_eq!(entry.starting_lba, partition.first_sector());
            assert_eq!(entry.ending_lba, partition.last_sector());
            assert_eq!(entry.partition_type_guid, partition.type_guid.bytes());
            assert_eq!(entry.partition_name.as_str(), partition.name);
            assert_eq!(entry.attribute_bits, initial_attributes(partition));
        }
        assert_eq!(gpt[3].attribute_bits, 0x0101_0000_0000_0000);
        assert_eq!(gpt[8].attribute_bits, 0);
        // Unique GUIDs are distinct; the data partition's is the fixed fallback one.
        let mut guids: Vec<_> = used.iter().map(|(_, p)| p.unique_partition_guid).collect();
        guids.sort();
        guids.dedup();
        assert_eq!(guids.len(), 13);
        assert_eq!(
            gpt[13].unique_partition_guid,
            gpt_contract::DATA_FALLBACK_UNIQUE_GUID.bytes()
        );
    }
}
