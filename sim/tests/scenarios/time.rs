//! Goal: virtual time advances only when nothing is ready, jumps to the earliest timer,
//! keeps insertion order on ties, and timeouts and intervals fire at exact deadlines.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use sim::Sim;
use sim::time::{Elapsed, Instant, interval, sleep, sleep_until, timeout};

#[test]
fn time_jumps_to_the_earliest_timer() {
    let mut sim = Sim::new(1);
    let elapsed = sim
        .block_on(async {
            let start = Instant::now();
            assert_eq!(start, Instant::ZERO);
            sleep(Duration::from_secs(3600)).await;
            start.elapsed()
        })
        .unwrap();
    assert_eq!(elapsed, Duration::from_secs(3600));
    assert!(sim.steps() < 10, "an hour of virtual time took {} polls", sim.steps());
}

#[test]
fn time_does_not_advance_while_tasks_are_ready() {
    let mut sim = Sim::new(2);
    sim.block_on(async {
        let spinner = sim::spawn(async {
            for _ in 0..1_000 {
                sim::yield_now().await;
            }
            Instant::now()
        });
        assert_eq!(spinner.await.unwrap(), Instant::ZERO);
    })
    .unwrap();
}

#[test]
fn ties_fire_in_insertion_order() {
    for seed in 0..20 {
        let mut sim = Sim::builder().seed(seed).scheduler(sim::SchedulerMode::Fifo).build();
        let order = Rc::new(RefCell::new(Vec::new()));
        let deadline = Instant::from_nanos(5_000);
        for i in 0..10 {
            let order = Rc::clone(&order);
            let _ = sim.spawn_on(sim::NodeId::MAIN, "tie", async move {
                sleep_until(deadline).await;
                order.borrow_mut().push(i);
            });
        }
        sim.run_for(Duration::from_micros(5)).unwrap();
        assert_eq!(*order.borrow(), (0..10).collect::<Vec<_>>());
    }
}

#[test]
fn timeout_fires_at_the_virtual_deadline() {
    let mut sim = Sim::new(3);
    sim.block_on(async {
        let slow = timeout(Duration::from_millis(100), sleep(Duration::from_millis(250))).await;
        assert_eq!(slow, Err(Elapsed));
        assert_eq!(Instant::now().since_start(), Duration::from_millis(100));
        let fast = timeout(Duration::from_millis(100), async {
            sleep(Duration::from_millis(40)).await;
            7
        })
        .await;
        assert_eq!(fast, Ok(7));
        assert_eq!(Instant::now().since_start(), Duration::from_millis(140));
        // Ready exactly at the deadline: the future wins.
        let tie = timeout(Duration::from_millis(10), sleep(Duration::from_millis(10))).await;
        assert_eq!(tie, Ok(()));
    })
    .unwrap();
    assert_eq!(sim.timer_count(), 0, "finished timeouts leave no timer behind");
}

#[test]
fn interval_ticks_every_period_and_skips_missed_ticks() {
    let mut sim = Sim::new(4);
    let ticks = sim
        .block_on(async {
            let mut ticker = interval(Duration::from_millis(250));
            let mut ticks = Vec::new();
            for i in 0..4 {
                ticks.push(ticker.tick().await.since_start());
                if i == 1 {
                    // Busy for 600 ms: two ticks are missed, then one fires late.
                    sleep(Duration::from_millis(600)).await;
                }
            }
            ticks.push(Instant::now().since_start());
            ticks
        })
        .unwrap();
    let ms = Duration::from_millis;
    assert_eq!(ticks, [ms(0), ms(250), ms(500), ms(1100), ms(1100)]);
}

#[test]
fn instant_arithmetic_saturates() {
    let t = Instant::from_nanos(10);
    assert_eq!(t + Duration::from_nanos(5), Instant::from_nanos(15));
    assert_eq!(Instant::from_nanos(3) - t, Duration::ZERO);
    assert_eq!(t - Instant::from_nanos(3), Duration::from_nanos(7));
    assert_eq!((t + Duration::MAX).as_nanos(), u64::MAX);
    assert_eq!(Instant::from_nanos(1_250_000_000).to_string(), "1.250000s");
}
