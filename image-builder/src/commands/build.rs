//! `image-builder build`: turn the arguments into [`BuildSettings`] and build.
use crate::bootloader::BootloaderChoice;
use crate::cli::BuildArgs;
use crate::error::Result;
use crate::layout::{Banks, LayoutSettings};
use crate::progress::Progress;
use crate::report::BuildReport;
use crate::settings::BuildSettings;

/// The settings `args` describe.
pub fn settings(args: &BuildArgs) -> BuildSettings {
    BuildSettings {
        root_dir: args.root_dir.clone(),
        boot_dir: args.boot_dir.clone(),
        out_dir: args.out_dir.clone(),
        image_name: args.image_name.clone(),
        variant: args.variant.clone(),
        arch: args.arch,
        version: args.version.clone(),
        build_id: args.build_id.clone(),
        layout: LayoutSettings {
            os_image_size_gib: args.os_image_size_gib,
            data_image_size_gib: args.data_image_size_gib,
            partition_plan: args.partition_plan,
            banks: if args.single_bank {
                Banks::Single
            } else {
                Banks::AB
            },
        },
        root_fs: args.root_fs,
        kernel_params: args.kernel_params.clone(),
        grub_set_private_var: args.grub_set_private_var,
        bootconfig_snippets: args.bootconfig_snippets.clone(),
        source_date_epoch: args.source_date_epoch,
        keep_raw_images: args.keep_raw_images,
        threads: args.threads,
        bootloader: args
            .bootloader
            .clone()
            .unwrap_or_else(BootloaderChoice::default_for_exe),
    }
}

/// Run the build.
pub fn run(args: &BuildArgs, progress: &dyn Progress) -> Result<BuildReport> {
    crate::build(&settings(args), progress)
}
