//! `App::every` over real TCP: periodic tasks run on the serving thread
//! with the worker's state, what they publish reaches subscribers, and a
//! task that panics runs again at its next time.

mod support;

use std::cell::Cell;
use std::time::Duration;

use support::{get, serve};
use testkit::sse::open;
use tine::{App, Request, Sse};

struct Ticks(Cell<u32>);

#[test]
fn periodic_tasks_run_with_the_state_publish_and_outlive_a_panic() {
    let addr = serve(|| {
        App::new()
            .on_worker_start(|state| {
                state.insert(Ticks(Cell::new(0)));
            })
            .every(Duration::from_millis(40), |state| {
                let ticks = state.get::<Ticks>().expect("the worker's state");
                let n = ticks.0.get() + 1;
                ticks.0.set(n);
                if n == 2 {
                    panic!("the second run fails");
                }
                tine::publish("ticks", format!("tick {n}")).expect("published");
            })
            .sse("/events", |_: &Request, sse: &mut Sse| {
                sse.subscribe("ticks")
            })
            .get("/ticks", |req: &Request| {
                req.state::<Ticks>().unwrap().0.get().to_string()
            })
    });
    let mut events = open(addr, "/events", "").expect("a stream");
    // Runs after the panicking one still come, each published at once.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = events
            .next_event()
            .expect("an event within the read timeout");
        seen.push(event.data());
    }
    let numbers: Vec<u32> = seen
        .iter()
        .map(|d| d.strip_prefix("tick ").unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] > w[0]), "{seen:?}");
    assert!(
        !numbers.contains(&2),
        "the panicking run published: {seen:?}"
    );
    assert!(numbers[2] >= 4, "{seen:?}");
    // The same state the handlers see.
    let n: u32 = get(addr, "/ticks").text().parse().unwrap();
    assert!(n >= numbers[2], "{n} after {seen:?}");
}
