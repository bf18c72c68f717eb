/* consortia.execution._jmt_native: what its two C files share (the tree's node layout, the
 * record encoding, the writer's attribute names). _jmt_native.c holds the module and the
 * per-key write path; _jmt_update.c the split of a block's writes below a node. Every symbol
 * here is hidden from other shared objects (built with -fvisibility=hidden).
 *
 * Must never touch the disk, a clock or randomness.
 */
#ifndef CONSORTIA_JMT_NATIVE_H
#define CONSORTIA_JMT_NATIVE_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The layout of a branch tuple (jmt_nodes.Branch): hashed, bitmap, leaves, hash, version,
 * then the versions of the 16 children. */
#define RADIX 16
#define HASH_SIZE 32
#define HASHED 0
#define BITMAP 1
#define LEAVES 2
#define HASH 3
#define VERSION 4
#define CHILD 5
#define BRANCH_SIZE (CHILD + RADIX)
#define INTERNAL_TAG 1
#define LEAF_TAG 2
#define BITMAP_MAX 0xFFFF
#define DOMAIN_MAX 64
#define PATH_LENGTH (2 * HASH_SIZE)

/* A non-negative int that fits 64 bits, or -1 with an exception set. */
int as_u64(PyObject *object, unsigned long long *out);
/* An internal node's record from its 16 child hashes (32 bytes each, `hashes`), its bitmaps
 * and its children's versions: msgpack [INTERNAL_TAG, bitmap, leaves, [versions of present
 * children], bin(their hashes)], as msgspec writes it. */
PyObject *encode_internal(const unsigned char *hashes, unsigned long long bitmap,
                          unsigned long long leaves, const unsigned long long *versions);
/* A leaf record's encoding: msgpack [LEAF_TAG, bin key, bin value]. */
PyObject *encode_leaf(PyObject *key, PyObject *value);
/* A NodeKey (`type`, a tuple subclass) of `version` and `path`. */
PyObject *node_key(PyTypeObject *type, PyObject *version, PyObject *path);
/* nodes[NodeKey(version, path)] = data; steals nothing. */
int put_node(PyObject *nodes, PyTypeObject *type, PyObject *version, PyObject *path,
             PyObject *data);
/* A hex digit's value, or -1. */
long hex_value(unsigned char digit);
/* The hash of child `nibble` of `node` (a checked branch), as a new bytes object. */
PyObject *child_digest(PyObject *node, long nibble);
/* `node` is a branch whose first field holds 16 hashes; -1 with TypeError otherwise. */
int check_branch(PyObject *node);
/* The branch at `child_path` that `node` names as its child `nibble`: from `cache` when it is
 * the version named (counted in `*hits`), else read by the writer's `_internal`. New ref. */
PyObject *child_branch(PyObject *writer, PyObject *cache, PyObject *node, long nibble,
                       PyObject *child_path, Py_ssize_t *hits);
/* writer.cache_hits += hits; -1 with an exception set if that fails. */
int add_cache_hits(PyObject *writer, Py_ssize_t hits);
PyObject *update_one(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *update(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* The tree's NodeKey type (set_node_key), and the writer's attribute names (interned). */
extern PyObject *node_key_type;
extern PyObject *s_cache, *s_stale, *s_nodes, *s_internal, *s_replace_leaf, *s_cache_hits,
    *s_remember_root, *s_evict, *s_cache_max, *s_batch, *s_empty, *s_build, *s_lift,
    *s_remember;

#endif
