//! `grub/grub.cfg` in the reference form (`image-layout.md` §4.5).
use crate::verity::VerityInfo;

/// What goes into grub.cfg besides the verity table.
#[derive(Debug, Clone)]
pub struct GrubConfig<'a> {
    /// `PRETTY_NAME` for the menu entry.
    pub pretty_name: &'a str,
    /// `VERSION_ID` for the menu entry.
    pub version_id: &'a str,
    /// Variant kernel parameters, in order.
    pub kernel_params: &'a [String],
    /// Image feature `grub-set-private-var`: pass `bootconfig` and load
    /// `($private)/bootconfig.data` as the initrd.
    pub bootconfig: bool,
    /// The boot tree holds an initramfs, `initrd.img`: load it first (before bootconfig, which
    /// the kernel finds at the end of the initrd).
    pub initrd: bool,
}

/// The menu entry title, with characters that would end the quoted GRUB string removed.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '"' | '\\' | '$' | '\n'))
        .collect()
}

/// Render grub.cfg.
pub fn render(config: &GrubConfig<'_>, verity: &VerityInfo) -> String {
    let mut params: Vec<&str> = config.kernel_params.iter().map(String::as_str).collect();
    if config.bootconfig {
        params.push("bootconfig");
    }
    params.extend([
        "root=/dev/dm-0",
        "rootwait",
        "ro",
        "raid=noautodetect",
        "random.trust_cpu=on",
        "selinux=1",
        "enforcing=1",
        "dm-mod.create=\"$dm_verity_root\"",
        "--",
        "systemd.log_target=journal-or-kmsg",
        "systemd.log_color=0",
        "systemd.show_status=true",
    ]);
    let initrd = match (config.initrd, config.bootconfig) {
        (true, true) => "    initrd ($root)/initrd.img ($private)/bootconfig.data\n",
        (true, false) => "    initrd ($root)/initrd.img\n",
        (false, true) => "    initrd ($private)/bootconfig.data\n",
        (false, false) => "",
    };
    format!(
        "set default=\"0\"\n\
         set timeout=\"0\"\n\
         set dm_verity_root=\"root,,,ro,{table}\"\n\
         \n\
         menuentry \"{title} {version}\" --unrestricted {{\n\
         \x20   linux ($root)/vmlinuz {params}\n\
         {initrd}\
         \x20   boot\n\
         }}\n",
        table = verity.dm_table(),
        title = quoted(config.pretty_name),
        version = quoted(config.version_id),
        params = params.join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::{GrubConfig, render};
    use crate::verity::VerityInfo;

    fn verity() -> VerityInfo {
        VerityInfo {
            root_hash: "ab".repeat(32),
            salt: "cd".repeat(32),
            uuid: "00000000-0000-4000-8000-000000000000".into(),
            data_blocks: 3597,
            data_block_size: 4096,
            hash_block_size: 4096,
            hash_algorithm: "sha256",
            hash_tree_bytes: 126_976,
        }
    }

    #[test]
    fn reference_form() {
        let params = vec!["console=ttyS0".to_owned()];
        let text = render(
            &GrubConfig {
                pretty_name: "Bottlerocket OS",
                version_id: "1.2.3",
                kernel_params: &params,
                bootconfig: false,
                initrd: false,
            },
            &verity(),
        );
        let expected_table = format!(
            "set dm_verity_root=\"root,,,ro,0 28776 verity 1 PARTUUID=$boot_uuid/PARTNROFF=1 \
             PARTUUID=$boot_uuid/PARTNROFF=2 4096 4096 3597 1 sha256 {} {} 2 \
             restart_on_corruption ignore_zero_blocks\"\n",
            "ab".repeat(32),
            "cd".repeat(32)
        );
        assert!(text.starts_with("set default=\"0\"\nset timeout=\"0\"\n"));
        assert!(text.contains(&expected_table), "{text}");
        assert!(text.contains("menuentry \"Bottlerocket OS 1.2.3\" --unrestricted {\n"));
        assert!(text.contains(
            "    linux ($root)/vmlinuz console=ttyS0 root=/dev/dm-0 rootwait ro \
             raid=noautodetect random.trust_cpu=on selinux=1 enforcing=1 \
             dm-mod.create=\"$dm_verity_root\" -- systemd.log_target=journal-or-kmsg \
             systemd.log_color=0 systemd.show_status=true\n    boot\n}\n"
        ));
        assert!(!text.contains("initrd"));
    }

    #[test]
    fn bootconfig_adds_the_parameter_and_the_initrd() {
        let text = render(
            &GrubConfig {
                pretty_name: "A \"quoted\" name",
                version_id: "1.0.0",
                kernel_params: &[],
                bootconfig: true,
                initrd: false,
            },
            &verity(),
        );
        assert!(text.contains("linux ($root)/vmlinuz bootconfig root=/dev/dm-0"));
        assert!(text.contains("    initrd ($private)/bootconfig.data\n    boot\n"));
        assert!(text.contains("menuentry \"A quoted name 1.0.0\""));
    }

    #[test]
    fn an_initramfs_comes_before_bootconfig() {
        let render_with = |bootconfig| {
            render(
                &GrubConfig {
                    pretty_name: "Sample",
                    version_id: "1.0.0",
                    kernel_params: &[],
                    bootconfig,
                    initrd: true,
                },
                &verity(),
            )
        };
        assert!(render_with(false).contains("    initrd ($root)/initrd.img\n    boot\n"));
        assert!(
            render_with(true)
                .contains("    initrd ($root)/initrd.img ($private)/bootconfig.data\n    boot\n")
        );
    }
}
