//! Training / inference throughput of one network (see `ffem_model::bench`): `bench_train [FLAGS]`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("{}", ffem_model::bench::bench_train(&args));
}
