//! Where ffem's layers choose between its CPU kernels and burn's own operations: one switch for
//! the process, one test for a tensor, and the two conversions between `flex` tensors and the
//! kernels' plain slices. `conv`, `norm` and `scale` each route through here, so none of them
//! depends on another for the choice.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData};

static CPU_KERNELS: AtomicBool = AtomicBool::new(true);

/// Turns ffem's CPU kernels ([`crate::conv`]'s convolution, [`crate::norm`]'s fused batch norm,
/// [`crate::scale`]'s squeeze-and-excite rescaling) on or off for the whole process; off, every
/// layer runs burn's own operations. On by default. The benchmark uses it for its before/after
/// table and the tests to compare the two paths.
pub fn set_cpu_kernels(enabled: bool) {
    CPU_KERNELS.store(enabled, Ordering::Relaxed);
}

/// Whether ffem's CPU kernels are in use (see [`set_cpu_kernels`]): on unless switched off there
/// or by the environment variable `FFEM_KERNELS=burn` (a way to rule the kernels out when a run
/// behaves unexpectedly, without rebuilding).
pub fn cpu_kernels() -> bool {
    static ENV_OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    CPU_KERNELS.load(Ordering::Relaxed)
        && !*ENV_OFF.get_or_init(|| std::env::var("FFEM_KERNELS").is_ok_and(|v| v == "burn"))
}

/// Whether ffem's CPU kernels serve this tensor: they are on, and it is f32 on the `flex` device
/// (the optimiser's fused step asks too).
pub fn on_cpu_kernels<const D: usize>(x: &Tensor<D>) -> bool {
    cpu_kernels()
        && x.dtype() == DType::F32
        && matches!(
            x.device().as_dispatch().clone().inner(),
            burn::backend::DispatchDevice::Flex(_)
        )
}

/// The tensor's f32 elements in row-major order, borrowed when its layout already is that.
pub(crate) fn f32_elements(t: &FlexTensor) -> Cow<'_, [f32]> {
    assert_eq!(
        t.dtype(),
        DType::F32,
        "ffem routes only f32 tensors to its CPU kernels"
    );
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous copy")
                .to_vec(),
        ),
    }
}

/// A `flex` tensor owning `values` (row-major) in `shape`.
pub(crate) fn flex_tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
