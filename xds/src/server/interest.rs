//! Which resources of a type a stream asked for: every one (wildcard) or those named.

use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    All,
    Names(BTreeSet<String>),
}

impl Interest {
    /// From a SotW request's `resource_names`, or a first delta subscription's names: none, or
    /// `*` among them, is the wildcard.
    pub fn from_names(names: &[String]) -> Interest {
        if names.is_empty() || names.iter().any(|n| n == "*") {
            Interest::All
        } else {
            Interest::Names(names.iter().cloned().collect())
        }
    }

    /// A later delta request's changes.
    pub fn change(&mut self, subscribe: &[String], unsubscribe: &[String]) {
        if subscribe.iter().any(|n| n == "*") {
            *self = Interest::All;
        }
        if let Interest::Names(names) = self {
            names.extend(subscribe.iter().cloned());
            for n in unsubscribe {
                names.remove(n);
            }
        }
    }

    pub fn wants(&self, name: &str) -> bool {
        match self {
            Interest::All => true,
            Interest::Names(names) => names.contains(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wildcard_and_names() {
        assert_eq!(Interest::from_names(&[]), Interest::All);
        assert_eq!(Interest::from_names(&names(&["a", "*"])), Interest::All);
        let mut i = Interest::from_names(&names(&["a", "b"]));
        assert!(i.wants("a") && !i.wants("c"));
        i.change(&names(&["c"]), &names(&["a"]));
        assert!(!i.wants("a") && i.wants("b") && i.wants("c"));
        i.change(&names(&["*"]), &[]);
        assert!(i.wants("anything"));
    }
}
