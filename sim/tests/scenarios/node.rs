//! Goal: nodes are killed, restarted, paused and resumed as a whole, with destructors
//! run, timers cancelled or frozen, and clear errors for bad node arguments.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use sim::{ErrorKind, NodeId, NodeState, Sim};

struct OnDrop(Rc<Cell<u32>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn kill_runs_destructors_and_cancels_timers() {
    let mut sim = Sim::new(1);
    let node = sim.node("victim").build();
    let dropped = Rc::new(Cell::new(0));
    let ticks = Rc::new(Cell::new(0));
    for _ in 0..4 {
        let guard = OnDrop(Rc::clone(&dropped));
        let ticks = Rc::clone(&ticks);
        let _ = sim.spawn_on(node, "ticker", async move {
            let _guard = guard;
            loop {
                sim::time::sleep(Duration::from_millis(10)).await;
                ticks.set(ticks.get() + 1);
            }
        });
    }
    sim.run_for(Duration::from_millis(35)).unwrap();
    assert_eq!(ticks.get(), 12);
    assert_eq!(sim.timer_count(), 4);
    sim.kill(node).unwrap();
    assert_eq!(dropped.get(), 4, "every task's destructor ran at the kill");
    assert_eq!(sim.task_count(), 0);
    assert_eq!(sim.timer_count(), 0, "their timers are cancelled");
    assert_eq!(sim.node_state(node).unwrap(), NodeState::Killed);
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(ticks.get(), 12, "nothing of the node runs after the kill");
    // Spawning on a killed node is an error; killing again is a no-op.
    let error = sim.spawn_on(node, "late", async {}).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::NodeKilled { .. }), "{error}");
    sim.kill(node).unwrap();
}

#[test]
fn a_task_can_kill_its_own_node() {
    let mut sim = Sim::new(2);
    let node = sim.node("suicidal").build();
    let after = Rc::new(Cell::new(false));
    let flag = Rc::clone(&after);
    let handle = sim
        .spawn_on(node, "killer", async move {
            let handle = sim::Handle::current();
            handle.kill(sim::current_node()).unwrap();
            sim::yield_now().await;
            flag.set(true);
        })
        .unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(!after.get(), "the task stopped at the end of the poll that killed its node");
    assert!(handle.is_finished());
    assert_eq!(sim.task_count(), 0);
}

#[test]
fn restart_runs_init_again_on_fresh_state() {
    let mut sim = Sim::new(3);
    let starts = Rc::new(Cell::new(0));
    let log = Rc::new(RefCell::new(Vec::new()));
    let (starts_in, log_in) = (Rc::clone(&starts), Rc::clone(&log));
    let node = sim
        .node("server")
        .init(move || {
            let incarnation = starts_in.get();
            starts_in.set(incarnation + 1);
            let log = Rc::clone(&log_in);
            async move {
                // State built inside init is fresh for every start.
                let mut local_counter = 0;
                loop {
                    sim::time::sleep(Duration::from_secs(1)).await;
                    local_counter += 1;
                    log.borrow_mut().push((incarnation, local_counter));
                }
            }
        })
        .build();
    sim.run_for(Duration::from_millis(2500)).unwrap();
    assert_eq!(starts.get(), 1);
    sim.restart(node).unwrap();
    sim.run_for(Duration::from_millis(1500)).unwrap();
    assert_eq!(starts.get(), 2);
    assert_eq!(*log.borrow(), [(0, 1), (0, 2), (1, 1)]);
    // Restarting a killed node starts it too.
    sim.kill(node).unwrap();
    sim.restart(node).unwrap();
    assert_eq!(starts.get(), 3);
    assert_eq!(sim.node_state(node).unwrap(), NodeState::Running);
}

#[test]
fn pause_freezes_tasks_and_timers_until_resume() {
    let mut sim = Sim::new(4);
    let node = sim.node("gc").build();
    let woke_at = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&woke_at);
    let _ = sim.spawn_on(node, "sleeper", async move {
        for _ in 0..3 {
            sim::time::sleep(Duration::from_secs(1)).await;
            log.borrow_mut().push(sim::time::Instant::now().since_start());
        }
    });
    sim.run_for(Duration::from_millis(1500)).unwrap();
    sim.pause(node).unwrap();
    assert_eq!(sim.node_state(node).unwrap(), NodeState::Paused);
    sim.run_for(Duration::from_secs(5)).unwrap();
    assert_eq!(*woke_at.borrow(), [Duration::from_secs(1)], "nothing ran while paused");
    sim.resume(node).unwrap();
    sim.run_for(Duration::from_secs(3)).unwrap();
    // The overdue timer fires at resume (6.5 s); the next one a second later.
    assert_eq!(
        *woke_at.borrow(),
        [Duration::from_secs(1), Duration::from_millis(6500), Duration::from_millis(7500)]
    );
}

#[test]
fn bad_node_arguments_are_clear_errors() {
    let sim = Sim::new(5);
    let node = sim.node("n1").build();
    let error = sim.node("n1").try_build().unwrap_err();
    assert!(error.to_string().contains("a node named \"n1\" exists already"), "{error}");
    assert!(sim.node("").try_build().is_err());
    let error = sim.kill(NodeId::MAIN).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::MainNode { action: "kill" }), "{error}");
    assert!(sim.pause(NodeId::MAIN).is_err());
    let other = Sim::new(5);
    let mut foreign = NodeId::MAIN;
    for i in 0..5 {
        foreign = other.node(format!("x{i}")).build();
    }
    let error = sim.kill(foreign).unwrap_err();
    assert!(error.to_string().contains("unknown node"), "{error}");
    assert!(error.to_string().contains("nodes 0 to 1"), "{error}");
    sim.kill(node).unwrap();
    let error = sim.pause(node).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::NodeKilled { .. }), "{error}");
    assert_eq!(sim.node_id("n1"), Some(node));
    assert_eq!(sim.node_name(node).as_deref(), Some("n1"));
    assert_eq!(sim.node_id("nope"), None);
}

#[test]
fn wall_clock_has_fixed_epoch_offset_and_drift() {
    let mut sim = Sim::new(6);
    let skewed = sim.node("skewed").build();
    let epoch = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    assert_eq!(sim.wall_clock(skewed).unwrap(), epoch);
    sim.run_for(Duration::from_secs(10)).unwrap();
    sim.set_clock_offset(skewed, -3_000_000_000).unwrap();
    assert_eq!(sim.wall_clock(skewed).unwrap(), epoch + Duration::from_secs(7));
    assert_eq!(sim.wall_clock(NodeId::MAIN).unwrap(), epoch + Duration::from_secs(10));
    sim.set_clock_drift(skewed, 100_000).unwrap(); // 10% fast
    sim.run_for(Duration::from_secs(10)).unwrap();
    assert_eq!(sim.wall_clock(skewed).unwrap(), epoch + Duration::from_secs(18));
    let in_task = sim.block_on(async { sim::time::wall_clock() }).unwrap();
    assert_eq!(in_task, epoch + Duration::from_secs(20), "main's clock is not skewed");
    assert!(sim.set_clock_drift(skewed, 200_000).is_err());
}

#[test]
fn each_node_draws_from_its_own_stream() {
    // Extra draws on one node leave another node's draws unchanged.
    let draws_of_b = |extra_on_a: u64| {
        let mut sim = Sim::builder().seed(8).scheduler(sim::SchedulerMode::Fifo).build();
        let a = sim.node("a").build();
        let b = sim.node("b").build();
        let _ = sim.spawn_on(a, "a", async move {
            for _ in 0..extra_on_a {
                sim::rand::u64();
            }
        });
        let values = sim
            .spawn_on(b, "b", async { (0..4).map(|_| sim::rand::u64()).collect::<Vec<_>>() })
            .unwrap();
        sim.block_on(values).unwrap().unwrap()
    };
    assert_eq!(draws_of_b(0), draws_of_b(100));
}
