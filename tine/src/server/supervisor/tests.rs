//! Every path of the supervisor, driven by a simulated master: forks
//! succeed with made-up pids (or fail on demand), binds succeed, time
//! is advanced by hand.
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::*;

const GRACE: Duration = Duration::from_secs(30);
const READY: Duration = Duration::from_secs(20);

/// A fork the simulated master performed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Forked {
    worker: WorkerId,
    pid: i32,
    slot: usize,
    accept: Vec<usize>,
    listen: Vec<usize>,
}

struct Sim {
    sup: Supervisor,
    now: Instant,
    next_pid: i32,
    /// Forks to fail, counted from the next one (`true` = fail).
    fork_plan: VecDeque<bool>,
    /// Whether binds succeed.
    bind_ok: bool,
    /// Every action but forks, since the last `take`.
    actions: Vec<Action>,
    /// Every fork that succeeded, since the last `take`.
    forks: Vec<Forked>,
    workers: BTreeMap<i32, WorkerId>,
    /// How many times the master was told to close its listeners (kept
    /// apart from `actions`, which the stop tests compare whole).
    closed_listeners: usize,
}

impl Sim {
    fn new(workers: usize, addresses: &[(Mode, usize)]) -> Sim {
        Sim::with_failures(workers, addresses, &[])
    }

    /// `fail`: the outcome of the first forks (`true` fails).
    fn with_failures(workers: usize, addresses: &[(Mode, usize)], fail: &[bool]) -> Sim {
        let sup = Supervisor::new(workers, GRACE, READY, addresses);
        Sim::started(sup, fail)
    }

    /// Starts `sup` (set up as a test needs it); `fail` as in
    /// [`with_failures`](Sim::with_failures).
    fn started(sup: Supervisor, fail: &[bool]) -> Sim {
        let mut sim = Sim {
            sup,
            now: Instant::now(),
            next_pid: 100,
            fork_plan: fail.iter().copied().collect(),
            bind_ok: true,
            actions: Vec::new(),
            forks: Vec::new(),
            workers: BTreeMap::new(),
            closed_listeners: 0,
        };
        let start = sim.sup.start(sim.now);
        sim.run(start);
        sim
    }

    /// Starts `n` workers on one reuseport address and has them ready.
    fn ready(n: usize) -> Sim {
        let mut sim = Sim::new(n, &[(Mode::ReusePort, n)]);
        let pids = sim.take_forks();
        for f in &pids {
            sim.ready_pid(f.pid);
        }
        sim.take();
        sim
    }

    fn run(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let event = match action {
                Action::Fork {
                    worker,
                    slot,
                    accept,
                    listen,
                    ..
                } => {
                    if self.fork_plan.pop_front().unwrap_or(false) {
                        Event::ForkFailed {
                            worker,
                            reason: "Resource temporarily unavailable".into(),
                        }
                    } else {
                        let pid = self.next_pid;
                        self.next_pid += 1;
                        self.workers.insert(pid, worker);
                        self.forks.push(Forked {
                            worker,
                            pid,
                            slot,
                            accept,
                            listen,
                        });
                        Event::Forked { worker, pid }
                    }
                }
                Action::Bind { address } => Event::Bound {
                    address,
                    ok: self.bind_ok,
                },
                Action::CloseListeners => {
                    self.closed_listeners += 1;
                    continue;
                }
                other => {
                    self.actions.push(other);
                    continue;
                }
            };
            queue.extend(self.sup.handle(self.now, event));
        }
    }

    fn feed(&mut self, event: Event) {
        let actions = self.sup.handle(self.now, event);
        self.run(actions);
    }

    fn command(&mut self, c: Command) {
        self.feed(Event::Command(c));
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.feed(Event::Tick);
    }

    fn ready_pid(&mut self, pid: i32) {
        let worker = self.workers[&pid];
        self.feed(Event::Ready { worker });
    }

    fn exit(&mut self, pid: i32, status: &str) {
        self.feed(Event::Exited {
            pid,
            status: status.into(),
        });
    }

    fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn take_forks(&mut self) -> Vec<Forked> {
        std::mem::take(&mut self.forks)
    }

    /// The one fork performed since the last `take_forks`.
    fn one_fork(&mut self) -> Forked {
        let forks = self.take_forks();
        assert_eq!(forks.len(), 1, "{forks:?}");
        forks[0].clone()
    }

    fn worker(&self, pid: i32) -> &Worker {
        &self.sup.workers[&self.workers[&pid]]
    }

    /// The pid of `slot`'s current worker.
    fn pid_of(&self, slot: usize) -> i32 {
        let id = self.sup.slots[slot].worker.expect("a worker");
        self.sup.workers[&id].pid.expect("forked")
    }
}

fn term(pid: i32) -> Action {
    Action::Signal {
        pid,
        sig: Sig::Term,
    }
}

fn kill(pid: i32) -> Action {
    Action::Signal {
        pid,
        sig: Sig::Kill,
    }
}

fn adopt(sim: &Sim, pid: i32, socket: usize) -> Action {
    Action::Adopt {
        worker: sim.workers[&pid],
        socket,
    }
}

#[test]
fn start_forks_one_worker_per_slot_on_its_own_socket() {
    let mut sim = Sim::new(3, &[(Mode::ReusePort, 4)]);
    let forks = sim.take_forks();
    let accepts: Vec<(usize, Vec<usize>)> =
        forks.iter().map(|f| (f.slot, f.accept.clone())).collect();
    // A surplus socket j goes to slot j % workers.
    assert_eq!(accepts, [(0, vec![0, 3]), (1, vec![1]), (2, vec![2])]);
    assert!(forks.iter().all(|f| f.listen.is_empty()));
    assert!(sim.take().is_empty());
    assert_eq!(sim.sup.next_deadline(), None);
}

#[test]
fn rolling_restart_replaces_one_slot_at_a_time_after_ready() {
    let mut sim = Sim::ready(2);
    let (old0, old1) = (sim.pid_of(0), sim.pid_of(1));
    sim.command(Command::Reload);
    let c0 = sim.one_fork();
    assert_eq!((c0.slot, c0.accept.clone()), (0, vec![0]));
    assert!(sim.take().is_empty(), "nobody is stopped before READY");
    // Before the replacement is ready, nothing else moves.
    sim.advance(Duration::from_secs(1));
    assert!(sim.take_forks().is_empty());
    sim.ready_pid(c0.pid);
    assert_eq!(sim.take(), [term(old0)]);
    let c1 = sim.one_fork();
    assert_eq!((c1.slot, c1.accept.clone()), (1, vec![1]));
    sim.ready_pid(c1.pid);
    assert_eq!(sim.take(), [term(old1)]);
    assert!(sim.sup.current.is_none(), "restart complete");
    assert_eq!((sim.pid_of(0), sim.pid_of(1)), (c0.pid, c1.pid));
    // The old workers' exits are expected: no respawn.
    sim.exit(old0, "exit status 0");
    sim.exit(old1, "exit status 0");
    sim.advance(GRACE * 2);
    assert!(sim.take_forks().is_empty());
    assert!(sim.take().is_empty());
}

#[test]
fn scale_up_stops_at_the_most_workers() {
    let mut sim = Sim::ready(MAX_WORKERS - 1);
    sim.command(Command::ScaleUp);
    assert_eq!(sim.take_forks().len(), 1);
    assert_eq!(sim.sup.slots.len(), MAX_WORKERS);
    sim.command(Command::ScaleUp);
    assert!(sim.take_forks().is_empty());
    assert_eq!(sim.sup.slots.len(), MAX_WORKERS);
    // Nothing binds either, and nothing waits to be done.
    assert!(!sim.take().iter().any(|a| matches!(a, Action::Bind { .. })));
    assert!(sim.sup.current.is_none() && sim.sup.ops.is_empty());
}

#[test]
fn a_second_hup_while_one_is_queued_is_dropped() {
    let mut sim = Sim::ready(1);
    sim.command(Command::ScaleUp);
    sim.take_forks();
    // The scale-up's worker is not ready, but scale-ups do not wait.
    sim.command(Command::Reload);
    sim.take_forks();
    sim.command(Command::Reload);
    sim.command(Command::Reload);
    assert_eq!(
        sim.sup
            .ops
            .iter()
            .filter(|&&o| o == Command::Reload)
            .count(),
        1
    );
}

#[test]
fn a_replacement_never_ready_is_stopped_and_the_old_worker_kept() {
    let mut sim = Sim::ready(2);
    let old0 = sim.pid_of(0);
    sim.command(Command::Reload);
    let c0 = sim.one_fork();
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + READY));
    sim.advance(READY - Duration::from_millis(1));
    assert!(sim.take().is_empty());
    sim.advance(Duration::from_millis(1));
    // The replacement is stopped, the old worker kept, the next slot goes on.
    assert_eq!(sim.take(), [term(c0.pid)]);
    assert_eq!(sim.pid_of(0), old0);
    let c1 = sim.one_fork();
    assert_eq!(c1.slot, 1);
    let old1 = sim.pid_of(1);
    sim.ready_pid(c1.pid);
    assert_eq!(sim.take(), [term(old1)]);
    sim.exit(old1, "exit status 0");
    // The stopped replacement gets SIGKILL after the graceful timeout.
    sim.advance(GRACE);
    assert_eq!(sim.take(), [kill(c0.pid)]);
    sim.exit(c0.pid, "killed by SIGKILL");
    assert!(sim.take_forks().is_empty(), "not respawned");
}

#[test]
fn a_replacement_that_dies_keeps_the_old_worker() {
    let mut sim = Sim::ready(2);
    let (old0, old1) = (sim.pid_of(0), sim.pid_of(1));
    sim.command(Command::Reload);
    let c0 = sim.one_fork();
    sim.exit(c0.pid, "exit status 1");
    // Slot 0 keeps its worker, slot 1 is replaced; the restart is over
    // (and says that one worker was kept).
    let c1 = sim.one_fork();
    assert_eq!(c1.slot, 1);
    sim.ready_pid(c1.pid);
    assert_eq!(sim.take(), [term(old1)]);
    assert!(sim.sup.current.is_none());
    assert_eq!((sim.pid_of(0), sim.pid_of(1)), (old0, c1.pid));
}

/// A `SIGHUP` while the process limit is reached: the replacement's fork
/// fails, and is tried again with the slot's backoff until it works; the
/// rolling restart is not over (not `reloading() == false`, not logged
/// complete) before every slot was replaced. It used to move on to the
/// next slot, end with the old workers kept, and never try again.
#[test]
fn a_replacement_that_cannot_fork_is_forked_again_with_backoff() {
    let mut sim = Sim::ready(2);
    let (old0, old1) = (sim.pid_of(0), sim.pid_of(1));
    sim.fork_plan = [true, true, false, true, false].into();
    sim.command(Command::Reload);
    assert!(sim.take_forks().is_empty());
    assert!(sim.sup.reloading(), "the restart is not over");
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + BACKOFF_MIN));
    sim.advance(BACKOFF_MIN - Duration::from_millis(1));
    assert!(sim.take_forks().is_empty());
    // Fails again: the backoff doubles.
    sim.advance(Duration::from_millis(1));
    assert!(sim.take_forks().is_empty());
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + BACKOFF_MIN * 2));
    assert!(sim.take().is_empty(), "no old worker stopped");
    sim.advance(BACKOFF_MIN * 2);
    let c0 = sim.one_fork();
    assert_eq!((c0.slot, c0.accept.clone()), (0, vec![0]));
    sim.ready_pid(c0.pid);
    assert_eq!(sim.take(), [term(old0)]);
    // Slot 1 has a backoff of its own.
    assert!(sim.take_forks().is_empty());
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + BACKOFF_MIN));
    sim.advance(BACKOFF_MIN);
    let c1 = sim.one_fork();
    assert_eq!(c1.slot, 1);
    assert!(sim.sup.reloading());
    sim.ready_pid(c1.pid);
    assert_eq!(sim.take(), [term(old1)]);
    assert!(sim.sup.current.is_none(), "restart complete");
    assert!(!sim.sup.reloading());
    assert_eq!((sim.pid_of(0), sim.pid_of(1)), (c0.pid, c1.pid));
    // One reload counted per slot, not one per attempt.
    let reload = Restart::Reload as usize;
    let r = sim.sup.restarts();
    assert_eq!((r[0][reload], r[1][reload]), (1, 1));
}

#[test]
fn a_sighup_supersedes_a_rolling_restart_waiting_to_fork_again() {
    let mut sim = Sim::ready(2);
    let old1 = sim.pid_of(1);
    sim.fork_plan = [false, true].into();
    sim.command(Command::Reload);
    let c0 = sim.one_fork();
    sim.ready_pid(c0.pid);
    sim.take();
    // Slot 1's replacement cannot be forked; a new SIGHUP starts over at
    // once, from slot 0, rather than queue behind the retries.
    assert!(sim.take_forks().is_empty());
    sim.command(Command::Reload);
    let again = sim.one_fork();
    assert_eq!(again.slot, 0);
    assert!(sim.sup.ops.is_empty());
    sim.ready_pid(again.pid);
    assert_eq!(sim.take(), [term(c0.pid)]);
    let c1 = sim.one_fork();
    assert_eq!(c1.slot, 1);
    sim.ready_pid(c1.pid);
    assert_eq!(sim.take(), [term(old1)]);
    assert!(sim.sup.current.is_none());
}

#[test]
fn a_stop_ends_a_rolling_restart_waiting_to_fork_again() {
    let mut sim = Sim::ready(2);
    let (w0, w1) = (sim.pid_of(0), sim.pid_of(1));
    sim.fork_plan = [true].into();
    sim.command(Command::Reload);
    sim.command(Command::Stop);
    let mut got = sim.take();
    got.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(got, [term(w0), term(w1)]);
    assert!(sim.sup.current.is_none());
    sim.advance(BACKOFF_MAX);
    assert!(sim.take_forks().is_empty());
}

#[test]
fn scale_down_hands_the_queue_to_a_survivor_that_can_adopt_it() {
    let mut sim = Sim::ready(3);
    let (w0, w2) = (sim.pid_of(0), sim.pid_of(2));
    sim.command(Command::ScaleDown);
    // The removed worker is only stopped once the adopter confirms.
    assert_eq!(sim.take(), [adopt(&sim, w0, 2)]);
    assert!(sim.take_forks().is_empty());
    sim.ready_pid(w0);
    assert_eq!(sim.take(), [term(w2)]);
    assert_eq!(sim.sup.slots.len(), 2);
    assert_eq!(sim.sup.slots[0].sockets, [0, 2]);
    sim.exit(w2, "exit status 0");
    sim.advance(Duration::from_secs(60));
    assert!(sim.take_forks().is_empty());
    assert!(sim.take().is_empty(), "socket 2 is covered by worker 0");
}

#[test]
fn scale_down_never_goes_below_one_worker() {
    let mut sim = Sim::ready(1);
    sim.command(Command::ScaleDown);
    assert!(sim.take().is_empty());
    assert_eq!(sim.sup.slots.len(), 1);
}

#[test]
fn scale_down_whose_adopter_never_confirms_is_aborted() {
    let mut sim = Sim::ready(2);
    let w1 = sim.pid_of(1);
    sim.command(Command::ScaleDown);
    sim.take();
    sim.advance(READY);
    assert!(sim.take().is_empty(), "the removed worker is kept");
    assert_eq!(sim.sup.slots.len(), 2);
    assert!(!sim.sup.slots[1].removing);
    assert_eq!(sim.sup.slots[0].sockets, [0]);
    assert_eq!(sim.pid_of(1), w1);
    assert!(sim.sup.current.is_none());
}

#[test]
fn scale_up_binds_a_socket_that_listens_only_once_its_worker_is_ready() {
    let mut sim = Sim::ready(2);
    sim.command(Command::ScaleUp);
    let f = sim.one_fork();
    assert_eq!(
        (f.slot, f.accept.clone(), f.listen.clone()),
        (2, vec![2], vec![2])
    );
    // Forked but still setting up (`on_worker_start`): a listening socket
    // would get connections no one accepts yet.
    assert!(sim.take().is_empty());
    assert!(!sim.sup.sockets[2].listening);
    sim.ready_pid(f.pid);
    assert_eq!(sim.take(), [Action::Listen { socket: 2 }]);
    assert!(sim.sup.sockets[2].listening);
    assert_eq!(sim.sup.slots.len(), 3);
}

#[test]
fn scale_down_without_an_adoptable_survivor_replaces_it() {
    let mut sim = Sim::ready(2);
    let w0 = sim.pid_of(0);
    sim.command(Command::ScaleUp);
    let w2 = sim.one_fork().pid;
    sim.ready_pid(w2);
    sim.take();
    // Workers 0 and 1 were forked before socket 2 existed.
    sim.command(Command::ScaleDown);
    let c = sim.one_fork();
    assert_eq!((c.slot, c.accept.clone()), (0, vec![0, 2]));
    assert!(sim.take().is_empty());
    sim.ready_pid(c.pid);
    assert_eq!(sim.take(), [term(w0), term(w2)]);
    assert_eq!(sim.sup.slots.len(), 2);
    assert_eq!(sim.pid_of(0), c.pid);
}

#[test]
fn scale_up_takes_an_adopted_socket_back() {
    let mut sim = Sim::ready(3);
    let w0 = sim.pid_of(0);
    sim.command(Command::ScaleDown);
    sim.ready_pid(w0);
    sim.take();
    sim.command(Command::ScaleUp);
    // No bind: socket 2 goes back to the new slot 2.
    let f = sim.one_fork();
    assert_eq!(
        (f.slot, f.accept.clone(), f.listen.clone()),
        (2, vec![2], vec![])
    );
    assert!(sim.take().is_empty());
    assert_eq!(sim.sup.slots[0].sockets, [0]);
    assert_eq!(sim.sup.sockets.len(), 3);
}

#[test]
fn a_crash_loop_backs_off_exponentially_and_resets_after_a_long_life() {
    let mut sim = Sim::ready(2);
    let w0 = sim.pid_of(0);
    let mut victim = sim.pid_of(1);
    // The crashed slot's queue is lent to the survivor at once.
    sim.exit(victim, "killed by SIGSEGV");
    assert_eq!(sim.take(), [adopt(&sim, w0, 1)]);
    assert!(sim.worker(w0).accepts.contains(&1));
    for delay in [100, 200, 400, 800, 1600, 3200, 5000, 5000] {
        let delay = Duration::from_millis(delay);
        assert_eq!(sim.sup.next_deadline(), Some(sim.now + delay));
        sim.advance(delay - Duration::from_millis(1));
        assert!(sim.take_forks().is_empty(), "{delay:?}");
        sim.advance(Duration::from_millis(1));
        let f = sim.one_fork();
        assert_eq!((f.slot, f.accept.clone()), (1, vec![1]));
        victim = f.pid;
        sim.exit(victim, "exit status 101");
    }
    // Already lent: no second ADOPT.
    assert!(sim.take().is_empty());
    // A worker that lived long enough resets the backoff.
    sim.advance(Duration::from_secs(5));
    let f = sim.one_fork();
    sim.ready_pid(f.pid);
    // Back: the survivor releases the lent socket.
    let release = Action::Release {
        worker: sim.workers[&w0],
        socket: 1,
    };
    assert_eq!(sim.take(), [release]);
    sim.advance(BACKOFF_RESET_AFTER);
    sim.exit(f.pid, "killed by SIGKILL");
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + BACKOFF_MIN));
    // And lent again.
    assert_eq!(sim.take(), [adopt(&sim, w0, 1)]);
}

/// Workers that die before they are ready, while none ever was (an
/// `on_worker_start` that panics): the master stops respawning them
/// after three in a row on a slot, stops the others and exits with 3,
/// instead of keeping an address no one serves for ever. Once any worker
/// was ready, a crash loop backs off instead (the test above).
#[test]
fn workers_that_never_start_make_the_master_give_up() {
    let mut sim = Sim::new(2, &[(Mode::ReusePort, 2)]);
    let forks = sim.take_forks();
    let (mut w0, w1) = (forks[0].pid, forks[1].pid);
    for (n, delay) in [100, 200].into_iter().enumerate() {
        sim.exit(w0, "exit status 1");
        assert!(
            sim.take()
                .iter()
                .all(|a| !matches!(a, Action::Signal { .. })),
            "{n}"
        );
        sim.advance(Duration::from_millis(delay));
        w0 = sim.one_fork().pid;
    }
    sim.exit(w0, "exit status 1");
    assert_eq!(sim.take(), [term(w1)]);
    // Nothing is respawned any more.
    sim.advance(Duration::from_secs(10));
    assert!(sim.take_forks().is_empty());
    sim.exit(w1, "exit status 0");
    assert_eq!(sim.take(), [Action::Exit(BOOT_FAILURE_STATUS)]);
}

/// A slot whose worker failed to start twice, then started: its count
/// starts over, and other slots' failures are counted apart.
#[test]
fn a_worker_that_starts_clears_its_slots_boot_failures() {
    let mut sim = Sim::new(1, &[(Mode::ReusePort, 1)]);
    let mut w = sim.one_fork().pid;
    for delay in [100, 200] {
        sim.exit(w, "exit status 1");
        sim.advance(Duration::from_millis(delay));
        w = sim.one_fork().pid;
    }
    sim.ready_pid(w);
    assert_eq!(sim.sup.slots[0].boot_failures, 0);
    sim.take();
    sim.exit(w, "killed by SIGSEGV");
    sim.advance(Duration::from_millis(400));
    assert_eq!(sim.take_forks().len(), 1);
    assert!(!sim.take().contains(&Action::Exit(BOOT_FAILURE_STATUS)));
}

#[test]
fn a_lent_socket_moved_to_its_borrower_by_a_scale_down_is_not_released() {
    let mut sim = Sim::ready(2);
    let w0 = sim.pid_of(0);
    sim.exit(sim.pid_of(1), "killed by SIGKILL");
    assert_eq!(sim.take(), [adopt(&sim, w0, 1)]);
    sim.ready_pid(w0);
    // Slot 1 (waiting for its respawn) is removed: worker 0 adopts socket 1
    // for good, and the scale-down completes at once.
    sim.command(Command::ScaleDown);
    assert_eq!(sim.take(), [adopt(&sim, w0, 1)]);
    sim.ready_pid(w0);
    assert_eq!(sim.sup.slots.len(), 1);
    assert!(sim.take().is_empty());
    assert!(sim.sup.lent.is_empty());
    sim.advance(Duration::from_secs(60));
    assert!(sim.take_forks().is_empty());
    assert!(sim.take().is_empty());
}

#[test]
fn a_slot_that_cannot_fork_lends_its_socket_and_is_retried() {
    // The second fork at start fails.
    let mut sim = Sim::with_failures(2, &[(Mode::ReusePort, 2)], &[false, true, true]);
    let w0 = sim.one_fork().pid;
    assert_eq!(sim.sup.slots[1].worker, None);
    // Lent as soon as worker 0 is ready.
    assert!(sim.take().is_empty());
    sim.ready_pid(w0);
    assert_eq!(sim.take(), [adopt(&sim, w0, 1)]);
    sim.ready_pid(w0);
    // Retried with backoff: the retry after 100 ms fails too.
    sim.advance(BACKOFF_MIN);
    assert!(sim.take_forks().is_empty());
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + BACKOFF_MIN * 2));
    sim.advance(BACKOFF_MIN * 2);
    let f = sim.one_fork();
    assert_eq!((f.slot, f.accept.clone()), (1, vec![1]));
    // Slot 1 has its socket back: the borrower releases it.
    sim.ready_pid(f.pid);
    assert_eq!(
        sim.take(),
        [Action::Release {
            worker: sim.workers[&w0],
            socket: 1
        }]
    );
    assert!(!sim.worker(w0).accepts.contains(&1));
    assert!(sim.sup.lent.is_empty());
    assert_eq!(sim.sup.slots[0].sockets, [0]);
}

/// A binary upgrade to more workers binds the extra sockets without
/// listening: each listens once its worker is ready.
#[test]
fn sockets_only_bound_at_start_listen_once_their_workers_are_ready() {
    let mut sup = Supervisor::new(2, GRACE, READY, &[(Mode::ReusePort, 2)]);
    sup.not_listening(&[1]);
    let mut sim = Sim::started(sup, &[]);
    let forks = sim.take_forks();
    let listens: Vec<_> = forks.iter().map(|f| (f.slot, f.listen.clone())).collect();
    assert_eq!(listens, [(0, vec![]), (1, vec![1])]);
    assert!(sim.take().is_empty());
    sim.ready_pid(forks[1].pid);
    assert_eq!(sim.take(), [Action::Listen { socket: 1 }]);
}

#[test]
fn a_failed_scale_up_fork_leaves_its_socket_unlistened_until_a_retry_works() {
    let mut sim = Sim::ready(2);
    sim.fork_plan = [true].into();
    sim.command(Command::ScaleUp);
    assert!(sim.take_forks().is_empty());
    // Not listening: nothing to lend, nothing stranded.
    assert!(sim.take().is_empty());
    assert!(!sim.sup.sockets[2].listening);
    sim.advance(BACKOFF_MIN);
    let f = sim.one_fork();
    assert_eq!((f.slot, f.listen.clone()), (2, vec![2]));
    // It listens once its worker is ready.
    assert!(sim.take().is_empty());
    sim.ready_pid(f.pid);
    assert_eq!(sim.take(), [Action::Listen { socket: 2 }]);
}

#[test]
fn no_worker_at_all_means_no_lending_until_one_is_ready() {
    let mut sim = Sim::with_failures(2, &[(Mode::ReusePort, 2)], &[true, true]);
    assert!(sim.take_forks().is_empty());
    assert!(sim.take().is_empty());
    sim.advance(BACKOFF_MIN);
    let forks = sim.take_forks();
    assert_eq!(forks.len(), 2);
    sim.ready_pid(forks[0].pid);
    // Worker 1 is starting: its socket is not stranded.
    assert!(sim.take().is_empty());
}

#[test]
fn stop_during_a_reload_stops_everyone_and_forks_nothing_more() {
    let mut sim = Sim::ready(2);
    let (w0, w1) = (sim.pid_of(0), sim.pid_of(1));
    sim.command(Command::Reload);
    let c0 = sim.one_fork().pid;
    sim.command(Command::Stop);
    let mut got = sim.take();
    got.sort_by_key(|a| format!("{a:?}"));
    let mut want = vec![term(w0), term(w1), term(c0)];
    want.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(got, want);
    // The replacement's READY no longer promotes it.
    sim.ready_pid(c0);
    sim.exit(w1, "exit status 0");
    sim.advance(READY);
    assert!(sim.take_forks().is_empty());
    assert!(sim.take().is_empty());
    sim.command(Command::Reload);
    sim.command(Command::ScaleUp);
    assert!(sim.take_forks().is_empty());
    sim.advance(GRACE - READY);
    let mut got = sim.take();
    got.sort_by_key(|a| format!("{a:?}"));
    let mut want = vec![kill(w0), kill(c0)];
    want.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(got, want);
    sim.exit(w0, "killed by SIGKILL");
    assert!(sim.take().is_empty());
    sim.exit(c0, "killed by SIGKILL");
    assert_eq!(sim.take(), [Action::Exit(0)]);
}

#[test]
fn term_waits_for_the_graceful_timeout_then_kills_what_is_left() {
    let mut sim = Sim::ready(2);
    let (w0, w1) = (sim.pid_of(0), sim.pid_of(1));
    assert_eq!(sim.closed_listeners, 0);
    sim.command(Command::Stop);
    assert_eq!(sim.take(), [term(w0), term(w1)]);
    // The master lets go of the sockets at once: each closes (new
    // connections are refused) when its draining workers close theirs.
    assert_eq!(sim.closed_listeners, 1);
    sim.exit(w0, "exit status 0");
    assert!(sim.take().is_empty());
    // A second TERM changes nothing.
    sim.command(Command::Stop);
    assert!(sim.take().is_empty());
    assert_eq!(sim.closed_listeners, 1);
    sim.advance(GRACE);
    assert_eq!(sim.take(), [kill(w1)]);
    sim.exit(w1, "killed by SIGKILL");
    assert_eq!(sim.take(), [Action::Exit(0)]);
}

#[test]
fn quit_kills_at_once_and_exits_once_all_are_reaped() {
    let mut sim = Sim::ready(2);
    let (w0, w1) = (sim.pid_of(0), sim.pid_of(1));
    sim.command(Command::Quit);
    assert_eq!(sim.take(), [kill(w0), kill(w1)]);
    assert_eq!(sim.closed_listeners, 1);
    sim.exit(w0, "killed by SIGKILL");
    sim.exit(w1, "killed by SIGKILL");
    assert_eq!(sim.take(), [Action::Exit(0)]);
    assert!(sim.take_forks().is_empty(), "no respawn");
}

#[test]
fn quit_escalates_a_graceful_stop() {
    let mut sim = Sim::ready(1);
    let w0 = sim.pid_of(0);
    sim.command(Command::Stop);
    sim.command(Command::Quit);
    assert_eq!(sim.take(), [term(w0), kill(w0)]);
}

#[test]
fn a_shared_socket_is_accepted_on_by_every_worker() {
    // Address 0: a reuseport group (sockets 0, 1); address 1: shared (2).
    let mut sim = Sim::new(2, &[(Mode::ReusePort, 2), (Mode::Shared, 1)]);
    let forks = sim.take_forks();
    assert_eq!(forks[0].accept, [0, 2]);
    assert_eq!(forks[1].accept, [1, 2]);
    for f in &forks {
        sim.ready_pid(f.pid);
    }
    // A scale-up binds for the reuseport address only.
    sim.command(Command::ScaleUp);
    let f = sim.one_fork();
    assert_eq!((f.accept.clone(), f.listen.clone()), (vec![2, 3], vec![3]));
    sim.ready_pid(f.pid);
    sim.take();
    // A crash lends only the reuseport socket: the shared one is served.
    let w1 = forks[1].pid;
    sim.exit(w1, "killed by SIGKILL");
    let lent = sim.take();
    assert_eq!(lent.len(), 1, "{lent:?}");
    assert!(
        matches!(lent[0], Action::Adopt { socket: 1, .. }),
        "{lent:?}"
    );
    // Scale-down moves the reuseport socket 3 only; worker 0 predates
    // it, so a replacement accepting on 0, 2 and 3 takes over slot 0.
    sim.command(Command::ScaleDown);
    let c = sim.one_fork();
    assert_eq!((c.slot, c.accept.clone()), (0, vec![0, 2, 3]));
}

#[test]
fn a_scale_down_whose_survivor_replacement_cannot_fork_is_aborted() {
    let mut sim = Sim::ready(2);
    sim.command(Command::ScaleUp);
    let w2 = sim.one_fork().pid;
    sim.ready_pid(w2);
    sim.take();
    sim.fork_plan = [true].into();
    sim.command(Command::ScaleDown);
    assert!(sim.take_forks().is_empty());
    assert!(sim.take().is_empty(), "worker 2 is kept");
    assert_eq!(sim.sup.slots.len(), 3);
    assert_eq!(sim.sup.slots[0].sockets, [0]);
    assert!(!sim.sup.slots[2].removing);
    assert_eq!(sim.pid_of(2), w2);
}

#[test]
fn a_lent_socket_is_lent_again_when_its_borrower_dies() {
    let mut sim = Sim::ready(3);
    let (w0, w1, w2) = (sim.pid_of(0), sim.pid_of(1), sim.pid_of(2));
    sim.exit(w2, "killed by SIGKILL");
    assert_eq!(sim.take(), [adopt(&sim, w0, 2)]);
    sim.ready_pid(w0);
    // Worker 0 dies too: sockets 0 and 2 go to worker 1.
    sim.exit(w0, "killed by SIGKILL");
    assert_eq!(sim.take(), [adopt(&sim, w1, 0), adopt(&sim, w1, 2)]);
}

#[test]
fn a_scale_up_whose_bind_fails_changes_nothing() {
    let mut sim = Sim::ready(2);
    sim.bind_ok = false;
    sim.command(Command::ScaleUp);
    assert!(sim.take_forks().is_empty());
    assert!(sim.take().is_empty());
    assert_eq!(sim.sup.slots.len(), 2);
    assert_eq!(sim.sup.sockets.len(), 2);
    assert!(sim.sup.current.is_none());
    // The next operation runs.
    sim.bind_ok = true;
    sim.command(Command::ScaleUp);
    assert_eq!(sim.one_fork().slot, 2);
}

impl Sim {
    fn recycle(&mut self, pid: i32, reason: &str) {
        let worker = self.workers[&pid];
        self.feed(Event::Recycle {
            worker,
            reason: reason.into(),
        });
    }
}

#[test]
fn a_recycle_replaces_only_that_slot_once_its_replacement_is_ready() {
    let mut sim = Sim::ready(2);
    let (old0, old1) = (sim.pid_of(0), sim.pid_of(1));
    sim.recycle(old1, "served 1000 responses");
    let c1 = sim.one_fork();
    assert_eq!((c1.slot, c1.accept.clone()), (1, vec![1]));
    assert!(sim.take().is_empty(), "nobody is stopped before READY");
    // Asking again while it is under way changes nothing.
    sim.recycle(old1, "served 1001 responses");
    assert!(sim.sup.ops.is_empty());
    sim.ready_pid(c1.pid);
    assert_eq!(sim.take(), [term(old1)]);
    assert!(sim.sup.current.is_none());
    assert!(sim.take_forks().is_empty(), "slot 0 is left alone");
    assert_eq!((sim.pid_of(0), sim.pid_of(1)), (old0, c1.pid));
    // A retiring worker asking again is ignored; its exit is expected.
    sim.recycle(old1, "served 1002 responses");
    sim.exit(old1, "exit status 0");
    sim.advance(GRACE * 2);
    assert!(sim.take_forks().is_empty());
    assert!(sim.take().is_empty());
    assert_eq!(sim.sup.next_deadline(), None);
}

#[test]
fn recycles_run_one_at_a_time_in_arrival_order() {
    let mut sim = Sim::ready(3);
    let (old0, old2) = (sim.pid_of(0), sim.pid_of(2));
    sim.recycle(old2, "memory");
    sim.recycle(old0, "memory");
    sim.recycle(old2, "memory again");
    let c2 = sim.one_fork();
    assert_eq!(c2.slot, 2);
    assert_eq!(sim.sup.ops.len(), 1, "slot 0 waits, slot 2 queued once");
    sim.ready_pid(c2.pid);
    assert_eq!(sim.take(), [term(old2)]);
    let c0 = sim.one_fork();
    assert_eq!(c0.slot, 0);
    sim.ready_pid(c0.pid);
    assert_eq!(sim.take(), [term(old0)]);
    assert!(sim.sup.current.is_none() && sim.sup.ops.is_empty());
}

#[test]
fn a_recycle_queued_behind_a_reload_is_dropped_when_the_reload_replaced_the_worker() {
    let mut sim = Sim::ready(2);
    let (old0, old1) = (sim.pid_of(0), sim.pid_of(1));
    sim.command(Command::Reload);
    let c0 = sim.one_fork();
    sim.recycle(old1, "served 1000 responses");
    assert!(sim.take_forks().is_empty(), "the reload goes first");
    sim.ready_pid(c0.pid);
    assert_eq!(sim.take(), [term(old0)]);
    let c1 = sim.one_fork();
    assert_eq!(c1.slot, 1);
    sim.ready_pid(c1.pid);
    assert_eq!(sim.take(), [term(old1)]);
    // The recycle's worker is gone from its slot: nothing more is forked.
    assert!(sim.take_forks().is_empty());
    assert!(sim.sup.current.is_none() && sim.sup.ops.is_empty());
    assert_eq!((sim.pid_of(0), sim.pid_of(1)), (c0.pid, c1.pid));
}

#[test]
fn a_reload_queued_behind_a_recycle_waits_for_it() {
    let mut sim = Sim::ready(2);
    let old1 = sim.pid_of(1);
    sim.recycle(old1, "memory");
    let r1 = sim.one_fork();
    sim.command(Command::Reload);
    assert!(sim.take_forks().is_empty());
    sim.ready_pid(r1.pid);
    assert_eq!(sim.take(), [term(old1)]);
    // Now the rolling restart starts at slot 0, and replaces r1 too.
    let c0 = sim.one_fork();
    assert_eq!(c0.slot, 0);
}

#[test]
fn no_recycle_during_a_stop() {
    let mut sim = Sim::ready(2);
    let (old0, old1) = (sim.pid_of(0), sim.pid_of(1));
    // One under way, one queued, then a stop cancels both.
    sim.recycle(old0, "memory");
    let c0 = sim.one_fork();
    sim.recycle(old1, "memory");
    sim.command(Command::Stop);
    let mut stopped = sim.take();
    stopped.sort_by_key(|a| format!("{a:?}"));
    let mut want = vec![term(old0), term(old1), term(c0.pid)];
    want.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(stopped, want);
    assert!(sim.sup.ops.is_empty());
    // A request arriving now is ignored, and READY changes nothing.
    sim.recycle(old1, "memory");
    sim.ready_pid(c0.pid);
    assert!(sim.sup.ops.is_empty() && sim.sup.current.is_none());
    assert!(sim.sup.serving().is_empty());
    for pid in [old0, old1, c0.pid] {
        sim.exit(pid, "exit status 0");
    }
    assert!(sim.take_forks().is_empty());
    assert_eq!(sim.take(), [Action::Exit(0)]);
}

#[test]
fn a_recycle_whose_replacement_is_never_ready_keeps_the_old_worker_and_retries() {
    let mut sim = Sim::ready(2);
    let old1 = sim.pid_of(1);
    sim.recycle(old1, "memory");
    let c1 = sim.one_fork();
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + READY));
    sim.advance(READY);
    assert_eq!(sim.take(), [term(c1.pid)]);
    assert_eq!(sim.pid_of(1), old1, "the old worker keeps serving");
    assert!(sim.sup.current.is_none());
    // It is not watched meanwhile (its recycle is pending), and is tried
    // again after RECYCLE_RETRY, not before.
    assert!(sim.sup.serving().iter().all(|&(_, _, pid)| pid != old1));
    sim.exit(c1.pid, "exit status 0");
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + RECYCLE_RETRY));
    sim.advance(RECYCLE_RETRY - Duration::from_millis(1));
    assert!(sim.take_forks().is_empty());
    sim.advance(Duration::from_millis(1));
    let again = sim.one_fork();
    assert_eq!(again.slot, 1);
    sim.ready_pid(again.pid);
    assert_eq!(sim.take(), [term(old1)]);
    assert_eq!(sim.pid_of(1), again.pid);
}

#[test]
fn a_recycle_whose_replacement_dies_or_cannot_fork_is_retried() {
    let mut sim = Sim::ready(1);
    let old = sim.pid_of(0);
    sim.fork_plan = [false, true, false].into();
    sim.recycle(old, "memory");
    let c = sim.one_fork();
    sim.exit(c.pid, "exit status 1");
    assert!(sim.take().is_empty(), "the old worker is kept");
    assert_eq!(sim.pid_of(0), old);
    // The retry's fork fails: kept again, retried again.
    sim.advance(RECYCLE_RETRY);
    assert!(sim.take_forks().is_empty());
    assert_eq!(sim.pid_of(0), old);
    sim.advance(RECYCLE_RETRY);
    let c = sim.one_fork();
    sim.ready_pid(c.pid);
    assert_eq!(sim.take(), [term(old)]);
}

#[test]
fn a_worker_that_dies_while_its_recycle_is_queued_is_respawned_not_recycled() {
    let mut sim = Sim::ready(2);
    let (old0, old1) = (sim.pid_of(0), sim.pid_of(1));
    sim.recycle(old0, "memory");
    let c0 = sim.one_fork();
    sim.recycle(old1, "memory");
    sim.exit(old1, "killed by SIGSEGV");
    sim.ready_pid(c0.pid);
    // Slot 1's queue was lent to old0, then to its replacement.
    let c0_id = sim.workers[&c0.pid];
    assert_eq!(
        sim.take(),
        [
            adopt(&sim, old0, 1),
            term(old0),
            Action::Adopt {
                worker: c0_id,
                socket: 1
            }
        ]
    );
    // Slot 1's queued recycle is dropped; its respawn comes after the backoff.
    assert!(sim.take_forks().is_empty());
    sim.advance(BACKOFF_MIN);
    let r = sim.one_fork();
    assert_eq!(r.slot, 1);
}

#[test]
fn serving_lists_ready_current_workers_not_due_for_recycling() {
    let mut sim = Sim::ready(2);
    let (old0, old1) = (sim.pid_of(0), sim.pid_of(1));
    let pids = |sim: &Sim| -> Vec<i32> { sim.sup.serving().iter().map(|s| s.2).collect() };
    assert_eq!(pids(&sim), [old0, old1]);
    sim.recycle(old0, "memory");
    let c0 = sim.one_fork();
    assert_eq!(pids(&sim), [old1], "the candidate is not ready yet");
    sim.ready_pid(c0.pid);
    assert_eq!(pids(&sim), [c0.pid, old1]);
}

#[test]
fn a_stop_cancels_a_recycle_waiting_for_its_retry() {
    let mut sim = Sim::ready(1);
    let old = sim.pid_of(0);
    sim.recycle(old, "memory");
    let c = sim.one_fork();
    sim.exit(c.pid, "exit status 1");
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + RECYCLE_RETRY));
    sim.command(Command::Stop);
    assert_eq!(sim.take(), [term(old)]);
    // Only the graceful deadline is left: no retry to wake up for.
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + GRACE));
    sim.advance(RECYCLE_RETRY);
    assert!(sim.take_forks().is_empty());
    assert!(sim.sup.ops.is_empty());
}

impl Sim {
    fn stuck(&mut self, pid: i32, what: &str) {
        let worker = self.workers[&pid];
        self.feed(Event::Stuck {
            worker,
            stuck: Duration::from_secs(30),
            what: what.into(),
        });
    }
}

#[test]
fn a_stuck_worker_is_killed_once_and_respawned_at_once() {
    let mut sim = Sim::ready(2);
    let (w0, w1) = (sim.pid_of(0), sim.pid_of(1));
    sim.stuck(w1, "GET /report?id=7");
    assert_eq!(sim.take(), [kill(w1)]);
    assert_eq!(sim.sup.timeouts(), 1);
    // Seen stuck again before its exit is reaped: no second kill.
    sim.stuck(w1, "GET /report?id=7");
    assert!(sim.take().is_empty());
    assert_eq!(sim.sup.timeouts(), 1);
    assert!(
        sim.take_forks().is_empty(),
        "nothing forked before the exit"
    );
    // Its exit: the replacement is forked now, not after a backoff, for
    // the same slot and queue (kept open: its connections wait for the
    // replacement, which accepts in milliseconds; nothing to lend).
    sim.exit(w1, "killed by SIGKILL");
    let f = sim.one_fork();
    assert_eq!((f.slot, f.accept.clone()), (1, vec![1]));
    assert!(sim.take().is_empty());
    sim.ready_pid(f.pid);
    assert!(sim.take().is_empty());
    assert_eq!(sim.pid_of(0), w0);
    // A timeout did not count as a crash: the slot's backoff is untouched.
    sim.exit(f.pid, "killed by SIGSEGV");
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + BACKOFF_MIN));
}

#[test]
fn repeated_timeouts_never_back_off() {
    let mut sim = Sim::ready(2);
    for n in 1..=6 {
        let victim = sim.pid_of(1);
        sim.stuck(victim, "its event loop");
        sim.exit(victim, "killed by SIGKILL");
        let f = sim.one_fork();
        assert_eq!(f.slot, 1);
        sim.ready_pid(f.pid);
        sim.take();
        assert_eq!(sim.sup.timeouts(), n);
    }
}

#[test]
fn a_worker_stuck_while_draining_is_killed_and_not_respawned() {
    let mut sim = Sim::ready(2);
    let old1 = sim.pid_of(1);
    sim.recycle(old1, "served 1000 responses");
    let c1 = sim.one_fork();
    sim.ready_pid(c1.pid);
    assert_eq!(sim.take(), [term(old1)]);
    // Draining, it blocks in a handler past the timeout: killed now, not
    // at the end of the graceful timeout.
    sim.stuck(old1, "GET /block?ms=60000");
    assert_eq!(sim.take(), [kill(old1)]);
    sim.advance(GRACE * 2);
    assert!(
        sim.take().is_empty(),
        "no second SIGKILL at the graceful deadline"
    );
    sim.exit(old1, "killed by SIGKILL");
    assert!(
        sim.take_forks().is_empty(),
        "its slot already has its replacement"
    );
    assert_eq!(sim.pid_of(1), c1.pid);
}

#[test]
fn a_stuck_unknown_or_exited_worker_changes_nothing() {
    let mut sim = Sim::ready(2);
    let w1 = sim.pid_of(1);
    let id = sim.workers[&w1];
    sim.exit(w1, "killed by SIGSEGV");
    sim.take();
    sim.feed(Event::Stuck {
        worker: id,
        stuck: Duration::from_secs(3),
        what: "its event loop".into(),
    });
    assert!(sim.take().is_empty());
    assert_eq!(sim.sup.timeouts(), 0);
}

// ---- restart counts and the shutdown delay (for the metrics and health) ----

#[test]
fn restarts_are_counted_per_slot_by_reason() {
    let mut sim = Sim::ready(2);
    // A crash of slot 1.
    let w1 = sim.pid_of(1);
    sim.exit(w1, "killed by SIGKILL");
    sim.advance(BACKOFF_MIN);
    let f = sim.one_fork();
    sim.ready_pid(f.pid);
    sim.take();
    // A watchdog kill of slot 1: a timeout, not a crash.
    sim.stuck(f.pid, "its event loop");
    sim.exit(f.pid, "killed by SIGKILL");
    let f = sim.one_fork();
    sim.ready_pid(f.pid);
    sim.take();
    // A recycle of slot 0.
    let w0 = sim.pid_of(0);
    sim.recycle(w0, "served 1000 responses");
    let c0 = sim.one_fork();
    sim.ready_pid(c0.pid);
    sim.exit(w0, "exit status 0");
    sim.take();
    // A rolling restart: one reload each.
    sim.command(Command::Reload);
    for _ in 0..2 {
        let c = sim.one_fork();
        let old = sim.pid_of(c.slot);
        sim.ready_pid(c.pid);
        sim.exit(old, "exit status 0");
    }
    sim.take();
    let r = sim.sup.restarts();
    let (crash, timeout, recycled, reload) = (
        Restart::Crash as usize,
        Restart::Timeout as usize,
        Restart::Recycled as usize,
        Restart::Reload as usize,
    );
    assert_eq!(r[1][crash], 1);
    assert_eq!(r[1][timeout], 1);
    assert_eq!(r[0][recycled], 1);
    assert_eq!((r[0][reload], r[1][reload]), (1, 1));
    assert_eq!((r[0][crash], r[0][timeout], r[1][recycled]), (0, 0, 0));
    // Workers stopped by a stop are no crashes.
    sim.command(Command::Stop);
    for slot in 0..2 {
        let pid = sim.pid_of(slot);
        sim.exit(pid, "exit status 0");
    }
    assert_eq!(sim.sup.restarts()[1][crash], 1);
}

#[test]
fn a_shutdown_delay_keeps_serving_then_drains() {
    let mut sim = Sim::ready(2);
    let delay = Duration::from_secs(5);
    sim.sup.set_shutdown_delay(delay);
    let (w0, w1) = (sim.pid_of(0), sim.pid_of(1));
    assert!(!sim.sup.stop_requested());
    sim.command(Command::Stop);
    // Asked to stop: health says so at once, but nobody is signalled yet.
    assert!(sim.sup.stop_requested());
    assert!(!sim.sup.stopping());
    assert!(sim.take().is_empty());
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + delay));
    // A crash during the delay is still respawned (the service stays up).
    sim.exit(w1, "killed by SIGSEGV");
    sim.advance(BACKOFF_MIN);
    let f = sim.one_fork();
    sim.ready_pid(f.pid);
    sim.take();
    sim.advance(delay - BACKOFF_MIN - Duration::from_millis(1));
    assert!(sim.take().is_empty(), "still within the delay");
    sim.advance(Duration::from_millis(1));
    let mut got = sim.take();
    got.sort_by_key(|a| format!("{a:?}"));
    let mut want = vec![term(w0), term(f.pid)];
    want.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(got, want);
    assert!(sim.sup.stopping());
}

#[test]
fn a_second_stop_during_the_delay_drains_at_once_and_quit_kills() {
    let mut sim = Sim::ready(1);
    sim.sup.set_shutdown_delay(Duration::from_secs(5));
    let w0 = sim.pid_of(0);
    sim.command(Command::Stop);
    assert!(sim.take().is_empty());
    sim.command(Command::Stop);
    assert_eq!(sim.take(), [term(w0)]);

    let mut sim = Sim::ready(1);
    sim.sup.set_shutdown_delay(Duration::from_secs(5));
    let w0 = sim.pid_of(0);
    sim.command(Command::Stop);
    sim.command(Command::Quit);
    assert_eq!(sim.take(), [kill(w0)]);
    // The delay's deadline is gone with it.
    sim.advance(Duration::from_secs(6));
    assert!(sim.take().is_empty());
}

#[test]
fn without_a_delay_a_stop_drains_at_once() {
    let mut sim = Sim::ready(1);
    let w0 = sim.pid_of(0);
    sim.command(Command::Stop);
    assert_eq!(sim.take(), [term(w0)]);
    assert!(sim.sup.stop_requested());
}

/// Sends `SIGUSR2` and answers the spawn with `pid`; returns the actions
/// besides the spawn.
fn upgrade(sim: &mut Sim, pid: i32) -> Vec<Action> {
    sim.command(Command::Upgrade);
    assert_eq!(sim.take(), [Action::SpawnMaster]);
    assert!(sim.sup.upgrading() && sim.sup.reloading());
    sim.feed(Event::MasterSpawned { pid });
    sim.take()
}

const UPGRADE: Duration = Duration::from_secs(60);

#[test]
fn upgrade_ready_hands_over_and_the_old_master_stops() {
    let mut sim = Sim::ready(2);
    let (w0, w1) = (sim.pid_of(0), sim.pid_of(1));
    assert!(upgrade(&mut sim, 900).is_empty());
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + UPGRADE));
    sim.feed(Event::MasterReady);
    assert_eq!(
        sim.take(),
        [Action::HandOver { pid: 900 }, term(w0), term(w1)]
    );
    assert!(sim.sup.stopping() && !sim.sup.upgrading());
    sim.exit(w0, "exit status 0");
    sim.exit(w1, "exit status 0");
    // The new master is not waited for: it carries on.
    assert_eq!(sim.take(), [Action::Exit(0)]);
    assert!(sim.take_forks().is_empty());
}

#[test]
fn upgrade_child_exit_rolls_back_and_the_old_master_serves_on() {
    let mut sim = Sim::ready(2);
    upgrade(&mut sim, 900);
    sim.exit(900, "exit status 1");
    let actions = sim.take();
    assert!(
        matches!(&actions[..], [Action::UpgradeFailed { reason }]
            if reason.contains("exited before it was ready: exit status 1")),
        "{actions:?}"
    );
    assert!(!sim.sup.upgrading() && !sim.sup.stopping() && !sim.sup.reloading());
    assert!(sim.sup.all_ready());
    assert_eq!(sim.sup.next_deadline(), None);
    // A late "ready" from nowhere changes nothing; another upgrade may start.
    sim.feed(Event::MasterReady);
    assert!(sim.take().is_empty());
    upgrade(&mut sim, 901);
}

#[test]
fn upgrade_timeout_stops_the_child_then_rolls_back() {
    let mut sim = Sim::ready(1);
    upgrade(&mut sim, 900);
    sim.advance(UPGRADE - Duration::from_millis(1));
    assert!(sim.take().is_empty());
    sim.advance(Duration::from_millis(1));
    // The pid file names this master again at once, not once the new one
    // has gone (up to the graceful timeout later).
    assert_eq!(sim.take(), [Action::RestorePidFile, term(900)]);
    // Ready too late: ignored.
    sim.feed(Event::MasterReady);
    assert!(sim.take().is_empty());
    // Still running after the graceful timeout: SIGKILL.
    assert_eq!(sim.sup.next_deadline(), Some(sim.now + GRACE));
    sim.advance(GRACE);
    assert_eq!(sim.take(), [kill(900)]);
    sim.exit(900, "killed by SIGKILL");
    let actions = sim.take();
    assert!(
        matches!(&actions[..], [Action::UpgradeFailed { reason }]
            if reason.contains("not ready within 60s")),
        "{actions:?}"
    );
    assert!(!sim.sup.upgrading() && !sim.sup.stopping());
    assert!(sim.sup.all_ready());
}

#[test]
fn a_second_sigusr2_during_an_upgrade_is_refused() {
    let mut sim = Sim::ready(1);
    upgrade(&mut sim, 900);
    sim.command(Command::Upgrade);
    assert!(sim.take().is_empty(), "no second spawn");
    assert!(sim.take_forks().is_empty());
    sim.feed(Event::MasterReady);
    assert_eq!(sim.take()[0], Action::HandOver { pid: 900 });
    // Stopping: refused as well.
    sim.command(Command::Upgrade);
    assert!(sim.take().is_empty());
}

/// A worker added during an upgrade would listen on a socket bound after
/// the new master got its sockets: the old master's stop would close it
/// with connections queued on it. `SIGTTIN` is refused until the upgrade
/// is over, and one queued before it does not run while it is under way.
#[test]
fn sigttin_is_refused_while_an_upgrade_is_under_way() {
    let mut sim = Sim::ready(2);
    upgrade(&mut sim, 900);
    sim.command(Command::ScaleUp);
    assert!(sim.take().is_empty(), "no bind");
    assert!(sim.take_forks().is_empty());
    // Rolled back: the old master serves on, and may scale up again.
    sim.exit(900, "exit status 1");
    sim.take();
    assert!(!sim.sup.upgrading());
    assert!(sim.sup.ops.is_empty(), "the refused SIGTTIN was not kept");
    sim.command(Command::ScaleUp);
    assert_eq!(sim.one_fork().slot, 2);
}

/// A `SIGTTIN` queued behind a rolling restart before the upgrade began
/// does not run once the restart is done while the upgrade is under way.
#[test]
fn a_sigttin_queued_before_an_upgrade_does_not_run_during_it() {
    let mut sim = Sim::ready(1);
    let w0 = sim.pid_of(0);
    sim.command(Command::Reload);
    let c = sim.one_fork();
    sim.command(Command::ScaleUp);
    assert!(upgrade(&mut sim, 900).is_empty());
    sim.ready_pid(c.pid);
    assert_eq!(sim.take(), [term(w0)], "no bind for the queued SIGTTIN");
    assert!(sim.take_forks().is_empty());
    assert!(sim.sup.ops.is_empty());
}

#[test]
fn a_failed_spawn_is_rolled_back_at_once() {
    let mut sim = Sim::ready(1);
    sim.command(Command::Upgrade);
    assert_eq!(sim.take(), [Action::SpawnMaster]);
    sim.feed(Event::MasterSpawnFailed {
        reason: "No such file or directory".into(),
    });
    let actions = sim.take();
    assert!(
        matches!(&actions[..], [Action::UpgradeFailed { reason }]
            if reason.contains("No such file")),
        "{actions:?}"
    );
    assert!(!sim.sup.upgrading());
}

#[test]
fn a_stop_during_an_upgrade_stops_the_new_master_too_and_waits_for_it() {
    let mut sim = Sim::ready(1);
    let w = sim.pid_of(0);
    upgrade(&mut sim, 900);
    sim.command(Command::Stop);
    let actions = sim.take();
    assert!(actions.contains(&term(900)), "{actions:?}");
    assert!(actions.contains(&term(w)), "{actions:?}");
    // Its readiness no longer hands over.
    sim.feed(Event::MasterReady);
    assert!(sim.take().is_empty());
    sim.exit(w, "exit status 0");
    assert!(sim.take().is_empty(), "the new master is not reaped yet");
    sim.exit(900, "exit status 0");
    let actions = sim.take();
    assert!(
        matches!(
            &actions[..],
            [Action::UpgradeFailed { .. }, Action::Exit(0)]
        ),
        "{actions:?}"
    );

    // SIGQUIT kills it.
    let mut sim = Sim::ready(1);
    upgrade(&mut sim, 900);
    sim.command(Command::Quit);
    assert!(sim.take().contains(&kill(900)));
}

#[test]
fn a_new_master_tells_its_predecessor_once_and_refuses_sigusr2_until_it_has_gone() {
    let mut sim = Sim::new(2, &[(Mode::ReusePort, 2)]);
    sim.sup.set_upgrade(UPGRADE, Some(42));
    let forks = sim.take_forks();
    sim.ready_pid(forks[0].pid);
    assert!(sim.take().is_empty(), "one of two ready");
    sim.ready_pid(forks[1].pid);
    assert_eq!(sim.take(), [Action::TellPredecessor]);
    sim.feed(Event::Tick);
    assert!(sim.take().is_empty(), "told once");
    sim.command(Command::Upgrade);
    assert!(sim.take().is_empty(), "refused while the old master runs");
    sim.feed(Event::PredecessorGone);
    sim.command(Command::Upgrade);
    assert_eq!(sim.take(), [Action::SpawnMaster]);
}

/// A new master stopped before it took over (the upgrade abandoned, as
/// the deploy guide says to) gives the pid file back to the old one at
/// once; once it has told the old one to stop, it keeps it.
#[test]
fn a_new_master_stopped_before_it_took_over_gives_the_pid_file_back() {
    let mut sim = Sim::new(2, &[(Mode::ReusePort, 2)]);
    sim.sup.set_upgrade(UPGRADE, Some(42));
    let forks = sim.take_forks();
    sim.command(Command::Stop);
    let got = sim.take();
    assert_eq!(got[0], Action::RestorePidFile, "{got:?}");
    assert_eq!(got.len(), 1 + forks.len(), "{got:?}");

    let mut sim = Sim::new(2, &[(Mode::ReusePort, 2)]);
    sim.sup.set_upgrade(UPGRADE, Some(42));
    for f in sim.take_forks() {
        sim.ready_pid(f.pid);
    }
    assert_eq!(sim.take(), [Action::TellPredecessor]);
    sim.command(Command::Stop);
    assert!(!sim.take().contains(&Action::RestorePidFile));
}

#[test]
fn a_master_that_refuses_upgrades_never_spawns_one() {
    let mut sim = Sim::ready(1);
    sim.sup.refuse_upgrades("process 1");
    sim.command(Command::Upgrade);
    assert!(sim.take().is_empty());
    assert!(!sim.sup.upgrading());
}

/// Timeouts of `Duration::MAX` (no limit) set far deadlines: added to
/// `now` as they were, they overflowed an `Instant`, and the panic ended
/// the master (and so the server).
#[test]
fn timeouts_of_duration_max_are_no_limit_not_an_overflow() {
    let forever = Duration::MAX;
    let far = |sim: &Sim| sim.now + Duration::from_secs(10 * 365 * 24 * 3600);
    let mut sup = Supervisor::new(1, forever, forever, &[(Mode::ReusePort, 1)]);
    sup.set_shutdown_delay(forever);
    sup.set_upgrade(forever, None);
    let mut sim = Sim::started(sup, &[]);
    let first = sim.one_fork().pid;
    sim.ready_pid(first);
    sim.take();
    // A rolling restart: its replacement's ready deadline.
    sim.command(Command::Reload);
    let replacement = sim.one_fork().pid;
    assert!(sim.sup.next_deadline() > Some(far(&sim)));
    sim.ready_pid(replacement);
    // The old worker retires, with its kill far away.
    sim.take();
    assert!(sim.worker(first).kill_at > Some(far(&sim)));
    sim.exit(first, "exit status 0");
    // A binary upgrade: its ready deadline; abandoned, its kill.
    sim.command(Command::Upgrade);
    sim.feed(Event::MasterSpawned { pid: 900 });
    assert!(sim.sup.next_deadline() > Some(far(&sim)));
    // A stop: the shutdown delay, then the graceful timeout.
    sim.command(Command::Stop);
    sim.command(Command::Stop);
    assert!(sim.sup.stopping());
    assert!(sim.worker(replacement).kill_at > Some(far(&sim)));
}
