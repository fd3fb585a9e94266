#[global_allocator]
static GLOBAL: switchyard::allocator::Mimalloc = switchyard::allocator::Mimalloc;

fn main() -> std::process::ExitCode {
    switchyard::allocator::without_transparent_huge_pages();
    switchyard::allocator::purge_free_pages_soon();
    switchyard::cli::main()
}
