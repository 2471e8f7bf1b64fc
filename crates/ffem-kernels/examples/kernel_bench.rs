//! Milliseconds per call of each kernel on MobileNetV3-Large's layer shapes at batch 64, with the
//! memory each call must at least move, to see which kernels are far from the bandwidth bound.
//!
//! `cargo run --release -p ffem-kernels --example kernel_bench [repeats]`

use std::time::Instant;

use ffem_kernels::{ConvGeometry, conv2d_backward_input, conv2d_backward_weight, conv2d_forward};

fn time(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..repeats {
        f();
    }
    t.elapsed().as_secs_f64() * 1000.0 / repeats as f64
}

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let shapes = [
        ("depthwise 3x3 s1 c16 @56", 16, 56, 16, 3, 1, 16),
        ("depthwise 3x3 s2 c64 @56", 64, 56, 64, 3, 2, 64),
        ("depthwise 3x3 s1 c72 @28", 72, 28, 72, 3, 1, 72),
        ("depthwise 5x5 s1 c120 @14", 120, 14, 120, 5, 1, 120),
        ("depthwise 3x3 s1 c672 @7", 672, 7, 672, 3, 1, 672),
        ("depthwise 5x5 s1 c240 @7", 240, 7, 240, 5, 1, 240),
        ("depthwise 5x5 s1 c576 @4", 576, 4, 576, 5, 1, 576),
        ("pointwise 16->64 @56", 16, 56, 64, 1, 1, 1),
        ("pointwise 64->24 @28", 64, 28, 24, 1, 1, 1),
        ("pointwise 112->672 @7", 112, 7, 672, 1, 1, 1),
        ("stem 3x3 s2 3->16 @112", 3, 112, 16, 3, 2, 1),
    ];
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>10}",
        "kernel (batch 64)", "fwd ms", "dx ms", "dw ms", "MB moved"
    );
    for (name, cin, size, cout, k, s, groups) in shapes {
        let g = ConvGeometry {
            batch: 64,
            in_channels: cin,
            in_h: size,
            in_w: size,
            out_channels: cout,
            kernel: [k, k],
            stride: [s, s],
            padding: [(k - 1) / 2, (k - 1) / 2],
            groups,
        };
        let x: Vec<f32> = (0..g.input_len()).map(|i| (i % 97) as f32 * 0.01).collect();
        let w: Vec<f32> = (0..g.weight_len()).map(|i| (i % 13) as f32 * 0.1).collect();
        let dy: Vec<f32> = (0..g.output_len())
            .map(|i| (i % 89) as f32 * 0.01)
            .collect();
        let (mut y, mut dx, mut dw) = (
            vec![0.0; g.output_len()],
            vec![0.0; g.input_len()],
            vec![0.0; g.weight_len()],
        );
        let f = time(repeats, || conv2d_forward(&g, &x, &w, &mut y).unwrap());
        let bx = time(repeats, || {
            conv2d_backward_input(&g, &w, &dy, &mut dx).unwrap()
        });
        let bw = time(repeats, || {
            conv2d_backward_weight(&g, &x, &dy, &mut dw).unwrap()
        });
        let mb = (g.input_len() + g.output_len()) as f64 * 4.0 / 1e6;
        println!("{name:<28} {f:>9.2} {bx:>9.2} {bw:>9.2} {mb:>10.1}");
    }
    println!(
        "\n{:<28} {:>9} {:>9} {:>10}",
        "batch norm + ReLU6 (batch 64)", "fwd ms", "bwd ms", "MB moved"
    );
    for (channels, size) in [(64, 56), (72, 28), (672, 7)] {
        let s = ffem_kernels::NormShape {
            batch: 64,
            channels,
            spatial: size * size,
        };
        let n = 64 * channels * size * size;
        let x: Vec<f32> = (0..n).map(|i| (i % 101) as f32 * 0.05 - 2.0).collect();
        let dy: Vec<f32> = (0..n).map(|i| (i % 89) as f32 * 0.01).collect();
        let (gamma, beta) = (vec![1.0f32; channels], vec![0.1f32; channels]);
        let (mut y, mut dx) = (vec![0.0; n], vec![0.0; n]);
        let (mut mean, mut var, mut dg, mut db) = (
            vec![0.0; channels],
            vec![0.0; channels],
            vec![0.0; channels],
            vec![0.0; channels],
        );
        let act = ffem_kernels::Activation::Relu6;
        let f = time(repeats, || {
            ffem_kernels::batch_norm_act_train(
                s, &x, &gamma, &beta, 1e-3, act, &mut y, &mut mean, &mut var,
            )
        });
        let b = time(repeats, || {
            ffem_kernels::batch_norm_act_train_backward(
                s, &x, &dy, &gamma, &beta, &mean, &var, 1e-3, act, &mut dx, &mut dg, &mut db,
            )
        });
        println!(
            "{:<28} {f:>9.2} {b:>9.2} {:>10.1}",
            format!("c{channels} @{size}"),
            n as f64 * 8.0 / 1e6
        );
    }
}
