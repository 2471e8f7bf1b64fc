//! Progress bars with rate and ETA, drawn on stderr only when it is a terminal.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for `len` steps of `unit` (e.g. "img"), labelled `label`; drawn only when `visible`
/// (library callers pass their `progress` option).
pub fn bar(len: u64, label: &str, unit: &str, visible: bool) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if !visible {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let template =
        format!("{{msg:>8}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}}");
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}
