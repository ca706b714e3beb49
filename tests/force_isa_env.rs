//! `INITRET_FORCE_ISA` is read each time a `Dispatcher` given no kernel
//! builds its CPU backend. This file holds one test, so that no other test
//! of its process reads the environment while it is changed.

use initret::{Backend, BitTable, Dispatcher, Error};

fn build() -> Result<Dispatcher, Error> {
    Dispatcher::builder(BitTable::seed(64))
        .backend(Backend::Cpu)
        .threads(1)
        .build()
}

fn set(value: Option<&str>) {
    // SAFETY: this test binary runs this one test and starts no threads that
    // read the environment (the dispatchers' workers do not), so nothing
    // reads it while it changes.
    unsafe {
        match value {
            Some(value) => std::env::set_var("INITRET_FORCE_ISA", value),
            None => std::env::remove_var("INITRET_FORCE_ISA"),
        }
    }
}

#[test]
fn the_variable_is_read_on_every_build() {
    set(None);
    assert!(build().is_ok());
    // A bad value set after a backend was built is still an error.
    set(Some("sse9"));
    assert!(matches!(build(), Err(Error::IsaUnavailable { .. })));
    // Unset again, it no longer is.
    set(None);
    let dispatcher = build().expect("the variable is unset");
    assert_eq!(dispatcher.popcount(&[7]).unwrap(), [3]);
    // A fixed kernel takes effect in the next build.
    set(Some("scalar-loads"));
    let dispatcher = build().expect("the scalar kernel runs everywhere");
    assert_eq!(
        dispatcher.cpu().map(|cpu| cpu.kernel().name()),
        Some("scalar".to_string())
    );
    // It fixes the kernel for 64-bit queries too.
    assert_eq!(
        dispatcher.cpu().map(|cpu| cpu.wide_kernel().name()),
        Some("scalar".to_string())
    );
    assert_eq!(dispatcher.popcount_i64(&[7, 3]).unwrap(), [3, 2]);
    set(None);
}
