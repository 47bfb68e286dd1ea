//! Collective operations over MLX's distributed layer.
//!
//! A [`Group`] is a set of processes (ranks) that communicate through one of
//! MLX's backends ([`Backend`]): **ring** (TCP; every build) reads
//! `MLX_RANK` and `MLX_HOSTFILE` (a JSON list with one entry per rank, each
//! a list of `"ip:port"` addresses that rank listens on); **NCCL** (the CUDA
//! build) reads `MLX_RANK`, `MLX_WORLD_SIZE`, `NCCL_HOST_IP` and
//! `NCCL_PORT`; **MPI** is loaded at run time when installed. The `launch`
//! tool (`tools/launch`) starts ranks with this environment.
//!
//! Collectives are lazy like every other operation: they run when their
//! result is evaluated, and every rank of the group must evaluate the same
//! collectives in the same order. On a group of size 1 (a process started
//! with no distributed environment, see [`Group::init_or_single`]) the
//! reductions, gathers and [`broadcast`] return their input, so the same code
//! runs in one process.
//!
//! Backend limits (MLX's): ring has no [`Group::split`] and no
//! [`sum_scatter`]; NCCL has no [`send`] / [`recv`]. These return errors.
//! MLX has no broadcast; [`broadcast`] sums the root's array with zeros from
//! the other ranks.
//!
//! # When a rank dies
//!
//! With the ring backend, a rank whose peer has exited sees its sockets
//! closed: MLX fails the pending transfer, and evaluating the collective
//! returns [`Error::Mlx`] ("connection to a peer was lost") within a fraction
//! of a second (the test `a_rank_that_exits_ends_its_blocked_peer` checks
//! it). A peer that is alive but never joins the collective makes the others
//! wait forever, and NCCL ends the whole process on its own errors: run
//! ranks under a supervisor that stops them all when one fails (the `launch`
//! tool does).

use std::fmt;

use mlx_ffi::cxx::UniquePtr;
use mlx_ffi::ffi;

use crate::array::check;
use crate::{Array, Dtype, Error, Result};

/// A communication backend of MLX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The first that starts: NCCL (when CUDA is available), ring, MPI, JACCL.
    Any,
    /// TCP ring (`MLX_RANK`, `MLX_HOSTFILE`).
    Ring,
    /// NCCL, CUDA build only (`MLX_RANK`, `MLX_WORLD_SIZE`, `NCCL_HOST_IP`, `NCCL_PORT`).
    Nccl,
    /// MPI, loaded at run time (`mpirun` sets the environment).
    Mpi,
}

impl Backend {
    /// MLX's name of the backend.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Any => "any",
            Backend::Ring => "ring",
            Backend::Nccl => "nccl",
            Backend::Mpi => "mpi",
        }
    }

    /// Whether this build of MLX can use the backend (for [`Backend::Mpi`]:
    /// whether an MPI library was found).
    pub fn is_available(self) -> bool {
        ffi::distributed_is_available(self.name())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A group of processes that run collectives together.
///
/// `Clone` copies the handle (both refer to one group). MLX keeps one group
/// per backend and process: a second `init` of a backend returns the first
/// one's group.
pub struct Group {
    raw: UniquePtr<ffi::DistGroup>,
    backend: Backend,
}

// SAFETY: the handle is a `shared_ptr` to MLX's group, whose count is atomic;
// moving it to another thread is sound. Not `Sync`, like `Array`.
unsafe impl Send for Group {}

impl Clone for Group {
    fn clone(&self) -> Self {
        Group {
            raw: ffi::group_clone(self.raw()),
            backend: self.backend,
        }
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Group({}, rank {} of {})",
            self.backend,
            self.rank(),
            self.size()
        )
    }
}

impl Group {
    /// Starts `backend` and returns the group of all its processes. Errors
    /// (never aborts) when this build lacks the backend, its environment is
    /// missing or incomplete, or the peers cannot be reached (ring retries
    /// its connections for a few seconds).
    pub fn init(backend: Backend) -> Result<Group> {
        if !backend.is_available() {
            return Err(Error::Distributed {
                op: "init",
                backend: backend.name().into(),
                message: "this build of MLX does not provide the backend".into(),
            });
        }
        Self::start(true, backend)
    }

    /// Like [`Group::init`], except that a process with no distributed
    /// environment gets a group of size 1 (rank 0) instead of an error, so
    /// the same program runs alone or as one rank of many. Still errors when
    /// the environment is present but the group cannot start.
    ///
    /// MLX remembers the size-1 group: a later [`Group::init`] of the same
    /// backend in this process returns it too.
    pub fn init_or_single(backend: Backend) -> Result<Group> {
        Self::start(false, backend)
    }

    fn start(strict: bool, backend: Backend) -> Result<Group> {
        match ffi::distributed_init(strict, backend.name()) {
            Ok(raw) if !raw.is_null() => Ok(Group { raw, backend }),
            Ok(_) => Err(Error::Distributed {
                op: "init",
                backend: backend.name().into(),
                message: "MLX returned no group".into(),
            }),
            Err(e) => Err(Error::Distributed {
                op: "init",
                backend: backend.name().into(),
                message: e.what().to_string(),
            }),
        }
    }

    fn raw(&self) -> &ffi::DistGroup {
        match self.raw.as_ref() {
            Some(raw) => raw,
            None => unreachable!("mlx-tensor: null group handle"),
        }
    }

    /// The backend this group was started with ([`Backend::Any`] when chosen by MLX).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process's rank in the group, `0..size`.
    pub fn rank(&self) -> usize {
        usize::try_from(ffi::group_rank(self.raw())).unwrap_or(0)
    }

    /// The number of processes in the group.
    pub fn size(&self) -> usize {
        usize::try_from(ffi::group_size(self.raw())).unwrap_or(1)
    }

    /// Splits the group: processes passing the same `color` form a new
    /// group, ranked by `key` (a negative key keeps the current order).
    /// Every process of the group must call it. Errors on the ring backend
    /// and on a group of size 1, which cannot split.
    pub fn split(&self, color: i32, key: i32) -> Result<Group> {
        ffi::group_split(self.raw(), color, key)
            .map(|raw| Group {
                raw,
                backend: self.backend,
            })
            .map_err(|e| Error::Distributed {
                op: "split",
                backend: self.backend.name().into(),
                message: e.what().to_string(),
            })
    }

    fn rank_arg(&self, op: &'static str, what: &'static str, rank: usize) -> Result<i32> {
        if rank >= self.size() {
            return Err(Error::Distributed {
                op,
                backend: self.backend.name().into(),
                message: format!("{what} rank {rank} is not in a group of {}", self.size()),
            });
        }
        i32::try_from(rank).map_err(|_| Error::OutOfRange {
            op,
            what,
            value: rank as i128,
        })
    }
}

/// The element-wise sum of `x` over all ranks (every rank gets the sum).
#[track_caller]
pub fn all_sum(x: &Array, group: &Group) -> Result<Array> {
    check("all_sum", &[x], ffi::dist_all_sum(x.raw(), group.raw()))
}

/// The element-wise maximum of `x` over all ranks.
#[track_caller]
pub fn all_max(x: &Array, group: &Group) -> Result<Array> {
    check("all_max", &[x], ffi::dist_all_max(x.raw(), group.raw()))
}

/// The element-wise minimum of `x` over all ranks.
#[track_caller]
pub fn all_min(x: &Array, group: &Group) -> Result<Array> {
    check("all_min", &[x], ffi::dist_all_min(x.raw(), group.raw()))
}

/// Every rank's `x` concatenated along axis 0 in rank order (a scalar
/// becomes one element per rank). All ranks must pass the same shape.
#[track_caller]
pub fn all_gather(x: &Array, group: &Group) -> Result<Array> {
    check(
        "all_gather",
        &[x],
        ffi::dist_all_gather(x.raw(), group.raw()),
    )
}

/// The sum of `x` over all ranks, of which rank `r` keeps the `r`-th of
/// `size` equal slices along axis 0 (whose length `size` must divide).
/// Not on the ring backend.
#[track_caller]
pub fn sum_scatter(x: &Array, group: &Group) -> Result<Array> {
    check(
        "sum_scatter",
        &[x],
        ffi::dist_sum_scatter(x.raw(), group.raw()),
    )
}

/// Sends `x` to rank `dst`; evaluating the returned array performs the
/// send (it holds `x`). The receiver must [`recv`] the same shape and
/// dtype. Not on NCCL, nor on a group of size 1.
#[track_caller]
pub fn send(x: &Array, dst: usize, group: &Group) -> Result<Array> {
    let dst = group.rank_arg("send", "destination", dst)?;
    check("send", &[x], ffi::dist_send(x.raw(), dst, group.raw()))
}

/// Receives an array of `shape` and `dtype` from rank `src` (when evaluated).
#[track_caller]
pub fn recv(shape: &[i32], dtype: Dtype, src: usize, group: &Group) -> Result<Array> {
    let src = group.rank_arg("recv", "source", src)?;
    check(
        "recv",
        &[],
        ffi::dist_recv(shape, dtype.to_ffi(), src, group.raw()),
    )
}

/// Receives an array shaped and typed like `like` from rank `src`.
#[track_caller]
pub fn recv_like(like: &Array, src: usize, group: &Group) -> Result<Array> {
    let src = group.rank_arg("recv_like", "source", src)?;
    check(
        "recv_like",
        &[like],
        ffi::dist_recv_like(like.raw(), src, group.raw()),
    )
}

/// Rank `root`'s `x` on every rank. Every rank passes an array of the same
/// shape and dtype (the others' values are ignored). MLX has no broadcast:
/// this is an [`all_sum`] of the root's array and zeros from the other
/// ranks, exact for numbers (a root's `-0.0` arrives as `0.0`).
#[track_caller]
pub fn broadcast(x: &Array, root: usize, group: &Group) -> Result<Array> {
    group.rank_arg("broadcast", "root", root)?;
    if group.size() == 1 {
        return Ok(x.clone());
    }
    if x.dtype() == Dtype::Bool {
        // A sum of booleans is not defined by every backend: go through u8.
        let as_u8 = x.as_type(Dtype::U8)?;
        return broadcast(&as_u8, root, group)?.as_type(Dtype::Bool);
    }
    let contribution = if group.rank() == root {
        x.clone()
    } else {
        x.zeros_like()?
    };
    all_sum(&contribution, group)
}
