//! Seccomp filters as seccomp.img keeps them: a tree of programs, each pointing at the one
//! installed before it. The dump adds each thread's chain ([`SeccompImage`]); the restore walks a
//! chain back from its newest filter ([`chain`]).

use crate::image::pb;

/// seccomp.img: the filters of the tree's threads, each pointing at the one installed before
/// it; chains with a common start share it (a tree, as in the kernel).
#[derive(Default)]
pub struct SeccompImage {
    /// Every filter, each after the one it points at.
    pub filters: Vec<pb::SeccompFilter>,
}

impl SeccompImage {
    /// The index of the newest filter of `chain` (oldest first), adding what is new.
    pub fn add(&mut self, chain: Vec<Vec<u8>>) -> u32 {
        let mut prev = None;
        for filter in chain {
            let known = self.filters.iter().position(|f| f.prev == prev && f.filter == filter);
            prev = Some(match known {
                Some(i) => i as u32,
                None => {
                    self.filters.push(pb::SeccompFilter {
                        filter,
                        prev,
                        flags: None,
                    });
                    self.filters.len() as u32 - 1
                }
            });
        }
        prev.unwrap_or(0)
    }
}

/// The filters of the chain whose newest is `newest`, oldest first (as they are installed).
pub fn chain(filters: &[pb::SeccompFilter], newest: u32) -> Option<Vec<&[u8]>> {
    let mut chain = Vec::new();
    let mut at = Some(newest);
    while let Some(i) = at {
        let f = filters.get(i as usize)?;
        chain.push(f.filter.as_slice());
        at = f.prev;
    }
    chain.reverse();
    Some(chain)
}
