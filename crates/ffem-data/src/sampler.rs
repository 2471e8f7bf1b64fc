//! The order records are drawn in: the shuffle buffer (the default, streaming) or identity-balanced
//! P x K batches (P identities, K images each), which triplet-style losses need because every
//! anchor must find a positive and a negative inside its batch.

use std::collections::BTreeMap;

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// How the pipeline orders records into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Streamed through the shuffle buffer; identities fall where they may.
    #[default]
    Shuffle,
    /// `batch_size / per_identity` identities per batch, `per_identity` images each. The epoch's
    /// records are held in memory to draw them by identity.
    Pk {
        /// K: images of each identity in a batch.
        per_identity: usize,
    },
}

/// Record indices of one epoch's P x K batches over records with `labels`.
///
/// Each identity's images are shuffled and cut into groups of `per_identity`; a short last group
/// (or an identity with fewer images than K) is filled by drawing its own images again, so every
/// image appears at least once per epoch. Batches then take one group from each of
/// `identities_per_batch` distinct identities drawn at random among those with groups left, until
/// fewer than that many identities remain (their groups wait for the next epoch's draw). The same
/// `rng` state gives the same batches.
pub fn pk_batches(
    labels: &[i64],
    per_identity: usize,
    identities_per_batch: usize,
    rng: &mut impl Rng,
) -> Vec<Vec<usize>> {
    let k = per_identity.max(1);
    let mut by_identity: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_identity.entry(l).or_default().push(i);
    }
    let mut groups: Vec<Vec<Vec<usize>>> = by_identity
        .into_values()
        .map(|mut images| {
            images.shuffle(rng);
            let short = (k - images.len() % k) % k;
            for _ in 0..short {
                let again = images[rng.random_range(0..images.len())];
                images.push(again);
            }
            images.chunks(k).map(<[usize]>::to_vec).collect()
        })
        .collect();
    let mut batches = Vec::new();
    loop {
        let mut ready: Vec<usize> = (0..groups.len())
            .filter(|&g| !groups[g].is_empty())
            .collect();
        if ready.len() < identities_per_batch || identities_per_batch == 0 {
            return batches;
        }
        ready.shuffle(rng);
        let batch = ready[..identities_per_batch]
            .iter()
            .flat_map(|&g| groups[g].pop().expect("ready groups are non-empty"))
            .collect();
        batches.push(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeSet;

    #[test]
    fn batches_hold_p_identities_of_k_images_and_cover_every_image() {
        // Identity 0: 5 images, 1: 2, 2: 4, 3: 1, 4: 3.
        let labels = [0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4, 4];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let batches = pk_batches(&labels, 2, 2, &mut rng);
        // Groups of 2: identity 0 -> 3, 1 -> 1, 2 -> 2, 3 -> 1, 4 -> 2; 9 groups, 4 batches.
        assert_eq!(batches.len(), 4);
        let mut seen = BTreeSet::new();
        for b in &batches {
            assert_eq!(b.len(), 4);
            let ids: Vec<i64> = b.iter().map(|&i| labels[i]).collect();
            assert_eq!(ids[0], ids[1]);
            assert_eq!(ids[2], ids[3]);
            assert_ne!(
                ids[0], ids[2],
                "two groups of one identity in a batch: {ids:?}"
            );
            seen.extend(b.iter().copied());
        }
        // Only one group (two images at most) is left over.
        assert!(
            seen.len() >= labels.len() - 2,
            "{} of {}",
            seen.len(),
            labels.len()
        );
    }

    #[test]
    fn same_seed_same_batches_other_seed_other_batches() {
        let labels: Vec<i64> = (0..200).map(|i| i % 23).collect();
        let run = |seed| pk_batches(&labels, 4, 8, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        // 23 identities of 8 or 9 images: groups of 4, identities with 9 padded to 12.
        for b in run(3) {
            let ids: BTreeSet<i64> = b.iter().map(|&i| labels[i]).collect();
            assert_eq!((b.len(), ids.len()), (32, 8));
        }
    }

    #[test]
    fn too_few_identities_give_no_batch() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert!(pk_batches(&[0, 0, 1, 1], 2, 3, &mut rng).is_empty());
    }
}
