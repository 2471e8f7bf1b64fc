//! Training / inference throughput of one network (see `ffem_model::bench`): `bench_train [FLAGS]`.
#[global_allocator]
static ALLOCATOR: ffem_kernels::alloc::BlockCache = ffem_kernels::alloc::BlockCache;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("{}", ffem_model::bench::bench_train(&args));
}
