//! The Merkle Search Tree of an atproto repository: `collection/rkey` keys
//! mapped to record CIDs, each key living on the layer its hash gives it.
//!
//! `Mst` is the writable in-memory tree (the simulator changes repos one
//! commit at a time; only nodes on changed paths are re-encoded), `walk`
//! reads and verifies a whole tree from blocks, and `invert_ops` undoes a
//! commit's ops on the partial tree a commit's CAR carries (sync 1.1).

use sha2::{Digest, Sha256};

use crate::cbor::{decode_prefix, head, Value};
use crate::frame::{OpAction, RepoOp};
use crate::Cid;

/// Longest key the repository spec allows.
pub const MAX_KEY_LEN: usize = 1024;

/// Highest layer a verified tree may have. Reaching layer `n` takes a key
/// whose sha-256 starts with `2n` zero bits, so real trees stay far below
/// this; it bounds recursion on hostile input.
pub const MAX_LAYER: u32 = 64;

/// A source of blocks by CID (a CAR's blocks, a block store).
pub trait Blocks {
    fn block(&self, cid: &Cid) -> Option<&[u8]>;
}

impl Blocks for std::collections::HashMap<Cid, &[u8]> {
    fn block(&self, cid: &Cid) -> Option<&[u8]> {
        self.get(cid).copied()
    }
}

impl Blocks for std::collections::HashMap<Cid, Vec<u8>> {
    fn block(&self, cid: &Cid) -> Option<&[u8]> {
        self.get(cid).map(Vec::as_slice)
    }
}

impl Blocks for crate::car::Car {
    fn block(&self, cid: &Cid) -> Option<&[u8]> {
        self.get(cid)
    }
}

/// The no-block source of a fully loaded tree.
struct NoBlocks;

impl Blocks for NoBlocks {
    fn block(&self, _: &Cid) -> Option<&[u8]> {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MstError {
    #[error("MST node {0} is not among the blocks")]
    MissingBlock(Cid),
    #[error("MST node {0} does not hash to its CID")]
    BadHash(Cid),
    #[error("MST node {cid} is not a valid node: {what}")]
    BadNode { cid: Cid, what: &'static str },
    #[error("MST node {0} is not in canonical DAG-CBOR form")]
    NonCanonical(Cid),
    #[error("MST key {key:?} comes after {previous:?}; keys must strictly increase")]
    KeyOrder { key: String, previous: String },
    #[error("MST key {key:?} has height {height} but sits on layer {layer}")]
    WrongLayer {
        key: String,
        height: u32,
        layer: u32,
    },
    #[error("MST node {0} below the root holds nothing")]
    EmptyNode(Cid),
    #[error("MST key {key:?} is not `collection/rkey`")]
    BadKey { key: String },
    #[error("MST is deeper than {MAX_LAYER} layers")]
    TooDeep,
    #[error("commit op on {key:?} does not match the tree: {what}")]
    OpMismatch { key: String, what: &'static str },
}

impl MstError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            MstError::MissingBlock(_) => "mst_missing_block",
            MstError::BadHash(_) => "mst_bad_hash",
            MstError::BadNode { .. } => "mst_bad_node",
            MstError::NonCanonical(_) => "mst_non_canonical",
            MstError::KeyOrder { .. } => "mst_key_order",
            MstError::WrongLayer { .. } => "mst_wrong_layer",
            MstError::EmptyNode(_) => "mst_empty_node",
            MstError::BadKey { .. } => "mst_bad_key",
            MstError::TooDeep => "mst_too_deep",
            MstError::OpMismatch { .. } => "mst_op_mismatch",
        }
    }
}

/// A key's layer: the leading zero bits of its sha-256, counted in 2-bit
/// chunks (a fanout of 4).
pub fn key_height(key: &str) -> u32 {
    let digest = Sha256::digest(key.as_bytes());
    let mut zeros = 0;
    for byte in digest {
        if byte == 0 {
            zeros += 8;
        } else {
            zeros += byte.leading_zeros();
            break;
        }
    }
    zeros / 2
}

/// Bytes two keys share at their start.
pub fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Whether `key` is a valid MST key: `collection/rkey`, each part non-empty,
/// from the characters record keys allow, at most `MAX_KEY_LEN` bytes.
pub fn is_valid_key(key: &str) -> bool {
    let Some((collection, rkey)) = key.split_once('/') else {
        return false;
    };
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'~'))
    };
    key.len() <= MAX_KEY_LEN && part_ok(collection) && part_ok(rkey)
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: Cid,
    right: Option<Box<Node>>,
}

/// A node. A stub (`loaded == false`) is known only by its CID: the parts of
/// a partial tree a commit's CAR does not carry.
#[derive(Debug, Clone)]
struct Node {
    /// `None` once the node changed and must be re-encoded.
    cid: Option<Cid>,
    loaded: bool,
    left: Option<Box<Node>>,
    entries: Vec<Entry>,
}

impl Node {
    fn empty() -> Node {
        Node {
            cid: None,
            loaded: true,
            left: None,
            entries: Vec::new(),
        }
    }

    fn stub(cid: Cid) -> Box<Node> {
        Box::new(Node {
            cid: Some(cid),
            loaded: false,
            left: None,
            entries: Vec::new(),
        })
    }

    fn is_empty(&self) -> bool {
        self.loaded && self.entries.is_empty() && self.left.is_none()
    }

    /// The subtree before entry `i` (`i == len` is the one after the last entry).
    fn gap_mut(&mut self, i: usize) -> &mut Option<Box<Node>> {
        match i.checked_sub(1).and_then(|j| self.entries.get_mut(j)) {
            Some(e) => &mut e.right,
            None => &mut self.left,
        }
    }

    fn gap(&self, i: usize) -> Option<&Node> {
        match i.checked_sub(1).and_then(|j| self.entries.get(j)) {
            Some(e) => e.right.as_deref(),
            None => self.left.as_deref(),
        }
    }

    fn position(&self, key: &str) -> usize {
        self.entries.partition_point(|e| e.key.as_str() < key)
    }
}

/// A node block as decoded: the left link and (key, value, right link) entries.
struct Decoded {
    left: Option<Cid>,
    entries: Vec<(String, Cid, Option<Cid>)>,
}

fn bad(cid: &Cid, what: &'static str) -> MstError {
    MstError::BadNode { cid: *cid, what }
}

/// Decodes and checks one node block: hash, shape, canonical encoding, key
/// syntax, order within the node and that every key's height is `layer`
/// (`None`: the root, whose layer its first key gives). Returns the layer too.
fn decode_node(
    cid: &Cid,
    bytes: &[u8],
    layer: Option<u32>,
) -> Result<(Decoded, Option<u32>), MstError> {
    if !cid.verify(bytes) {
        return Err(MstError::BadHash(*cid));
    }
    let (value, used) = decode_prefix(bytes).map_err(|_| bad(cid, "not DAG-CBOR"))?;
    if used != bytes.len() {
        return Err(bad(cid, "bytes after the node"));
    }
    let Value::Map(map) = value else {
        return Err(bad(cid, "not a map"));
    };
    let left = match map.get("l") {
        Some(Value::Link(c)) => Some(*c),
        Some(Value::Null) => None,
        _ => return Err(bad(cid, "`l` is neither a link nor null")),
    };
    let Some(Value::List(items)) = map.get("e") else {
        return Err(bad(cid, "`e` is not a list"));
    };
    let mut entries: Vec<(String, Cid, Option<Cid>)> = Vec::with_capacity(items.len());
    let mut previous: Vec<u8> = Vec::new();
    for item in items {
        let (Some(Value::Integer(p)), Some(Value::Bytes(suffix)), Some(Value::Link(v))) =
            (item.get("p"), item.get("k"), item.get("v"))
        else {
            return Err(bad(cid, "an entry lacks `p`, `k` or `v`"));
        };
        let right = match item.get("t") {
            Some(Value::Link(c)) => Some(*c),
            Some(Value::Null) => None,
            _ => return Err(bad(cid, "an entry's `t` is neither a link nor null")),
        };
        let p = usize::try_from(*p).map_err(|_| bad(cid, "negative prefix length"))?;
        let prefix = previous
            .get(..p)
            .ok_or_else(|| bad(cid, "prefix longer than the previous key"))?;
        let mut key_bytes = Vec::with_capacity(p + suffix.len());
        key_bytes.extend_from_slice(prefix);
        key_bytes.extend_from_slice(suffix);
        let key = String::from_utf8(key_bytes.clone()).map_err(|_| bad(cid, "key not UTF-8"))?;
        if !is_valid_key(&key) {
            return Err(MstError::BadKey { key });
        }
        if let Some((prev, _, _)) = entries.last() {
            if key.as_str() <= prev.as_str() {
                return Err(MstError::KeyOrder {
                    key,
                    previous: prev.clone(),
                });
            }
        }
        previous = key_bytes;
        entries.push((key, *v, right));
    }
    let layer = match (layer, entries.first()) {
        (Some(l), _) => Some(l),
        (None, Some((k, _, _))) => Some(key_height(k)),
        (None, None) => None,
    };
    if let Some(layer) = layer {
        if layer > MAX_LAYER {
            return Err(MstError::TooDeep);
        }
        for (key, _, right) in &entries {
            let height = key_height(key);
            if height != layer {
                return Err(MstError::WrongLayer {
                    key: key.clone(),
                    height,
                    layer,
                });
            }
            if layer == 0 && right.is_some() {
                return Err(bad(cid, "a subtree below layer 0"));
            }
        }
        if layer == 0 && left.is_some() {
            return Err(bad(cid, "a subtree below layer 0"));
        }
    }
    let decoded = Decoded { left, entries };
    if encode_decoded(&decoded) != bytes {
        return Err(MstError::NonCanonical(*cid));
    }
    Ok((decoded, layer))
}

fn link_or_null(out: &mut Vec<u8>, link: Option<&Cid>) {
    match link {
        Some(cid) => {
            head(out, 6, 42);
            head(out, 2, 37);
            out.push(0x00);
            out.extend_from_slice(&cid.to_bytes());
        }
        None => out.push(0xf6),
    }
}

/// Canonical node encoding: `{e: [{k, p, t, v}], l}` (keys in canonical order).
fn encode_entries<'a>(
    left: Option<&Cid>,
    count: usize,
    entries: impl Iterator<Item = (&'a str, &'a Cid, Option<&'a Cid>)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + count * 96);
    head(&mut out, 5, 2);
    head(&mut out, 3, 1);
    out.push(b'e');
    head(&mut out, 4, count as u64);
    let mut previous: &[u8] = &[];
    for (key, value, right) in entries {
        let key = key.as_bytes();
        let p = common_prefix_len(previous, key);
        head(&mut out, 5, 4);
        head(&mut out, 3, 1);
        out.push(b'k');
        let suffix = key.get(p..).unwrap_or_default();
        head(&mut out, 2, suffix.len() as u64);
        out.extend_from_slice(suffix);
        head(&mut out, 3, 1);
        out.push(b'p');
        head(&mut out, 0, p as u64);
        head(&mut out, 3, 1);
        out.push(b't');
        link_or_null(&mut out, right);
        head(&mut out, 3, 1);
        out.push(b'v');
        link_or_null(&mut out, Some(value));
        previous = key;
    }
    head(&mut out, 3, 1);
    out.push(b'l');
    link_or_null(&mut out, left);
    out
}

fn encode_decoded(d: &Decoded) -> Vec<u8> {
    encode_entries(
        d.left.as_ref(),
        d.entries.len(),
        d.entries
            .iter()
            .map(|(k, v, r)| (k.as_str(), v, r.as_ref())),
    )
}

/// The tree: a root node and the layer it sits on.
#[derive(Debug, Clone)]
struct Tree {
    root: Box<Node>,
    layer: u32,
}

fn load(node: &mut Node, layer: u32, src: &dyn Blocks) -> Result<(), MstError> {
    if node.loaded {
        return Ok(());
    }
    // A node that is not loaded is a stub, which always has its CID.
    let Some(cid) = node.cid else {
        return Ok(());
    };
    let bytes = src.block(&cid).ok_or(MstError::MissingBlock(cid))?;
    let (decoded, _) = decode_node(&cid, bytes, Some(layer))?;
    if decoded.entries.is_empty() && decoded.left.is_none() {
        return Err(MstError::EmptyNode(cid));
    }
    node.left = decoded.left.map(Node::stub);
    node.entries = decoded
        .entries
        .into_iter()
        .map(|(key, value, right)| Entry {
            key,
            value,
            right: right.map(Node::stub),
        })
        .collect();
    node.loaded = true;
    Ok(())
}

fn below(layer: u32) -> Result<u32, MstError> {
    layer.checked_sub(1).ok_or(MstError::TooDeep)
}

/// A chain of nodes from `layer` down to `height`, holding only `key`.
fn chain(layer: u32, key: String, height: u32, value: Cid) -> Box<Node> {
    let mut node = Box::new(Node::empty());
    node.entries.push(Entry {
        key,
        value,
        right: None,
    });
    for _ in height..layer {
        let mut parent = Box::new(Node::empty());
        parent.left = Some(node);
        node = parent;
    }
    node
}

type Link = Option<Box<Node>>;

fn nonempty(node: Box<Node>) -> Link {
    if node.is_empty() {
        None
    } else {
        Some(node)
    }
}

/// Splits a subtree on `layer` around `key` (absent from it) into the parts
/// before and after it.
fn split(link: Link, layer: u32, key: &str, src: &dyn Blocks) -> Result<(Link, Link), MstError> {
    let Some(mut node) = link else {
        return Ok((None, None));
    };
    load(&mut node, layer, src)?;
    let i = node.position(key);
    let middle = node.gap_mut(i).take();
    let (ml, mr) = match middle {
        Some(m) => split(Some(m), below(layer)?, key, src)?,
        None => (None, None),
    };
    let right_entries = node.entries.split_off(i);
    node.cid = None;
    *node.gap_mut(i) = ml;
    let right = Box::new(Node {
        cid: None,
        loaded: true,
        left: mr,
        entries: right_entries,
    });
    Ok((nonempty(node), nonempty(right)))
}

/// Joins two adjacent subtrees on `layer` (all of `a`'s keys before `b`'s).
fn merge(a: Link, b: Link, layer: u32, src: &dyn Blocks) -> Result<Link, MstError> {
    let (mut a, mut b) = match (a, b) {
        (None, x) | (x, None) => return Ok(x),
        (Some(a), Some(b)) => (a, b),
    };
    load(&mut a, layer, src)?;
    load(&mut b, layer, src)?;
    let n = a.entries.len();
    let a_last = a.gap_mut(n).take();
    let b_first = b.left.take();
    let joined = match (a_last, b_first) {
        (None, None) => None,
        (x, y) => merge(x, y, below(layer)?, src)?,
    };
    *a.gap_mut(n) = joined;
    a.entries.append(&mut b.entries);
    a.cid = None;
    Ok(Some(a))
}

fn insert_at(
    node: &mut Node,
    layer: u32,
    key: String,
    height: u32,
    value: Cid,
    src: &dyn Blocks,
) -> Result<Option<Cid>, MstError> {
    load(node, layer, src)?;
    let i = node.position(&key);
    if let Some(e) = node.entries.get_mut(i).filter(|e| e.key == key) {
        let old = std::mem::replace(&mut e.value, value);
        if old != value {
            node.cid = None;
        }
        return Ok(Some(old));
    }
    node.cid = None;
    if height == layer {
        let gap = node.gap_mut(i).take();
        let (l, r) = match gap {
            Some(g) => split(Some(g), below(layer)?, &key, src)?,
            None => (None, None),
        };
        *node.gap_mut(i) = l;
        node.entries.insert(
            i,
            Entry {
                key,
                value,
                right: r,
            },
        );
        return Ok(None);
    }
    let child_layer = below(layer)?;
    match node.gap_mut(i) {
        Some(child) => insert_at(child, child_layer, key, height, value, src),
        gap @ None => {
            *gap = Some(chain(child_layer, key, height, value));
            Ok(None)
        }
    }
}

fn remove_at(
    node: &mut Node,
    layer: u32,
    key: &str,
    height: u32,
    src: &dyn Blocks,
) -> Result<Option<Cid>, MstError> {
    load(node, layer, src)?;
    let i = node.position(key);
    if height == layer {
        if node.entries.get(i).is_none_or(|e| e.key != key) {
            return Ok(None);
        }
        let entry = node.entries.remove(i);
        let before = node.gap_mut(i).take();
        let joined = match (before, entry.right) {
            (None, None) => None,
            (x, y) => merge(x, y, below(layer)?, src)?,
        };
        *node.gap_mut(i) = joined;
        node.cid = None;
        return Ok(Some(entry.value));
    }
    let Some(child) = node.gap_mut(i) else {
        return Ok(None);
    };
    let removed = remove_at(child, below(layer)?, key, height, src)?;
    if removed.is_some() {
        if child.is_empty() {
            *node.gap_mut(i) = None;
        }
        node.cid = None;
    }
    Ok(removed)
}

fn get_at<'t>(
    node: &'t mut Node,
    layer: u32,
    key: &str,
    height: u32,
    src: &dyn Blocks,
) -> Result<Option<&'t Cid>, MstError> {
    load(node, layer, src)?;
    let i = node.position(key);
    if height == layer {
        return Ok(node
            .entries
            .get(i)
            .filter(|e| e.key == key)
            .map(|e| &e.value));
    }
    match node.gap_mut(i) {
        Some(child) => get_at(child, below(layer)?, key, height, src),
        None => Ok(None),
    }
}

fn node_cid(node: &mut Node) -> Cid {
    if let Some(cid) = node.cid {
        return cid;
    }
    let bytes = encode_node(node);
    let cid = Cid::for_dag_cbor(&bytes);
    node.cid = Some(cid);
    cid
}

/// Encodes a loaded node, computing its children's CIDs first.
fn encode_node(node: &mut Node) -> Vec<u8> {
    let left = node.left.as_deref_mut().map(node_cid);
    let rights: Vec<Option<Cid>> = node
        .entries
        .iter_mut()
        .map(|e| e.right.as_deref_mut().map(node_cid))
        .collect();
    encode_entries(
        left.as_ref(),
        node.entries.len(),
        node.entries
            .iter()
            .zip(&rights)
            .map(|(e, r)| (e.key.as_str(), &e.value, r.as_ref())),
    )
}

/// Encodes a node whose CIDs are all computed (after `node_cid` on the root).
fn encode_clean(node: &Node) -> Vec<u8> {
    encode_entries(
        node.left.as_ref().and_then(|n| n.cid).as_ref(),
        node.entries.len(),
        node.entries.iter().map(|e| {
            (
                e.key.as_str(),
                &e.value,
                e.right.as_ref().and_then(|n| n.cid.as_ref()),
            )
        }),
    )
}

fn block_of(node: &Node) -> Option<(Cid, Vec<u8>)> {
    match (node.loaded, node.cid) {
        (true, Some(cid)) => Some((cid, encode_clean(node))),
        _ => None,
    }
}

fn collect_blocks(node: &Node, out: &mut Vec<(Cid, Vec<u8>)>) {
    out.extend(block_of(node));
    if let Some(left) = &node.left {
        collect_blocks(left, out);
    }
    for e in &node.entries {
        if let Some(right) = &e.right {
            collect_blocks(right, out);
        }
    }
}

/// The nodes of a subtree's edge: its first (`rightmost == false`) or last
/// gap, all the way down.
fn spine(mut link: Option<&Node>, rightmost: bool, out: &mut Vec<(Cid, Vec<u8>)>) {
    while let Some(node) = link {
        out.extend(block_of(node));
        link = if rightmost {
            node.gap(node.entries.len())
        } else {
            node.left.as_deref()
        };
    }
}

/// The nodes someone holding only them needs to insert or remove `key`:
/// the path to where it is or would be and, when it is there, the inner
/// edges of its neighbouring subtrees (which a removal merges).
fn covering_proof(root: &Node, key: &str, out: &mut Vec<(Cid, Vec<u8>)>) {
    let mut link = Some(root);
    while let Some(node) = link {
        out.extend(block_of(node));
        let i = node.position(key);
        if let Some(e) = node.entries.get(i).filter(|e| e.key == key) {
            spine(node.gap(i), true, out);
            spine(e.right.as_deref(), false, out);
            return;
        }
        link = node.gap(i);
    }
}

impl Tree {
    fn empty() -> Tree {
        Tree {
            root: Box::new(Node::empty()),
            layer: 0,
        }
    }

    fn insert(
        &mut self,
        key: String,
        value: Cid,
        src: &dyn Blocks,
    ) -> Result<Option<Cid>, MstError> {
        let height = key_height(&key);
        if self.root.is_empty() {
            self.layer = height;
        }
        while self.layer < height {
            let old = std::mem::replace(&mut self.root, Box::new(Node::empty()));
            self.root.left = nonempty(old);
            self.layer += 1;
        }
        insert_at(&mut self.root, self.layer, key, height, value, src)
    }

    fn remove(&mut self, key: &str, src: &dyn Blocks) -> Result<Option<Cid>, MstError> {
        let height = key_height(key);
        if height > self.layer {
            return Ok(None);
        }
        let removed = remove_at(&mut self.root, self.layer, key, height, src)?;
        // A root without keys of its own hands its place to its only subtree.
        while self.root.loaded && self.root.entries.is_empty() {
            let Some(mut child) = self.root.left.take() else {
                self.layer = 0;
                break;
            };
            self.layer = below(self.layer)?;
            load(&mut child, self.layer, src)?;
            self.root = child;
        }
        Ok(removed)
    }

    fn get(&mut self, key: &str, src: &dyn Blocks) -> Result<Option<&Cid>, MstError> {
        let height = key_height(key);
        if height > self.layer {
            return Ok(None);
        }
        get_at(&mut self.root, self.layer, key, height, src)
    }
}

/// Only a partial tree meets a missing block; a fully loaded one cannot.
fn full<T>(result: Result<T, MstError>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => unreachable!("a fully loaded MST met {e}"),
    }
}

/// A writable, fully in-memory MST.
#[derive(Debug, Clone)]
pub struct Mst {
    tree: Tree,
    len: usize,
}

impl Default for Mst {
    fn default() -> Self {
        Mst::new()
    }
}

impl Mst {
    pub fn new() -> Mst {
        Mst {
            tree: Tree::empty(),
            len: 0,
        }
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: String, value: Cid) -> Option<Cid> {
        let old = full(self.tree.insert(key, value, &NoBlocks));
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, key: &str) -> Option<Cid> {
        let old = full(self.tree.remove(key, &NoBlocks));
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub fn get(&self, key: &str) -> Option<&Cid> {
        let height = key_height(key);
        if height > self.tree.layer {
            return None;
        }
        let (mut node, mut layer) = (&*self.tree.root, self.tree.layer);
        loop {
            let i = node.position(key);
            if layer == height {
                return node
                    .entries
                    .get(i)
                    .filter(|e| e.key == key)
                    .map(|e| &e.value);
            }
            node = node.gap(i)?;
            layer -= 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root node's CID (for an empty tree, the empty node's).
    pub fn root(&mut self) -> Cid {
        node_cid(&mut self.tree.root)
    }

    /// Every node block, root first.
    pub fn blocks(&mut self) -> Vec<(Cid, Vec<u8>)> {
        self.root();
        let mut out = Vec::new();
        collect_blocks(&self.tree.root, &mut out);
        out
    }

    /// The node blocks a commit changing `keys` must carry (sync 1.1): for
    /// each key, the path to it and, where it exists, the edges of its
    /// neighbouring subtrees, so the commit's ops can be inverted from these
    /// blocks alone. Every node created since the previous state lies on one
    /// of these paths, so this is also the commit's set of new nodes.
    pub fn commit_blocks<'k>(
        &mut self,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Vec<(Cid, Vec<u8>)> {
        self.root();
        let mut out = Vec::new();
        for key in keys {
            covering_proof(&self.tree.root, key, &mut out);
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|(cid, _)| seen.insert(*cid));
        out
    }

    /// Every `(key, value)` in key order.
    pub fn entries(&self) -> Vec<(&str, &Cid)> {
        fn visit<'a>(node: &'a Node, out: &mut Vec<(&'a str, &'a Cid)>) {
            if let Some(left) = &node.left {
                visit(left, out);
            }
            for e in &node.entries {
                out.push((&e.key, &e.value));
                if let Some(right) = &e.right {
                    visit(right, out);
                }
            }
        }
        let mut out = Vec::with_capacity(self.len);
        visit(&self.tree.root, &mut out);
        out
    }
}

/// Reads the whole tree under `root`, verifying as it goes: every node
/// present and hashing to its CID (checked here, so any block source is
/// safe), valid canonical node encoding, valid keys strictly increasing
/// across the whole walk, each key on the layer its height gives, no empty
/// node below the root, no root without keys of its own but a subtree, and
/// at most `MAX_LAYER` layers. Returns `(key, value)` in key order.
pub fn walk(root: &Cid, blocks: &dyn Blocks) -> Result<Vec<(String, Cid)>, MstError> {
    let bytes = blocks.block(root).ok_or(MstError::MissingBlock(*root))?;
    let (decoded, layer) = decode_node(root, bytes, None)?;
    let mut out = Vec::new();
    match layer {
        None if decoded.left.is_some() => Err(bad(root, "root holds a subtree but no keys")),
        None => Ok(out),
        Some(layer) => {
            walk_node(decoded, layer, blocks, &mut out)?;
            Ok(out)
        }
    }
}

fn walk_node(
    node: Decoded,
    layer: u32,
    blocks: &dyn Blocks,
    out: &mut Vec<(String, Cid)>,
) -> Result<(), MstError> {
    let visit_child = |cid: Option<Cid>, out: &mut Vec<(String, Cid)>| -> Result<(), MstError> {
        let Some(cid) = cid else { return Ok(()) };
        let child_layer = below(layer)?;
        let bytes = blocks.block(&cid).ok_or(MstError::MissingBlock(cid))?;
        let (child, _) = decode_node(&cid, bytes, Some(child_layer))?;
        if child.entries.is_empty() && child.left.is_none() {
            return Err(MstError::EmptyNode(cid));
        }
        walk_node(child, child_layer, blocks, out)
    };
    visit_child(node.left, out)?;
    for (key, value, right) in node.entries {
        if let Some((previous, _)) = out.last() {
            if key.as_str() <= previous.as_str() {
                return Err(MstError::KeyOrder {
                    key,
                    previous: previous.clone(),
                });
            }
        }
        out.push((key, value));
        visit_child(right, out)?;
    }
    Ok(())
}

/// Undoes `ops` (a commit's, applied in order) on the tree under `root`,
/// loading nodes from `blocks` as needed (a commit's CAR: the new nodes and
/// the proofs sync 1.1 requires), and returns the root before the commit,
/// for comparison with its `prevData`. Each op must match the new tree
/// (a create's or update's key holds its CID, a delete's key is absent),
/// and updates and deletes must name their previous CID.
pub fn invert_ops(root: &Cid, ops: &[RepoOp], blocks: &dyn Blocks) -> Result<Cid, MstError> {
    let bytes = blocks.block(root).ok_or(MstError::MissingBlock(*root))?;
    let (decoded, layer) = decode_node(root, bytes, None)?;
    if layer.is_none() && decoded.left.is_some() {
        return Err(bad(root, "root holds a subtree but no keys"));
    }
    let mut tree = Tree {
        root: Node::stub(*root),
        layer: layer.unwrap_or(0),
    };
    load(&mut tree.root, tree.layer, blocks).or_else(|e| match e {
        MstError::EmptyNode(_) => {
            *tree.root = Node::empty();
            Ok(())
        }
        e => Err(e),
    })?;
    for op in ops.iter().rev() {
        let key = &op.path;
        if !is_valid_key(key) {
            return Err(MstError::BadKey { key: key.clone() });
        }
        let mismatch = |what| MstError::OpMismatch {
            key: key.clone(),
            what,
        };
        let current = tree.get(key, blocks)?.copied();
        match op.action {
            OpAction::Create => {
                if current.is_none() || current != op.cid {
                    return Err(mismatch("a create's key does not hold its CID"));
                }
                tree.remove(key, blocks)?;
            }
            OpAction::Update => {
                if current.is_none() || current != op.cid {
                    return Err(mismatch("an update's key does not hold its CID"));
                }
                let prev = op
                    .prev
                    .ok_or_else(|| mismatch("an update without `prev`"))?;
                tree.insert(key.clone(), prev, blocks)?;
            }
            OpAction::Delete => {
                if current.is_some() {
                    return Err(mismatch("a deleted key is still in the tree"));
                }
                let prev = op.prev.ok_or_else(|| mismatch("a delete without `prev`"))?;
                tree.insert(key.clone(), prev, blocks)?;
            }
        }
    }
    Ok(node_cid(&mut tree.root))
}
