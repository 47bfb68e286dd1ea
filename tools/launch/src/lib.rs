//! Starting the ranks of an MLX distributed job.
//!
//! MLX's distributed layer finds its peers through the environment:
//!
//! * **ring** (TCP, the CPU build): `MLX_RANK` and `MLX_HOSTFILE`, a JSON
//!   list with one entry per rank, each a list of `"ip:port"` addresses that
//!   rank listens on (one address per rank here);
//! * **NCCL** (the CUDA build): `MLX_RANK`, `MLX_WORLD_SIZE`,
//!   `NCCL_HOST_IP` and `NCCL_PORT` (rank 0's rendezvous address), one
//!   visible GPU per process (`CUDA_VISIBLE_DEVICES`).
//!
//! A [`Plan`] says which ranks this machine runs and the environment of each
//! ([`Plan::local`] picks free loopback ports for a one-machine job,
//! [`Plan::from_hostfile`] reads the addresses of a several-machine job);
//! [`run`] starts the ranks, hands every output line to a sink, and stops all
//! of them as soon as one fails or the time limit passes.
//! [`run_test_ranks`] runs ranks of a test binary (each one re-invoked to
//! run one ignored test) for multi-process tests.
//!
//! Every other variable of the launcher's environment reaches the ranks
//! unchanged (`NCCL_NVLS_ENABLE`, `CUDA_*`, `MLX_*` settings…); only the
//! variables above are set, per rank.

#![deny(missing_docs)]

mod error;
mod plan;
mod ports;
mod runner;
mod test_ranks;

pub use error::{Error, Result};
pub use plan::{Backend, Plan};
pub use ports::free_loopback_ports;
pub use runner::{Failure, OutputLine, RankExit, Report, RunOptions, StreamKind, run};
pub use test_ranks::{TestRanks, run_test_ranks};
