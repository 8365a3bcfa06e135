//! Progress bars on stderr, shown only on a terminal (logs and `--json` stay clean otherwise).

use std::io::IsTerminal;

/// A bar of `total` units drawn with `template` (indicatif syntax), or a hidden bar when
/// stderr is not a terminal or `enabled` is false.
pub fn bar(enabled: bool, total: u64, template: &str) -> indicatif::ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
