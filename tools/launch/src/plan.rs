//! Which ranks run here, and the environment of each.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Error, Result, free_loopback_ports};

/// The communication backend the ranks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// MLX's ring backend over TCP (the CPU build).
    Ring,
    /// NCCL (the CUDA build): one GPU per rank.
    Nccl,
}

/// Where the hostfile lives and whether the plan wrote it.
#[derive(Debug)]
enum Hostfile {
    /// Written by [`Plan::local`] into the temporary directory; removed on drop.
    Written(PathBuf),
    /// Given by the user.
    Given(PathBuf),
}

/// The ranks this machine runs and their environment.
///
/// Rank `i` of this machine has global rank `rank_offset + i`; the job has
/// `world_size` ranks over all machines.
#[derive(Debug)]
pub struct Plan {
    backend: Backend,
    local_ranks: usize,
    rank_offset: usize,
    world_size: usize,
    /// The `"ip:port"` entries of every global rank (first address each).
    addresses: Vec<String>,
    hostfile: Hostfile,
    /// The launcher's `CUDA_VISIBLE_DEVICES`, split, when set.
    visible_devices: Option<Vec<String>>,
}

impl Plan {
    /// A one-machine job of `ranks` ranks on 127.0.0.1: picks free ports
    /// and writes the ring hostfile to the temporary directory (removed when
    /// the plan is dropped). For NCCL, rank 0's address is the rendezvous.
    pub fn local(backend: Backend, ranks: usize) -> Result<Plan> {
        if ranks == 0 {
            return Err(Error::Invalid("at least one rank is needed".into()));
        }
        let addresses: Vec<String> = free_loopback_ports(ranks)?
            .into_iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let path = unique_temp_path();
        write_hostfile(&path, &addresses)?;
        Ok(Plan {
            backend,
            local_ranks: ranks,
            rank_offset: 0,
            world_size: ranks,
            addresses,
            hostfile: Hostfile::Written(path),
            visible_devices: visible_devices(),
        })
    }

    /// One machine's share of a several-machine job: the hostfile (MLX's
    /// ring format, the same file on every machine) lists every global
    /// rank's address; this machine runs `ranks` ranks starting at global
    /// rank `rank_offset`. Ring ranks get the file as `MLX_HOSTFILE`; NCCL
    /// ranks get rank 0's address as `NCCL_HOST_IP` / `NCCL_PORT`.
    pub fn from_hostfile(
        backend: Backend,
        hostfile: &Path,
        ranks: usize,
        rank_offset: usize,
    ) -> Result<Plan> {
        let addresses = read_hostfile(hostfile)?;
        let world_size = addresses.len();
        let end = rank_offset.checked_add(ranks).ok_or_else(|| {
            Error::Invalid(format!(
                "rank offset {rank_offset} + {ranks} ranks overflows"
            ))
        })?;
        if ranks == 0 || end > world_size {
            return Err(Error::Invalid(format!(
                "ranks {rank_offset}..{end} do not fit the {world_size} rank(s) of {}",
                hostfile.display()
            )));
        }
        Ok(Plan {
            backend,
            local_ranks: ranks,
            rank_offset,
            world_size,
            addresses,
            hostfile: Hostfile::Given(hostfile.to_path_buf()),
            visible_devices: visible_devices(),
        })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many ranks this machine runs.
    pub fn local_ranks(&self) -> usize {
        self.local_ranks
    }

    /// The global rank of local rank `local`.
    pub fn global_rank(&self, local: usize) -> usize {
        self.rank_offset + local
    }

    /// The number of ranks of the whole job.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The hostfile the ring ranks read.
    pub fn hostfile(&self) -> &Path {
        match &self.hostfile {
            Hostfile::Written(path) | Hostfile::Given(path) => path,
        }
    }

    /// The variables set for local rank `local` (everything else is
    /// inherited from the launcher unchanged).
    pub fn rank_env(&self, local: usize) -> Result<Vec<(OsString, OsString)>> {
        if local >= self.local_ranks {
            return Err(Error::Invalid(format!(
                "local rank {local} of {} ranks",
                self.local_ranks
            )));
        }
        let rank = self.global_rank(local);
        let mut env: Vec<(OsString, OsString)> = vec![
            ("MLX_RANK".into(), rank.to_string().into()),
            ("MLX_WORLD_SIZE".into(), self.world_size.to_string().into()),
        ];
        match self.backend {
            Backend::Ring => {
                env.push(("MLX_HOSTFILE".into(), self.hostfile().into()));
            }
            Backend::Nccl => {
                let rendezvous = self
                    .addresses
                    .first()
                    .ok_or_else(|| Error::Invalid("the hostfile lists no rank".into()))?;
                let (ip, port) = rendezvous.rsplit_once(':').ok_or_else(|| {
                    Error::Invalid(format!("rank 0 address `{rendezvous}` is not ip:port"))
                })?;
                env.push(("NCCL_HOST_IP".into(), ip.into()));
                env.push(("NCCL_PORT".into(), port.into()));
                let device = match &self.visible_devices {
                    Some(devices) => devices.get(local).cloned().ok_or_else(|| {
                        Error::Invalid(format!(
                            "CUDA_VISIBLE_DEVICES lists {} device(s), {} rank(s) need one each",
                            devices.len(),
                            self.local_ranks
                        ))
                    })?,
                    None => local.to_string(),
                };
                env.push(("CUDA_VISIBLE_DEVICES".into(), device.into()));
            }
        }
        Ok(env)
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        if let Hostfile::Written(path) = &self.hostfile {
            // Best effort: a leftover file in the temporary directory is harmless.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The launcher's `CUDA_VISIBLE_DEVICES`, split on commas.
fn visible_devices() -> Option<Vec<String>> {
    let value = std::env::var("CUDA_VISIBLE_DEVICES").ok()?;
    Some(
        value
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(String::from)
            .collect(),
    )
}

/// A path in the temporary directory no other plan of any process uses.
fn unique_temp_path() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "mlx-launch-{}-{}-{nanos}.json",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes MLX's ring hostfile: one list of one address per rank.
fn write_hostfile(path: &Path, addresses: &[String]) -> Result<()> {
    let entries: Vec<serde_json::Value> = addresses
        .iter()
        .map(|a| serde_json::Value::from(vec![a.as_str()]))
        .collect();
    let text = serde_json::Value::from(entries).to_string();
    std::fs::write(path, text).map_err(|e| Error::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reads a ring hostfile: a JSON list whose entries are an `"ip:port"`
/// string or a non-empty list of them; returns each rank's first address.
fn read_hostfile(path: &Path) -> Result<Vec<String>> {
    let bad = |message: String| Error::Hostfile {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let entries = value
        .as_array()
        .ok_or_else(|| bad("expected a JSON list with one entry per rank".into()))?;
    if entries.is_empty() {
        return Err(bad("lists no rank".into()));
    }
    entries
        .iter()
        .enumerate()
        .map(|(rank, entry)| {
            let first = match entry {
                serde_json::Value::Array(list) => list.first(),
                other => Some(other),
            };
            let address = first.and_then(|a| a.as_str()).ok_or_else(|| {
                bad(format!(
                    "rank {rank}: expected \"ip:port\" or a list of them, got {entry}"
                ))
            })?;
            if address.rsplit_once(':').is_none() {
                return Err(bad(format!("rank {rank}: `{address}` is not ip:port")));
            }
            Ok(address.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    fn env_of(plan: &Plan, local: usize) -> TestResult<Vec<(String, String)>> {
        plan.rank_env(local)?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    k.into_string().map_err(|_| "not UTF-8")?,
                    v.into_string().map_err(|_| "not UTF-8")?,
                ))
            })
            .collect()
    }

    #[test]
    fn local_ring_plan_writes_mlx_hostfile_with_distinct_ports() -> TestResult {
        let plan = Plan::local(Backend::Ring, 3)?;
        let text = std::fs::read_to_string(plan.hostfile())?;
        let parsed: Vec<Vec<String>> = serde_json::from_str(&text)?;
        assert_eq!(parsed.len(), 3);
        let mut ports: Vec<&str> = parsed
            .iter()
            .map(|e| {
                assert_eq!(e.len(), 1);
                e[0].strip_prefix("127.0.0.1:")
                    .ok_or("not a loopback address")
            })
            .collect::<std::result::Result<_, _>>()?;
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 3);
        let env = env_of(&plan, 2)?;
        assert!(env.contains(&("MLX_RANK".into(), "2".into())));
        assert!(env.contains(&("MLX_HOSTFILE".into(), plan.hostfile().display().to_string())));
        let path = plan.hostfile().to_path_buf();
        drop(plan);
        assert!(
            !path.exists(),
            "the written hostfile is removed with the plan"
        );
        Ok(())
    }

    #[test]
    fn hostfile_plan_with_offset_sets_nccl_rendezvous_and_global_ranks() -> TestResult {
        let path = unique_temp_path();
        std::fs::write(
            &path,
            r#"[["10.0.0.1:5000"], "10.0.0.1:5001", ["10.0.0.2:5000", "10.0.0.2:6000"], ["10.0.0.2:5001"]]"#,
        )?;
        let mut plan = Plan::from_hostfile(Backend::Nccl, &path, 2, 2)?;
        plan.visible_devices = Some(vec!["4".into(), "7".into()]);
        assert_eq!(plan.world_size(), 4);
        assert_eq!(plan.global_rank(1), 3);
        let env = env_of(&plan, 1)?;
        assert!(env.contains(&("MLX_RANK".into(), "3".into())));
        assert!(env.contains(&("MLX_WORLD_SIZE".into(), "4".into())));
        assert!(env.contains(&("NCCL_HOST_IP".into(), "10.0.0.1".into())));
        assert!(env.contains(&("NCCL_PORT".into(), "5000".into())));
        assert!(env.contains(&("CUDA_VISIBLE_DEVICES".into(), "7".into())));
        assert!(Plan::from_hostfile(Backend::Ring, &path, 3, 2).is_err());
        drop(plan);
        assert!(path.exists(), "a given hostfile is left alone");
        std::fs::write(&path, r#"{"hosts": []}"#)?;
        let err = Plan::from_hostfile(Backend::Ring, &path, 1, 0).expect_err("bad format");
        assert!(err.to_string().contains("one entry per rank"), "{err}");
        let _ = std::fs::remove_file(&path);
        Ok(())
    }
}
