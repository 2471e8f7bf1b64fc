//! Backbones: MobileNetV3 Large and Small (Howard et al. 2019).

pub mod mobilenet_v3;

pub use mobilenet_v3::{Activation, MobileNetV3, MobileNetV3Config, Variant};
