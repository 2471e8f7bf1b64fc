//! Dropout masks: only the two allowed values, the kept fraction within statistical tolerance of
//! the requested one, the same mask for the same seed and a different one for another seed, and
//! no correlation between neighbouring elements (a weak generator shows it first there).

use ffem_kernels::{dropout_mask, dropout_mask_to_vec};

const N: usize = 1_000_003;

#[test]
fn mask_keeps_the_requested_fraction_with_inverted_scaling() {
    for keep in [0.9f64, 0.5, 0.2] {
        let mut mask = vec![-1.0f32; N];
        dropout_mask(42, keep, &mut mask);
        let scale = (1.0 / keep) as f32;
        assert!(
            mask.iter().all(|&v| v == 0.0 || v == scale),
            "keep {keep}: a value other than 0 and {scale}"
        );
        let kept = mask.iter().filter(|&&v| v != 0.0).count() as f64 / N as f64;
        // Binomial standard deviation sqrt(p (1 - p) / N) <= 5e-4; allow 5 of them.
        assert!(
            (kept - keep).abs() < 2.5e-3,
            "keep {keep}: kept fraction {kept}"
        );
        // The mean of x * mask is the mean of x (x = 1 here).
        let mean = mask.iter().map(|&v| v as f64).sum::<f64>() / N as f64;
        assert!(
            (mean - 1.0).abs() < 5e-3 / keep,
            "keep {keep}: mean factor {mean}"
        );
    }
}

#[test]
fn same_seed_same_mask_other_seed_other_mask() {
    let (mut a, mut b, mut c) = (vec![0.0f32; N], vec![0.0f32; N], vec![0.0f32; N]);
    dropout_mask(7, 0.5, &mut a);
    dropout_mask(7, 0.5, &mut b);
    dropout_mask(8, 0.5, &mut c);
    assert_eq!(a, b);
    let agree = a.iter().zip(&c).filter(|(x, y)| x == y).count() as f64 / N as f64;
    // Independent fair coins agree half the time.
    assert!(
        (agree - 0.5).abs() < 2.5e-3,
        "seeds 7 and 8 agree on {agree}"
    );
    // A prefix is the same mask's prefix: element i depends on the seed and i only.
    let mut short = vec![0.0f32; 1000];
    dropout_mask(7, 0.5, &mut short);
    assert_eq!(short[..], a[..1000]);
    // The allocating entry point writes the same mask into fresh storage.
    assert_eq!(dropout_mask_to_vec(7, 0.5, N), a);
}

#[test]
fn neighbouring_coins_are_uncorrelated() {
    let mut mask = vec![0.0f32; N];
    dropout_mask(3, 0.5, &mut mask);
    let bits: Vec<f64> = mask
        .iter()
        .map(|&v| if v > 0.0 { 1.0 } else { -1.0 })
        .collect();
    for lag in [1usize, 2, 8, 16_384] {
        let r = bits
            .iter()
            .zip(&bits[lag..])
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / (N - lag) as f64;
        assert!(r.abs() < 5e-3, "lag {lag}: correlation {r}");
    }
}

#[test]
fn keep_one_keeps_everything_and_zero_is_refused() {
    let mut mask = vec![0.0f32; 1000];
    dropout_mask(1, 1.0, &mut mask);
    assert!(mask.iter().all(|&v| v == 1.0));
    let refused = std::panic::catch_unwind(|| dropout_mask(1, 0.0, &mut [0.0f32; 4]));
    assert!(refused.is_err());
}
