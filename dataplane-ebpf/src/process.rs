//! Which executable is the current task running? Its file identity (device, inode), read
//! through task → mm → exe_file → f_inode with offsets user space took from the kernel's BTF.
//! Then the workload × binary subject whose rules apply to this process.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_get_current_task};
use dataplane_common::{FileKey, KernelOffsets, SubjectKey, WorkloadValue};

use crate::maps::{BINARIES, KERNEL_OFFSETS, SUBJECTS};

/// The subject for this process of `workload`, or the workload itself when the process runs no
/// binary that a policy names (or its executable cannot be read).
#[inline(always)]
pub fn subject(workload: WorkloadValue, slot: u32) -> WorkloadValue {
    subject_of(workload, slot, current_exe())
}

/// The subject of `workload` for a process running `exe` (see [`subject`]).
#[inline(always)]
pub fn subject_of(workload: WorkloadValue, slot: u32, exe: Option<(u64, u64)>) -> WorkloadValue {
    let Some((dev, ino)) = exe else {
        return workload;
    };
    let file = FileKey {
        dev,
        ino,
        slot,
        _pad: 0,
    };
    // SAFETY: values are Copy and read immediately.
    let Some(binary_id) = (unsafe { BINARIES.get(&file).copied() }) else {
        return workload;
    };
    let key = SubjectKey {
        workload_id: workload.workload_id,
        binary_id,
        slot,
    };
    unsafe { SUBJECTS.get(&key).copied() }.unwrap_or(workload)
}

/// The current task's executable (device, inode); None without BTF offsets or for a kernel
/// thread.
#[inline(always)]
pub fn current_exe() -> Option<(u64, u64)> {
    let o: KernelOffsets = *KERNEL_OFFSETS.get(0)?;
    if o.valid == 0 {
        return None;
    }
    // SAFETY: every pointer is read with bpf_probe_read_kernel, which fails cleanly on a bad
    // address; a kernel thread has no mm (NULL) and is rejected before it is followed.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let mm: *const u8 = read(task, o.task_mm)?;
        let exe: *const u8 = read(mm, o.mm_exe_file)?;
        let inode: *const u8 = read(exe, o.file_inode)?;
        let ino: u64 = read(inode, o.inode_ino)?;
        let sb: *const u8 = read(inode, o.inode_sb)?;
        let dev: u32 = read(sb, o.sb_dev)?;
        Some((u64::from(dev), ino))
    }
}

/// Reads a `T` at `base + offset` from kernel memory; None for a NULL base or a failed read.
#[inline(always)]
pub unsafe fn read<T>(base: *const u8, offset: u32) -> Option<T> {
    if base.is_null() {
        return None;
    }
    unsafe { bpf_probe_read_kernel(base.add(offset as usize) as *const T).ok() }
}
