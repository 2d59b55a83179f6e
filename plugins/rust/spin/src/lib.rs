//! `spin`: a deliberately hung plugin, for testing the host's per-call deadline.
//!
//! It implements the `filter` world and never returns from `on-event`: it loops forever.
//! The host must interrupt it (epoch or fuel deadline), then apply its failure policy.
//! `black_box` keeps the optimizer from proving the loop has no effect and deleting it
//! (an infinite loop without side effects is otherwise fair game for LLVM).

use core::hint::black_box;

wit_bindgen::generate!({
    world: "filter",
    path: "../../../wit/0.1.0-revised",
});

struct Spin;

impl Guest for Spin {
    fn on_event(_event: SseEvent) -> Verdict {
        let mut counter: u64 = 0;
        loop {
            counter = black_box(counter.wrapping_add(1));
            if black_box(false) {
                break;
            }
        }
        Verdict::Pass
    }
}

export!(Spin);
