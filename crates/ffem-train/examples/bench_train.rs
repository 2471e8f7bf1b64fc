//! Training / inference throughput of one network (see `ffem_train::bench`): `bench_train [FLAGS]`.
#[global_allocator]
static ALLOCATOR: ffem_kernels::alloc::BlockCache = ffem_kernels::alloc::BlockCache;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match ffem_train::bench::bench_train(&args) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
