//! `ffem info`: layers, parameters and multiply-accumulates of a configuration, computed from the
//! architecture (MACs counted as in the MobileNetV3 paper: convolutions and linear layers).

use burn::tensor::Device;

use crate::backbones::mobilenet_v3::{MobileNetV3Config, conv_out, make_divisible};
use crate::heads::HeadKind;
use crate::model::{ImageNetTop, ModelConfig, trainable_params};

/// One row of the layer table.
#[derive(Debug, Clone)]
pub struct LayerRow {
    /// Layer name.
    pub name: String,
    /// Output shape (C, H, W) or (D) as text.
    pub output: String,
    /// Multiply-accumulates.
    pub macs: u64,
}

fn conv_macs(cin: usize, cout: usize, k: usize, groups: usize, out: usize) -> u64 {
    (out * out * cout * (cin / groups) * k * k) as u64
}

/// Layer table of a backbone at `input` x `input`.
pub fn backbone_rows(cfg: &MobileNetV3Config, input: usize) -> Vec<LayerRow> {
    let mut rows = Vec::new();
    let stem_out = make_divisible(16.0 * cfg.width, 8);
    let mut s = conv_out(input, 3, cfg.stem_stride);
    rows.push(LayerRow {
        name: "stem conv3x3".into(),
        output: format!("{stem_out}x{s}x{s}"),
        macs: conv_macs(3, stem_out, 3, 1, s),
    });
    let (blocks, last, _) = cfg.blocks();
    for (i, b) in blocks.iter().enumerate() {
        let s_in = s;
        s = conv_out(s, b.kernel, b.stride);
        let mut macs = 0;
        if b.expanded != b.input {
            macs += conv_macs(b.input, b.expanded, 1, 1, s_in);
        }
        macs += conv_macs(b.expanded, b.expanded, b.kernel, b.expanded, s);
        if b.se {
            let sq = make_divisible((b.expanded / 4) as f32, 8);
            macs += (2 * b.expanded * sq) as u64;
        }
        macs += conv_macs(b.expanded, b.out, 1, 1, s);
        rows.push(LayerRow {
            name: format!(
                "block{:02} k{} e{} {}{}",
                i + 1,
                b.kernel,
                b.expanded,
                if b.se { "SE " } else { "" },
                if b.hs { "HS" } else { "RE" }
            ),
            output: format!("{}x{s}x{s}", b.out),
            macs,
        });
    }
    rows.push(LayerRow {
        name: "last conv1x1".into(),
        output: format!("{last}x{s}x{s}"),
        macs: conv_macs(blocks.last().expect("blocks").out, last, 1, 1, s),
    });
    rows
}

/// Layer table, trainable parameters and MACs of an embedding model.
pub fn describe(cfg: &ModelConfig) -> (Vec<LayerRow>, usize, u64) {
    let mut rows = backbone_rows(&cfg.backbone, cfg.image_size);
    let c = cfg.backbone.out_channels();
    let s = cfg.backbone.feature_size(cfg.image_size);
    let d = cfg.embedding_dim;
    let head = match cfg.head {
        HeadKind::Gnap => LayerRow {
            name: "GNAP head".into(),
            output: format!("{d}"),
            macs: if c != d { (c * d) as u64 } else { 0 },
        },
        HeadKind::Gdc => LayerRow {
            name: "GDC head".into(),
            output: format!("{d}"),
            macs: conv_macs(c, 512, 1, 1, s) + (512 * s * s) as u64 + (512 * d) as u64,
        },
        HeadKind::Flatten => LayerRow {
            name: "flatten + dense head".into(),
            output: format!("{d}"),
            macs: (c * s * s * d) as u64,
        },
    };
    rows.push(head);
    let params = trainable_params(&cfg.init(&Device::flex()));
    let macs = rows.iter().map(|r| r.macs).sum();
    (rows, params, macs)
}

/// Layer table, parameters and MACs of the ImageNet network at 224 x 224.
pub fn describe_imagenet(cfg: &MobileNetV3Config) -> (Vec<LayerRow>, usize, u64) {
    let mut rows = backbone_rows(cfg, 224);
    let (_, last, hidden) = cfg.blocks();
    rows.push(LayerRow {
        name: "pool + fc + fc".into(),
        output: "1000".into(),
        macs: (last * hidden + hidden * 1000) as u64,
    });
    let device = Device::flex();
    let params =
        trainable_params(&cfg.init(&device)) + trainable_params(&ImageNetTop::new(cfg, &device));
    let macs = rows.iter().map(|r| r.macs).sum();
    (rows, params, macs)
}

/// Formats the table.
pub fn format_table(title: &str, rows: &[LayerRow], params: usize, macs: u64) -> String {
    let mut s = format!(
        "{title}\n{:<32} {:>14} {:>12}\n",
        "layer", "output", "MMACs"
    );
    for r in rows {
        s += &format!(
            "{:<32} {:>14} {:>12.2}\n",
            r.name,
            r.output,
            r.macs as f64 / 1e6
        );
    }
    s += &format!(
        "parameters: {params}  ({:.2} M)\nMACs: {:.1} M  (FLOPs ~ {:.1} M)\n",
        params as f64 / 1e6,
        macs as f64 / 1e6,
        2.0 * macs as f64 / 1e6
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_macs_match_the_paper() {
        // The paper (Table 3 / 4) reports 219 M MACs for Large 1.0 and 56 M for Small 1.0 at 224.
        let (_, _, large) = describe_imagenet(&MobileNetV3Config::large());
        let (_, _, small) = describe_imagenet(&MobileNetV3Config::small());
        assert!((large as f64 / 1e6 - 219.0).abs() < 6.0, "{large}");
        assert!((small as f64 / 1e6 - 56.0).abs() < 3.0, "{small}");
    }
}
