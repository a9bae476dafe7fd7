//! Merkle tree hashing and proofs of RFC 9162 (Certificate Transparency v2), section 2.1.
//!
//! * leaf hash `SHA-256(0x00 || data)`, interior node `SHA-256(0x01 || left || right)`;
//! * the tree over `n` leaves splits at the largest power of two smaller than `n`;
//! * [`Frontier`]: the right edge of the tree, O(log n) memory, for incremental appends;
//! * inclusion and consistency proofs, generated from any [`Subtrees`] source and verified
//!   with the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.

use aws_lc_rs::digest;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

fn sha256_parts(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    sha256_parts(&[])
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256_parts(&[&[0u8], data])
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    sha256_parts(&[&buf])
}

/// The largest power of two strictly smaller than `n` (n >= 2).
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The tree hash of `leaves`, computed recursively from the definition (the reference the
/// incremental and stored forms are tested against).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The right edge of a tree: the hashes of its maximal perfect subtrees, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier of a tree of `size` leaves from the hashes of its maximal perfect
    /// subtrees, largest first (one per bit set in `size`); `None` if their number is wrong.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() as u32 == size.count_ones()).then_some(Frontier { size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash: O(log n), one node hash amortized.
    pub fn push(&mut self, leaf: Hash) {
        self.push_capturing(leaf, |_, _| {});
    }

    /// Appends a leaf hash and reports every perfect subtree the append completes, as
    /// `(height, hash)`: the subtree of `2^height` leaves ending with this leaf. Each aligned
    /// perfect subtree of the tree is reported exactly once, in order, which lets a caller keep
    /// the levels it needs for proofs without hashing anything twice.
    pub fn push_capturing(&mut self, leaf: Hash, mut completed: impl FnMut(u32, &Hash)) {
        let mut h = leaf;
        let mut s = self.size;
        let mut height = 0;
        while s & 1 == 1 {
            if let Some(left) = self.nodes.pop() {
                h = node_hash(&left, &h);
            }
            height += 1;
            completed(height, &h);
            s >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The tree hash.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, n| node_hash(n, &acc)),
        }
    }
}

/// A source of subtree hashes `MTH(D[start:end])` over one tree.
pub trait Subtrees {
    type Error;
    /// The hash of the subtree over leaves `start..end` (end > start). Callers only ask for
    /// subtrees that appear in RFC 9162 proofs.
    fn subtree(&mut self, start: u64, end: u64) -> Result<Hash, Self::Error>;
}

/// Subtree hashes computed from a slice of leaf hashes (for tests and small trees).
#[derive(Debug)]
pub struct LeafSlice<'a>(pub &'a [Hash]);

impl Subtrees for LeafSlice<'_> {
    type Error = std::convert::Infallible;
    fn subtree(&mut self, start: u64, end: u64) -> Result<Hash, Self::Error> {
        Ok(root(&self.0[start as usize..end as usize]))
    }
}

/// Why a proof cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    OutOfRange { index: u64, size: u64 },
    #[error("tree size {first} is larger than {second}")]
    Order { first: u64, second: u64 },
    #[error(transparent)]
    Source(E),
}

/// The inclusion proof (audit path) of leaf `index` in the tree of `size` leaves, leaf side
/// first: RFC 9162 §2.1.3.1.
pub fn inclusion_proof<S: Subtrees>(
    src: &mut S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out).map_err(ProofError::Source)?;
    Ok(out)
}

fn path<S: Subtrees>(
    src: &mut S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(src.subtree(start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(src.subtree(start, start + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `first` and `second` leaves: RFC 9162
/// §2.1.4.1. Empty when `first` is 0 or equal to `second`.
pub fn consistency_proof<S: Subtrees>(
    src: &mut S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if first > second {
        return Err(ProofError::Order { first, second });
    }
    let mut out = Vec::new();
    if first == 0 || first == second {
        return Ok(out);
    }
    subproof(src, first, 0, second, true, &mut out).map_err(ProofError::Source)?;
    Ok(out)
}

fn subproof<S: Subtrees>(
    src: &mut S,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(src.subtree(start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, start, start + k, complete, out)?;
        out.push(src.subtree(start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(src.subtree(start, start + k)?);
    }
    Ok(())
}

/// Verifies an inclusion proof: RFC 9162 §2.1.3.2.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Verifies a consistency proof: RFC 9162 §2.1.4.2 (plus its trivial cases: an empty proof
/// between equal sizes with equal roots, and from the empty tree).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty() && *first_root == empty_root();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}
