//! Learning-rate schedules with optional linear warm-up. Plain arithmetic on step counts.

use serde::{Deserialize, Serialize};

/// A schedule's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ScheduleKind {
    /// The base rate throughout.
    Constant,
    /// `lr * rate^(step / steps)` (floor of the exponent when `staircase`), the seed's decay.
    Exponential {
        /// Decay factor per `steps`.
        rate: f64,
        /// Steps per decay.
        steps: u64,
        /// Decay in steps rather than smoothly.
        staircase: bool,
    },
    /// Multiply by `gamma` at each milestone step.
    Step {
        /// Factor.
        gamma: f64,
        /// Steps at which to decay.
        milestones: Vec<u64>,
    },
    /// Cosine from lr to `min_lr` over `total` steps (after warm-up).
    Cosine {
        /// Steps of the whole run.
        total: u64,
        /// Final rate.
        min_lr: f64,
    },
    /// `(lr - end) * (1 - t)^power + end` over `total` steps (after warm-up).
    Polynomial {
        /// Steps of the whole run.
        total: u64,
        /// Exponent.
        power: f64,
        /// Final rate.
        end_lr: f64,
    },
    /// Multiply by `factor` when the epoch's metric has not improved for `patience` epochs.
    Plateau {
        /// Factor.
        factor: f64,
        /// Epochs without improvement before decaying.
        patience: u32,
        /// Lowest rate.
        min_lr: f64,
    },
}

/// A schedule with its state (the plateau tracker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Base learning rate.
    pub lr: f64,
    /// Steps of linear warm-up from lr/100 to lr.
    pub warmup: u64,
    /// The shape.
    pub kind: ScheduleKind,
    /// Plateau: current multiplier.
    pub plateau_scale: f64,
    /// Plateau: best metric so far (lower is better).
    pub plateau_best: Option<f64>,
    /// Plateau: epochs since the best.
    pub plateau_bad: u32,
}

impl Schedule {
    /// A schedule starting at `lr`.
    pub fn new(lr: f64, warmup: u64, kind: ScheduleKind) -> Self {
        Schedule {
            lr,
            warmup,
            kind,
            plateau_scale: 1.0,
            plateau_best: None,
            plateau_bad: 0,
        }
    }

    /// The rate for optimiser step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup {
            let start = self.lr / 100.0;
            return start + (self.lr - start) * (step as f64 / self.warmup as f64);
        }
        let s = step - self.warmup;
        match &self.kind {
            ScheduleKind::Constant => self.lr,
            ScheduleKind::Exponential {
                rate,
                steps,
                staircase,
            } => {
                let e = s as f64 / (*steps).max(1) as f64;
                self.lr * rate.powf(if *staircase { e.floor() } else { e })
            }
            ScheduleKind::Step { gamma, milestones } => {
                self.lr * gamma.powi(milestones.iter().filter(|&&m| step >= m).count() as i32)
            }
            ScheduleKind::Cosine { total, min_lr } => {
                let span = total.saturating_sub(self.warmup).max(1);
                let t = (s as f64 / span as f64).min(1.0);
                min_lr + (self.lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            ScheduleKind::Polynomial {
                total,
                power,
                end_lr,
            } => {
                let span = total.saturating_sub(self.warmup).max(1);
                let t = (s as f64 / span as f64).min(1.0);
                (self.lr - end_lr) * (1.0 - t).powf(*power) + end_lr
            }
            ScheduleKind::Plateau { min_lr, .. } => (self.lr * self.plateau_scale).max(*min_lr),
        }
    }

    /// Reports an epoch's metric (lower is better); only the plateau schedule reacts.
    pub fn epoch_end(&mut self, metric: f64) {
        let ScheduleKind::Plateau {
            factor, patience, ..
        } = self.kind
        else {
            return;
        };
        match self.plateau_best {
            Some(best) if metric >= best * (1.0 - 1e-4) => {
                self.plateau_bad += 1;
                if self.plateau_bad > patience {
                    self.plateau_scale *= factor;
                    self.plateau_bad = 0;
                }
            }
            _ => {
                self.plateau_best = Some(metric);
                self.plateau_bad = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_by_hand() {
        let c = |k| Schedule::new(0.1, 0, k);
        let e = c(ScheduleKind::Exponential {
            rate: 0.5,
            steps: 10,
            staircase: false,
        });
        assert!(
            (e.lr_at(10) - 0.05).abs() < 1e-12 && (e.lr_at(5) - 0.1 * 0.5f64.sqrt()).abs() < 1e-12
        );
        let st = c(ScheduleKind::Exponential {
            rate: 0.5,
            steps: 10,
            staircase: true,
        });
        assert_eq!(st.lr_at(19), 0.05);
        let s = c(ScheduleKind::Step {
            gamma: 0.1,
            milestones: vec![5, 8],
        });
        assert_eq!(
            [s.lr_at(4), s.lr_at(5), s.lr_at(8)],
            [0.1, 0.1 * 0.1, 0.1 * 0.1 * 0.1]
        );
        let cos = Schedule::new(
            0.1,
            10,
            ScheduleKind::Cosine {
                total: 110,
                min_lr: 0.0,
            },
        );
        assert!(
            (cos.lr_at(0) - 0.001).abs() < 1e-12,
            "warm-up starts at lr/100"
        );
        assert!((cos.lr_at(5) - (0.001 + 0.099 * 0.5)).abs() < 1e-12);
        assert!((cos.lr_at(60) - 0.05).abs() < 1e-12, "half way");
        assert!(cos.lr_at(110).abs() < 1e-12);
        let p = c(ScheduleKind::Polynomial {
            total: 100,
            power: 2.0,
            end_lr: 0.0,
        });
        assert!((p.lr_at(50) - 0.025).abs() < 1e-12);
    }

    #[test]
    fn plateau_decays_after_patience() {
        let mut s = Schedule::new(
            1.0,
            0,
            ScheduleKind::Plateau {
                factor: 0.5,
                patience: 1,
                min_lr: 0.1,
            },
        );
        for m in [3.0, 2.0, 2.0, 2.0] {
            s.epoch_end(m);
        }
        assert_eq!(s.lr_at(0), 0.5);
        for _ in 0..10 {
            s.epoch_end(5.0);
        }
        assert_eq!(s.lr_at(0), 0.1, "never below min_lr");
    }
}
