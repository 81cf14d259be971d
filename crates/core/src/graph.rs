//! The pipeline as a DAG (petgraph): topological order, ancestors and
//! descendants, and the cycles to print when it is not a DAG.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::spec::Pipeline;

/// Node `i` of the graph is `pipeline.nodes[i]`; an edge runs from a node
/// to each node that reads one of its outputs.
#[derive(Debug, Clone)]
pub struct Dag {
    pub graph: DiGraph<usize, ()>,
    /// Topological order; ties broken by position in the file.
    pub order: Vec<usize>,
}

impl Dag {
    /// Build the DAG, or return the cycles (each as node indices, the first
    /// repeated at the end). References to nodes that do not exist are
    /// skipped here; `spec::check` reports them.
    pub fn build(p: &Pipeline) -> Result<Dag, Vec<Vec<usize>>> {
        let mut graph = DiGraph::with_capacity(p.nodes.len(), p.nodes.len());
        for i in 0..p.nodes.len() {
            graph.add_node(i);
        }
        let index: std::collections::HashMap<&str, usize> =
            p.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
        for (i, node) in p.nodes.iter().enumerate() {
            for up in node.upstream_ids() {
                if let Some(&j) = index.get(up) {
                    graph.update_edge(NodeIndex::new(j), NodeIndex::new(i), ());
                }
            }
        }
        let cycles = find_cycles(&graph);
        if !cycles.is_empty() {
            return Err(cycles);
        }
        let order = topo_order(&graph);
        Ok(Dag { graph, order })
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Direct upstream nodes of `i`, sorted.
    pub fn parents(&self, i: usize) -> Vec<usize> {
        self.neighbours(i, Direction::Incoming)
    }

    /// Direct downstream nodes of `i`, sorted.
    pub fn children(&self, i: usize) -> Vec<usize> {
        self.neighbours(i, Direction::Outgoing)
    }

    fn neighbours(&self, i: usize, dir: Direction) -> Vec<usize> {
        let mut v: Vec<usize> = self.graph.neighbors_directed(NodeIndex::new(i), dir).map(|n| n.index()).collect();
        v.sort_unstable();
        v
    }

    /// `i` and everything upstream of it.
    pub fn with_ancestors(&self, start: &[usize]) -> Vec<bool> {
        self.reach(start, Direction::Incoming)
    }

    /// `i` and everything downstream of it.
    pub fn with_descendants(&self, start: &[usize]) -> Vec<bool> {
        self.reach(start, Direction::Outgoing)
    }

    fn reach(&self, start: &[usize], dir: Direction) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut queue: VecDeque<usize> = start.iter().copied().collect();
        for &s in start {
            seen[s] = true;
        }
        while let Some(i) = queue.pop_front() {
            for n in self.graph.neighbors_directed(NodeIndex::new(i), dir) {
                if !seen[n.index()] {
                    seen[n.index()] = true;
                    queue.push_back(n.index());
                }
            }
        }
        seen
    }
}

/// Kahn's algorithm with the file position as tie-breaker, so that the
/// order (and therefore every listing) is stable.
fn topo_order(graph: &DiGraph<usize, ()>) -> Vec<usize> {
    let n = graph.node_count();
    let mut indegree: Vec<usize> =
        (0..n).map(|i| graph.neighbors_directed(NodeIndex::new(i), Direction::Incoming).count()).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for m in graph.neighbors_directed(NodeIndex::new(i), Direction::Outgoing) {
            indegree[m.index()] -= 1;
            if indegree[m.index()] == 0 {
                ready.push(Reverse(m.index()));
            }
        }
    }
    order
}

/// One concrete cycle per strongly connected component that has one.
fn find_cycles(graph: &DiGraph<usize, ()>) -> Vec<Vec<usize>> {
    let mut cycles = Vec::new();
    for scc in tarjan_scc(graph) {
        let in_scc = |i: usize| scc.iter().any(|n| n.index() == i);
        let start = match scc.iter().map(|n| n.index()).min() {
            Some(s) => s,
            None => continue,
        };
        let self_loop = graph.contains_edge(NodeIndex::new(start), NodeIndex::new(start));
        if scc.len() == 1 && !self_loop {
            continue;
        }
        if self_loop {
            cycles.push(vec![start, start]);
            continue;
        }
        // Shortest path from `start` back to itself inside the component.
        let mut prev: std::collections::HashMap<usize, usize> = Default::default();
        let mut queue = VecDeque::from([start]);
        let mut end = None;
        'bfs: while let Some(i) = queue.pop_front() {
            let mut next: Vec<usize> =
                graph.neighbors(NodeIndex::new(i)).map(|n| n.index()).filter(|&n| in_scc(n)).collect();
            next.sort_unstable();
            for n in next {
                if n == start {
                    end = Some(i);
                    break 'bfs;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(n) {
                    e.insert(i);
                    queue.push_back(n);
                }
            }
        }
        if let Some(mut i) = end {
            let mut path = vec![start, i];
            while i != start {
                i = prev[&i];
                path.push(i);
            }
            path.reverse();
            cycles.push(path);
        }
    }
    cycles.sort();
    cycles
}
