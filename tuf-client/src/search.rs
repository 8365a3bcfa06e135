//! Target search through the delegation graph (spec §5.6.7): which delegations a target path
//! falls into, and the pre-order depth-first order in which roles are visited (with terminating
//! delegations, a visited set and a cap on the number of roles visited).
use crate::crypto::sha256_hex;
use crate::schema::{DelegatedRole, Delegations};

/// Shell-style match of one pattern segment against one path segment: `*` matches any run of
/// characters, `?` one character, `[abc]`/`[a-z]`/`[!a]` a character class; everything else
/// matches itself (case-sensitive).
fn match_segment(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Backtracking point for the last `*`: (pattern index after it, text index it matched to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => match match_class(&pattern[p..], text[t]) {
                    Some((true, len)) => {
                        p += len;
                        t += 1;
                        continue;
                    }
                    Some((false, _)) => {}
                    // An unterminated `[` matches itself.
                    None if text[t] == '[' => {
                        p += 1;
                        t += 1;
                        continue;
                    }
                    None => {}
                },
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Match `c` against the class starting at `pattern[0] == '['`: `Some((matched, length of
/// the class))`, or `None` if the class is not terminated.
fn match_class(pattern: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some('!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        let ch = pattern[i];
        if ch == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|e| *e != ']') {
            let end = pattern[i + 2];
            if ch <= c && c <= end {
                matched = true;
            }
            i += 3;
        } else {
            if ch == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// Whether `target` matches the delegation path `pattern`: both split on `/` into the same
/// number of segments, each segment matching shell-style (so `*` never crosses a `/`).
pub(crate) fn path_matches(pattern: &str, target: &str) -> bool {
    let pattern_parts: Vec<&str> = pattern.split('/').collect();
    let target_parts: Vec<&str> = target.split('/').collect();
    if pattern_parts.len() != target_parts.len() {
        return false;
    }
    pattern_parts.iter().zip(&target_parts).all(|(p, t)| {
        let p: Vec<char> = p.chars().collect();
        let t: Vec<char> = t.chars().collect();
        match_segment(&p, &t)
    })
}

/// Whether the delegation covers `target` (by `paths`, or by `path_hash_prefixes` of the
/// SHA-256 of the target path). A role with neither covers nothing.
pub(crate) fn role_covers(role: &DelegatedRole, target: &str) -> bool {
    if let Some(paths) = &role.paths {
        return paths.iter().any(|p| path_matches(p, target));
    }
    if let Some(prefixes) = &role.path_hash_prefixes {
        let hash = sha256_hex(target.as_bytes());
        return prefixes.iter().any(|p| hash.starts_with(p.as_str()));
    }
    false
}

/// The role a target falls into under succinct hash-bin delegation: the first `bit_length`
/// bits of the SHA-256 of the target path, as `<prefix>-<bin in hex>` with the bin padded to
/// the width of the largest bin number.
pub(crate) fn succinct_role(name_prefix: &str, bit_length: u32, target: &str) -> Option<String> {
    if !(1..=32).contains(&bit_length) {
        return None;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, target.as_bytes());
    let first = u32::from_be_bytes(digest.as_ref().get(..4)?.try_into().ok()?);
    let bin = first >> (32 - bit_length);
    let max_bin = if bit_length == 32 {
        u32::MAX
    } else {
        (1u32 << bit_length) - 1
    };
    let width = format!("{max_bin:x}").len();
    Some(format!("{name_prefix}-{bin:0width$x}"))
}

/// One delegation to follow: the child role, and whether it is terminating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Child {
    /// Index of the delegation in `delegations.roles`, or `None` for a succinct hash bin.
    pub index: Option<usize>,
    /// The delegated role's name.
    pub name: String,
    /// Terminating: no other branch is searched after this one.
    pub terminating: bool,
}

/// The delegations of `delegations` that cover `target`, in the order listed, cut after the
/// first terminating one.
pub(crate) fn children_for(delegations: &Delegations, target: &str) -> Vec<Child> {
    let mut out = Vec::new();
    if let Some(roles) = &delegations.roles {
        for (index, role) in roles.iter().enumerate() {
            if role_covers(role, target) {
                out.push(Child {
                    index: Some(index),
                    name: role.name.clone(),
                    terminating: role.terminating,
                });
                if role.terminating {
                    break;
                }
            }
        }
    } else if let Some(succinct) = &delegations.succinct_roles
        && let Some(name) = succinct_role(&succinct.name_prefix, succinct.bit_length, target)
    {
        out.push(Child {
            index: None,
            name,
            terminating: true,
        });
    }
    out
}

/// A role waiting to be visited, with the role that delegated to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub role: String,
    pub delegator: Option<String>,
    pub child: Option<Child>,
}

/// The pre-order depth-first walk state.
#[derive(Debug)]
pub(crate) struct Walk {
    stack: Vec<Pending>,
    visited: std::collections::HashSet<String>,
    max_roles: usize,
}

impl Walk {
    /// A walk starting at the top-level targets role, visiting at most `max_roles` roles.
    pub(crate) fn new(max_roles: usize) -> Self {
        Self {
            stack: vec![Pending {
                role: "targets".to_owned(),
                delegator: None,
                child: None,
            }],
            visited: std::collections::HashSet::new(),
            max_roles,
        }
    }

    /// The next role to visit (marked visited), or `None` when the walk is over.
    pub(crate) fn next(&mut self) -> Option<Pending> {
        while self.visited.len() < self.max_roles {
            let next = self.stack.pop()?;
            if self.visited.insert(next.role.clone()) {
                return Some(next);
            }
        }
        None
    }

    /// Queue the children of the role just visited. A terminating child (always the last of
    /// `children`) drops every branch still waiting.
    pub(crate) fn push_children(&mut self, delegator: &str, children: Vec<Child>) {
        if children.last().is_some_and(|c| c.terminating) {
            self.stack.clear();
        }
        for child in children.into_iter().rev() {
            self.stack.push(Pending {
                role: child.name.clone(),
                delegator: Some(delegator.to_owned()),
                child: Some(child),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::{Child, Walk, path_matches, role_covers, succinct_role};
    use crate::schema::DelegatedRole;
    use std::collections::HashMap;

    #[test]
    fn patterns_do_not_cross_slashes() {
        assert!(path_matches("*", "a.txt"));
        assert!(!path_matches("*", "dir/a.txt"));
        assert!(path_matches("*.md", "README.md"));
        assert!(!path_matches("*.md", "releases/README.md"));
        assert!(!path_matches("*.md", "README.MD"));
        assert!(path_matches("releases/*/*", "releases/x/x_v1"));
        assert!(!path_matches("releases/*/*", "releases/x"));
        assert!(path_matches("releases/y/*.zip", "releases/y/y_v1.zip"));
        assert!(!path_matches("releases/y/*.zip", "releases/z/z_v1.zip"));
        assert!(path_matches("foo-?.tgz", "foo-1.tgz"));
        assert!(!path_matches("foo-?.tgz", "foo-alpha.tgz"));
        assert!(path_matches("a*b*c", "aXXbYYc"));
        assert!(!path_matches("a*b*c", "aXXbYY"));
        assert!(path_matches("v[0-9].txt", "v7.txt"));
        assert!(!path_matches("v[!0-9].txt", "v7.txt"));
        assert!(path_matches("v[!0-9].txt", "vx.txt"));
        assert!(path_matches("exact/name", "exact/name"));
        assert!(path_matches("**", "x"));
        assert!(path_matches("", ""));
        assert!(!path_matches("", "a"));
    }

    #[test]
    fn hash_prefixes_and_bins() {
        let hash = crate::crypto::sha256_hex(b"a.txt");
        let role = DelegatedRole {
            name: "bin".into(),
            keyids: vec![],
            threshold: 1,
            terminating: false,
            paths: None,
            path_hash_prefixes: Some(vec![hash[..2].to_owned()]),
        };
        assert!(role_covers(&role, "a.txt"));
        let other = DelegatedRole {
            path_hash_prefixes: Some(vec!["zz".into()]),
            ..role.clone()
        };
        assert!(!role_covers(&other, "a.txt"));
        let none = DelegatedRole {
            path_hash_prefixes: None,
            ..role
        };
        assert!(!role_covers(&none, "a.txt"));
        // 8 bits: the first byte of the hash, two hex digits.
        assert_eq!(
            succinct_role("bins", 8, "a.txt").unwrap(),
            format!("bins-{}", &hash[..2])
        );
        // 3 bits: one hex digit, 0..=7.
        let first = u8::from_str_radix(&hash[..2], 16).unwrap();
        assert_eq!(
            succinct_role("b", 3, "a.txt").unwrap(),
            format!("b-{:x}", first >> 5)
        );
        assert_eq!(succinct_role("b", 0, "a.txt"), None);
    }

    /// Run the walk over a graph of `role -> [(child, terminating, covers)]`; return the
    /// visit order (the target is never found).
    fn order(graph: &HashMap<&str, Vec<(&str, bool, bool)>>, max: usize) -> Vec<String> {
        let mut walk = Walk::new(max);
        let mut seen = Vec::new();
        while let Some(p) = walk.next() {
            seen.push(p.role.clone());
            let mut children = Vec::new();
            for (name, terminating, covers) in
                graph.get(p.role.as_str()).cloned().unwrap_or_default()
            {
                if !covers {
                    continue;
                }
                children.push(Child {
                    index: Some(0),
                    name: name.to_owned(),
                    terminating,
                });
                if terminating {
                    break;
                }
            }
            walk.push_children(&p.role, children);
        }
        seen
    }

    #[test]
    fn pre_order_depth_first_with_terminating_and_cycles() {
        let g = HashMap::from([
            ("targets", vec![("A", false, true), ("B", false, true)]),
            ("A", vec![("C", false, true), ("D", false, true)]),
        ]);
        assert_eq!(order(&g, 32), ["targets", "A", "C", "D", "B"]);
        let g = HashMap::from([
            ("targets", vec![("A", false, true), ("B", false, true)]),
            ("A", vec![("C", true, true), ("D", false, true)]),
            ("C", vec![("E", false, true)]),
        ]);
        assert_eq!(order(&g, 32), ["targets", "A", "C", "E"]);
        let g = HashMap::from([
            ("targets", vec![("A", false, true), ("B", false, true)]),
            ("B", vec![("C", false, true)]),
            ("C", vec![("D", false, true)]),
            ("D", vec![("B", false, true)]),
        ]);
        assert_eq!(order(&g, 32), ["targets", "A", "B", "C", "D"]);
        let g = HashMap::from([
            ("targets", vec![("A", false, false), ("B", false, true)]),
            ("A", vec![("C", false, true)]),
        ]);
        assert_eq!(order(&g, 32), ["targets", "B"]);
        // Diamond: C reached through A first, not visited again through B.
        let g = HashMap::from([
            ("targets", vec![("A", false, true), ("B", false, true)]),
            ("A", vec![("C", false, true)]),
            ("B", vec![("C", false, true)]),
        ]);
        assert_eq!(order(&g, 32), ["targets", "A", "C", "B"]);
        // The cap on visited roles.
        let g = HashMap::from([(
            "targets",
            vec![("A", false, true), ("B", false, true), ("C", false, true)],
        )]);
        assert_eq!(order(&g, 3), ["targets", "A", "B"]);
    }
}
