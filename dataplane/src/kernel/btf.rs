//! Just enough of a BTF reader to find struct field offsets in the running kernel
//! (/sys/kernel/btf/vmlinux), so kernel programs can follow task → mm → exe_file → inode with
//! the right offsets on any kernel build (the Rust eBPF toolchain has no CO-RE field
//! relocations).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use dataplane_common::{KernelOffsets, fast_path::SockOffsets};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// Field offsets the kernel programs need, from one read and parse of the kernel's own BTF.
/// Each family fails on its own: a missing field disables only the feature that reads it.
pub struct Offsets {
    /// task → mm → exe_file → inode: a task's executable identity (process-aware rules).
    pub exe: Result<KernelOffsets>,
    /// The socket fields the fast path reads.
    pub sock: Result<SockOffsets>,
}

pub fn offsets(path: &Path) -> Offsets {
    let parsed = std::fs::read(path)
        .with_context(|| format!("read {}", path.display()))
        .and_then(|data| {
            let btf = Btf::parse(&data)?;
            Ok((exe_offsets(&btf), sock_offsets(&btf)))
        });
    match parsed {
        Ok((exe, sock)) => Offsets { exe, sock },
        Err(e) => {
            let why = format!("{e:#}");
            Offsets {
                exe: Err(anyhow!("{why}")),
                sock: Err(anyhow!("{why}")),
            }
        }
    }
}

fn exe_offsets(btf: &Btf) -> Result<KernelOffsets> {
    Ok(KernelOffsets {
        task_mm: btf.required("task_struct", "mm")?,
        mm_exe_file: btf.required("mm_struct", "exe_file")?,
        file_inode: btf.required("file", "f_inode")?,
        inode_ino: btf.required("inode", "i_ino")?,
        inode_sb: btf.required("inode", "i_sb")?,
        sb_dev: btf.required("super_block", "s_dev")?,
        valid: 1,
        _pad: 0,
    })
}

fn sock_offsets(btf: &Btf) -> Result<SockOffsets> {
    Ok(SockOffsets {
        write_seq: btf.required("tcp_sock", "write_seq")?,
        copied_seq: btf.required("tcp_sock", "copied_seq")?,
        rcvbuf: btf.required("sock", "sk_rcvbuf")?,
        // `sk_rmem_alloc` is `sk_backlog.rmem_alloc`, inside an unnamed struct type.
        rmem_alloc: btf.required("sock", "sk_backlog")?
            + btf
                .member_of_field("sock", "sk_backlog", "rmem_alloc")
                .context("no field sock.sk_backlog.rmem_alloc in the kernel's BTF")?,
        valid: 1,
        _pad: 0,
    })
}

struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

struct Type {
    kind: u32,
    name: u32,
    /// Referenced type for modifiers and typedefs.
    ref_type: u32,
    members: Vec<Member>,
}

struct Btf<'a> {
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    strings: &'a [u8],
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self> {
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if u16_at(0) != Some(MAGIC) {
            bail!("not little-endian BTF (bad magic)");
        }
        let field = |o| {
            u32_at(o)
                .map(|v| v as usize)
                .context("truncated BTF header")
        };
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (field(4)?, field(8)?, field(12)?, field(16)?, field(20)?);
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .context("BTF string section out of range")?;
        let mut types = vec![Type {
            kind: 0,
            name: 0,
            ref_type: 0,
            members: Vec::new(),
        }];
        let (mut at, end) = (hdr_len + type_off, hdr_len + type_off + type_len);
        while at < end {
            let word = |i: usize| u32_at(at + 4 * i).context("truncated BTF type");
            let (name, info, size_or_type) = (word(0)?, word(1)?, word(2)?);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kflag = info >> 31 == 1;
            at += 12;
            let mut members = Vec::new();
            let extra = match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                KIND_STRUCT | KIND_UNION => {
                    for m in 0..vlen {
                        let o = at + 12 * m;
                        let offset = u32_at(o + 8).context("truncated BTF member")?;
                        members.push(Member {
                            name: u32_at(o).context("truncated BTF member")?,
                            type_id: u32_at(o + 4).context("truncated BTF member")?,
                            bit_offset: if kflag { offset & 0x00ff_ffff } else { offset },
                        });
                    }
                    12 * vlen
                }
                6 | 13 => 8 * vlen,
                15 | 19 => 12 * vlen,
                2 | 7..=12 | 16 | 18 => 0,
                other => bail!("unknown BTF kind {other}"),
            };
            at += extra;
            types.push(Type {
                kind,
                name,
                ref_type: size_or_type,
                members,
            });
        }
        Ok(Self { types, strings })
    }

    fn name(&self, offset: u32) -> &[u8] {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    fn structs_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Type> + 's {
        self.types
            .iter()
            .filter(move |t| t.kind == KIND_STRUCT && self.name(t.name) == name.as_bytes())
    }

    /// Byte offset of `field` in struct `name`, looking through anonymous struct/union members.
    fn field_offset(&self, name: &str, field: &str) -> Option<u32> {
        self.structs_named(name)
            .find_map(|t| self.member_bits(t, field.as_bytes()))
            .map(|bits| bits / 8)
    }

    /// [`Self::field_offset`], or an error naming the field.
    fn required(&self, name: &str, field: &str) -> Result<u32> {
        self.field_offset(name, field)
            .with_context(|| format!("no field {name}.{field} in the kernel's BTF"))
    }

    /// Byte offset of `inner` within the type of member `field` of struct `name`.
    fn member_of_field(&self, name: &str, field: &str, inner: &str) -> Option<u32> {
        self.structs_named(name).find_map(|outer| {
            let member = outer
                .members
                .iter()
                .find(|m| self.name(m.name) == field.as_bytes())?;
            let ty = self.resolve(member.type_id)?;
            self.member_bits(ty, inner.as_bytes()).map(|bits| bits / 8)
        })
    }

    fn member_bits(&self, t: &Type, field: &[u8]) -> Option<u32> {
        t.members.iter().find_map(|m| {
            let name = self.name(m.name);
            if name == field {
                return Some(m.bit_offset);
            }
            if !name.is_empty() {
                return None;
            }
            let inner = self.resolve(m.type_id)?;
            if inner.kind == KIND_STRUCT || inner.kind == KIND_UNION {
                self.member_bits(inner, field).map(|b| b + m.bit_offset)
            } else {
                None
            }
        })
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..16 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.ref_type
                }
                _ => return Some(t),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs against this machine's kernel: every kernel meshward supports ships BTF.
    #[test]
    fn finds_the_exe_file_chain_in_the_running_kernel() {
        let o = offsets(Path::new(VMLINUX_BTF))
            .exe
            .expect("kernel BTF readable");
        assert_eq!(o.valid, 1);
        // Sanity: fields lie inside their structs and differ where they must.
        assert!(o.task_mm > 0 && o.task_mm < 16 * 1024, "{o:?}");
        assert!(o.mm_exe_file > 0 && o.mm_exe_file < 8 * 1024, "{o:?}");
        assert_ne!(o.inode_ino, o.inode_sb);
    }

    #[test]
    fn finds_the_socket_fields_of_the_fast_path() {
        let o = offsets(Path::new(VMLINUX_BTF))
            .sock
            .expect("kernel BTF readable");
        assert_eq!(o.valid, 1);
        // struct sock opens struct tcp_sock; the TCP fields lie beyond it.
        assert!(o.write_seq > o.rcvbuf && o.copied_seq > o.rcvbuf, "{o:?}");
        assert_ne!(o.write_seq, o.copied_seq);
        assert!(o.rmem_alloc > 0 && o.rmem_alloc < 1024, "{o:?}");
    }

    #[test]
    fn rejects_data_that_is_not_btf() {
        assert!(Btf::parse(b"not btf at all, definitely not").is_err());
    }
}
