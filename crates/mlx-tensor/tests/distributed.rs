//! MLX's distributed layer: one process (a size-1 group) and two ring ranks
//! on 127.0.0.1, each rank this test binary re-invoked to run one ignored
//! `rank_*` test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mlx_launch::{Backend as LaunchBackend, Plan, run_test_ranks};
use mlx_tensor::distributed::{self, Backend, Group};
use mlx_tensor::{Array, Dtype, Error};

/// The rank this process was started as (rank tests only).
fn env_rank() -> usize {
    std::env::var("MLX_RANK")
        .expect("rank tests run under the launcher (MLX_RANK)")
        .parse()
        .expect("MLX_RANK is a number")
}

/// The ring group of a rank test, checked against the environment.
fn ring_group() -> Group {
    let group = Group::init(Backend::Ring).expect("ring group");
    assert_eq!(group.size(), 2);
    assert_eq!(group.rank(), env_rank());
    group
}

#[test]
fn single_process_group_returns_inputs_and_rejects_point_to_point() {
    // No distributed environment in the test process: `Any` falls back to
    // a group of one.
    let group = Group::init_or_single(Backend::Any).expect("single group");
    assert_eq!((group.rank(), group.size()), (0, 1));
    let x = Array::from_slice(&[1.5f32, -2.0, 4.0], &[3]).expect("x");
    for (name, y) in [
        ("all_sum", distributed::all_sum(&x, &group)),
        ("all_max", distributed::all_max(&x, &group)),
        ("all_min", distributed::all_min(&x, &group)),
        ("all_gather", distributed::all_gather(&x, &group)),
        ("sum_scatter", distributed::sum_scatter(&x, &group)),
        ("broadcast", distributed::broadcast(&x, 0, &group)),
    ] {
        let y = y.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            y.to_vec::<f32>().expect(name),
            vec![1.5, -2.0, 4.0],
            "{name}"
        );
    }
    let err = distributed::broadcast(&x, 1, &group).expect_err("root outside the group");
    assert!(err.to_string().contains("root rank 1"), "{err}");
    assert!(distributed::send(&x, 0, &group).is_err());
    assert!(distributed::recv(&[3], Dtype::F32, 0, &group).is_err());
    assert!(distributed::recv_like(&x, 0, &group).is_err());
    assert!(group.split(0, -1).is_err());
}

#[test]
fn strict_init_without_environment_or_backend_is_an_error() {
    let err = Group::init(Backend::Ring).expect_err("no MLX_RANK / MLX_HOSTFILE");
    match &err {
        Error::Distributed {
            op,
            backend,
            message,
        } => {
            assert_eq!((*op, backend.as_str()), ("init", "ring"));
            assert!(message.contains("MLX_HOSTFILE"), "{message}");
        }
        other => panic!("unexpected error {other}"),
    }
    if !Backend::Nccl.is_available() {
        let err = Group::init(Backend::Nccl).expect_err("no NCCL in this build");
        assert!(matches!(err, Error::Distributed { .. }), "{err}");
    }
}

#[test]
fn two_ring_ranks_agree_with_closed_forms() {
    let run = run_test_ranks(
        LaunchBackend::Ring,
        2,
        "rank_collectives",
        Duration::from_secs(60),
    )
    .expect("start ranks");
    for rank in 0..2 {
        let output = run.output_of(rank);
        assert!(
            output.contains(&format!("rank {rank}: collectives agree")),
            "rank {rank} did not finish; {}:\n{output}",
            run.report.summary()
        );
    }
    assert!(run.report.success(), "{}", run.report.summary());
}

/// One rank of [`two_ring_ranks_agree_with_closed_forms`].
#[test]
#[ignore = "a rank body, started by two_ring_ranks_agree_with_closed_forms"]
fn rank_collectives() {
    let group = ring_group();
    let r = group.rank();
    let rf = r as f32;
    // Rank r holds (r + 1) * [1, 2, 3]; over ranks 0 and 1 the sum is 3 *
    // [1, 2, 3], the max 2 * [1, 2, 3], the min [1, 2, 3].
    let x = Array::from_slice(&[rf + 1.0, 2.0 * (rf + 1.0), 3.0 * (rf + 1.0)], &[3]).expect("x");
    let sum = distributed::all_sum(&x, &group).expect("all_sum");
    assert_eq!(sum.to_vec::<f32>().expect("sum"), vec![3.0, 6.0, 9.0]);
    let max = distributed::all_max(&x, &group).expect("all_max");
    assert_eq!(max.to_vec::<f32>().expect("max"), vec![2.0, 4.0, 6.0]);
    let min = distributed::all_min(&x, &group).expect("all_min");
    assert_eq!(min.to_vec::<f32>().expect("min"), vec![1.0, 2.0, 3.0]);
    let ints = Array::from_slice(&[r as i32 * 10 - 7], &[1]).expect("ints");
    let int_sum = distributed::all_sum(&ints, &group).expect("all_sum i32");
    assert_eq!(int_sum.to_vec::<i32>().expect("int sum"), vec![-4]);

    // Gather [r, r + 10] as a [1, 2] row: rows in rank order.
    let row = Array::from_slice(&[rf, rf + 10.0], &[1, 2]).expect("row");
    let gathered = distributed::all_gather(&row, &group).expect("all_gather");
    assert_eq!(gathered.shape().0, vec![2, 2]);
    assert_eq!(
        gathered.to_vec::<f32>().expect("gathered"),
        vec![0.0, 10.0, 1.0, 11.0]
    );

    // Point to point: 0 sends [5, 6] to 1, which answers with their double.
    let peer = 1 - r;
    if r == 0 {
        let payload = Array::from_slice(&[5.0f32, 6.0], &[2]).expect("payload");
        distributed::send(&payload, peer, &group)
            .expect("send")
            .eval()
            .expect("sent");
        let answer = distributed::recv(&[2], Dtype::F32, peer, &group).expect("recv");
        assert_eq!(answer.to_vec::<f32>().expect("answer"), vec![10.0, 12.0]);
    } else {
        let like = Array::zeros(&[2], Dtype::F32).expect("like");
        let got = distributed::recv_like(&like, peer, &group).expect("recv_like");
        assert_eq!(got.to_vec::<f32>().expect("got"), vec![5.0, 6.0]);
        let doubled = (&got * 2.0).expect("double");
        distributed::send(&doubled, peer, &group)
            .expect("send")
            .eval()
            .expect("sent");
    }

    // Broadcast from rank 1: its [100, 101, 102] everywhere, whatever rank 0 holds.
    let mine = Array::from_slice(
        &[100.0 * rf - 3.0, 100.0 * rf - 2.0, 100.0 * rf - 1.0],
        &[3],
    )
    .expect("mine");
    let shared = distributed::broadcast(&mine, 1, &group).expect("broadcast");
    assert_eq!(
        shared.to_vec::<f32>().expect("shared"),
        vec![97.0, 98.0, 99.0]
    );
    let flags = Array::from_slice(&[r == 0, r == 1], &[2]).expect("flags");
    let root_flags = distributed::broadcast(&flags, 0, &group).expect("broadcast bool");
    assert_eq!(
        root_flags.to_vec::<bool>().expect("flags"),
        vec![true, false]
    );

    // What the ring backend lacks is an error, not an abort.
    assert!(group.split(0, -1).is_err(), "ring cannot split");
    let scattered = distributed::sum_scatter(&Array::zeros(&[2], Dtype::F32).expect("z"), &group)
        .and_then(|a| a.eval());
    assert!(scattered.is_err(), "ring has no sum_scatter");
    println!("rank {r}: collectives agree");
}

#[test]
fn a_rank_that_exits_ends_its_blocked_peer() {
    // Started directly (not through `run`, which would stop the peer
    // itself): rank 1 exits after joining the group while rank 0 waits to
    // receive from it. MLX notices the closed socket and fails the receive
    // with an error, which rank 0 reports by exiting with 4.
    let plan = Plan::local(LaunchBackend::Ring, 2).expect("plan");
    let exe = std::env::current_exe().expect("test binary");
    let mut children: Vec<_> = (0..2)
        .map(|local| {
            Command::new(&exe)
                .args(["rank_exits_or_waits", "--exact", "--ignored", "--nocapture"])
                .envs(plan.rank_env(local).expect("env"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn rank")
        })
        .collect();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(30);
    let mut statuses = [None, None];
    while statuses.iter().any(Option::is_none) && Instant::now() < deadline {
        for (status, child) in statuses.iter_mut().zip(children.iter_mut()) {
            if status.is_none() {
                *status = child.try_wait().expect("try_wait");
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let [Some(waiting), Some(exiting)] = statuses else {
        panic!("a rank was still running after 30 s: {statuses:?}");
    };
    assert_eq!(exiting.code(), Some(3), "rank 1 exits with 3");
    let mut stderr = String::new();
    if let Some(pipe) = children[0].stderr.as_mut() {
        std::io::Read::read_to_string(pipe, &mut stderr).expect("rank 0 stderr");
    }
    // 4: the receive returned an error (not an abort, not a hang).
    assert_eq!(waiting.code(), Some(4), "rank 0: {waiting}\n{stderr}");
    assert!(stderr.contains("connection to a peer was lost"), "{stderr}");
    eprintln!(
        "rank 0 ended with {waiting} {:.1?} after start",
        start.elapsed()
    );
}

/// A rank of [`a_rank_that_exits_ends_its_blocked_peer`].
#[test]
#[ignore = "a rank body, started by a_rank_that_exits_ends_its_blocked_peer"]
fn rank_exits_or_waits() {
    let group = ring_group();
    if group.rank() == 1 {
        std::process::exit(3);
    }
    let got = distributed::recv(&[4], Dtype::F32, 1, &group)
        .expect("recv")
        .eval();
    // Reaching this line means MLX reported the lost peer as an error.
    eprintln!("rank 0: recv from the exited rank: {got:?}");
    std::process::exit(if got.is_err() { 4 } else { 0 });
}
