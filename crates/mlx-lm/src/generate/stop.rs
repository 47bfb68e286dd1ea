//! Matching stop sequences of token ids as tokens arrive.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A set of stop sequences (each one or more token ids), matched as one
/// automaton (Aho–Corasick): feeding tokens one by one finds any sequence
/// that ends at the current token, in time independent of how many
/// sequences there are. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StopSequences {
    nodes: Arc<Vec<Node>>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    next: HashMap<u32, usize>,
    fail: usize,
    depth: usize,
    /// Length of the longest sequence that ends at this node (through
    /// failure links too), if any.
    matched: Option<usize>,
}

impl StopSequences {
    /// The automaton of `sequences`; empty sequences are ignored.
    pub fn new<S: AsRef<[u32]>>(sequences: &[S]) -> Self {
        let mut nodes = vec![Node::default()];
        for seq in sequences {
            let seq = seq.as_ref();
            if seq.is_empty() {
                continue;
            }
            let mut at = 0;
            for &t in seq {
                at = match nodes[at].next.get(&t) {
                    Some(&n) => n,
                    None => {
                        let depth = nodes[at].depth + 1;
                        nodes.push(Node {
                            depth,
                            ..Node::default()
                        });
                        let n = nodes.len() - 1;
                        nodes[at].next.insert(t, n);
                        n
                    }
                };
            }
            let len = seq.len();
            nodes[at].matched = Some(nodes[at].matched.map_or(len, |m| m.max(len)));
        }
        // Breadth-first: failure links and inherited matches.
        let mut queue: VecDeque<usize> = nodes[0].next.values().copied().collect();
        while let Some(n) = queue.pop_front() {
            let children: Vec<(u32, usize)> = nodes[n].next.iter().map(|(&t, &c)| (t, c)).collect();
            for (t, child) in children {
                let mut f = nodes[n].fail;
                let fail = loop {
                    if let Some(&g) = nodes[f].next.get(&t)
                        && g != child
                    {
                        break g;
                    }
                    if f == 0 {
                        break 0;
                    }
                    f = nodes[f].fail;
                };
                nodes[child].fail = fail;
                if nodes[child].matched.is_none() {
                    nodes[child].matched = nodes[fail].matched;
                }
                queue.push_back(child);
            }
        }
        StopSequences {
            nodes: Arc::new(nodes),
        }
    }

    /// Whether there is no stop sequence.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// A matcher at the start of the automaton.
    pub fn matcher(&self) -> StopMatcher {
        StopMatcher {
            stops: self.clone(),
            at: 0,
        }
    }
}

/// One stream's position in a [`StopSequences`] automaton.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: StopSequences,
    at: usize,
}

/// What feeding one token to a [`StopMatcher`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopState {
    /// A stop sequence of this many tokens ends at the token.
    Matched(usize),
    /// No match; the last this-many tokens (the token included) are the
    /// start of some stop sequence and might still complete one.
    Partial(usize),
}

impl StopMatcher {
    /// Feeds one token.
    pub fn advance(&mut self, token: u32) -> StopState {
        let nodes = &self.stops.nodes;
        let mut at = self.at;
        loop {
            if let Some(&n) = nodes.get(at).and_then(|node| node.next.get(&token)) {
                at = n;
                break;
            }
            if at == 0 {
                break;
            }
            at = nodes.get(at).map_or(0, |node| node.fail);
        }
        self.at = at;
        let node = nodes.get(at);
        match node.and_then(|n| n.matched) {
            Some(len) => StopState::Matched(len),
            None => StopState::Partial(node.map_or(0, |n| n.depth)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[Vec<u32>], tokens: &[u32]) -> Vec<StopState> {
        let s = StopSequences::new(stops);
        let mut m = s.matcher();
        tokens.iter().map(|&t| m.advance(t)).collect()
    }

    #[test]
    fn single_and_multi_token_sequences() {
        use StopState::*;
        let stops = vec![vec![2], vec![5, 6, 7]];
        assert_eq!(
            run(&stops, &[1, 5, 6, 9]),
            vec![Partial(0), Partial(1), Partial(2), Partial(0)]
        );
        assert_eq!(
            run(&stops, &[5, 5, 6, 7]),
            vec![Partial(1), Partial(1), Partial(2), Matched(3)]
        );
        assert_eq!(run(&stops, &[3, 2]), vec![Partial(0), Matched(1)]);
    }

    #[test]
    fn failure_links_find_overlapping_sequences() {
        use StopState::*;
        // "1 2 3" fails at 4 but "2 4" matches through the failure link.
        let stops = vec![vec![1, 2, 3], vec![2, 4]];
        assert_eq!(
            run(&stops, &[1, 2, 4]),
            vec![Partial(1), Partial(2), Matched(2)]
        );
        // A sequence inside a longer one.
        let stops = vec![vec![1, 2, 3, 4], vec![2, 3]];
        assert_eq!(
            run(&stops, &[1, 2, 3]),
            vec![Partial(1), Partial(2), Matched(2)]
        );
    }

    #[test]
    fn empty_sets_never_match() {
        let s = StopSequences::new::<Vec<u32>>(&[vec![]]);
        assert!(s.is_empty());
        assert_eq!(s.matcher().advance(0), StopState::Partial(0));
    }
}
