/* consortia.execution._jmt_native: the state tree's per-node rewrite in C, for the SHA-256
 * suite (`jmt_write.TreeWriter` uses it when the suite's hash is hashlib's SHA-256).
 *
 * Owns two pure functions over the tree's in-memory forms (see jmt_nodes.py: `Branch`, the
 * record encoding; jmt_write.py: `Item`), each the exact equivalent of Python code kept
 * beside it as the reference (tests/unit/test_jmt_native.py holds them to it):
 *
 *   rewrite(node, nibble, digest, version, leaf) -> (branch, hash, encoding)
 *       The internal node `node` with child `nibble` replaced by a child hashing to `digest`,
 *       written at `version` (a leaf if `leaf`, else an internal node); its hash (SHA-256 of
 *       its first field) and its record's encoding (msgpack, as msgspec writes
 *       (INTERNAL_TAG, bitmap, leaves, versions of present children, their hashes)).
 *   rewrite_up(passed, top, version, nodes, stale, cache, NodeKey) -> (hash, root or None)
 *       `TreeWriter._rewrite_up`'s loop: each node passed on a key's path, lowest first,
 *       rewritten over the subtree below (`top`: a leaf's Item or an internal node's hash), the
 *       old one listed stale and uncached, the new one (and the leaf) put in `nodes`, cached
 *       unless it is the root; the highest's hash, and the new root when the path reached it.
 *   update_one(writer, version, path, node, item) -> hash, or False (unchanged)
 *       `TreeWriter._update_one` for the writer `writer`: one key set below `node`, down its
 *       path through the writer's cache (calling the writer's `_internal` on a miss and its
 *       `_replace_leaf` where the key's place holds a leaf not known to be the key's), then
 *       `rewrite_up`, the new root given to `_remember_root` and the cache kept in bounds.
 *   update(writer, version, path, node, lo, hi) -> `TreeWriter._update`, in _jmt_update.c:
 *       a block's writes below `node` split by nibble, down to `update_one` for each key alone.
 *   leaf_record(key, value) -> the leaf record's encoding (msgpack [LEAF_TAG, key, value]).
 *   keys_bytes(keys) -> [key.to_bytes() for key in keys] (jmt_nodes.NodeKey), for the store.
 *   item(key, value, known) -> (path, leaf_hash, key, value, known)
 *       A write of `key` to `value` (bytes): its path (the key hash in hex) and its leaf hash,
 *       with the tree's domain tags given once to `domains`.
 *
 * Must never touch the disk, a clock, randomness or any state but the domain tags it is
 * given: the same inputs give the same outputs, on every node.
 */
#include "_jmt_native.h"
/* SHA256_Init and its kin: deprecated in OpenSSL 3 for EVP, and the fastest call still. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <string.h>

static unsigned char key_domain[DOMAIN_MAX], value_domain[DOMAIN_MAX], leaf_domain[DOMAIN_MAX];
static Py_ssize_t key_domain_size = -1, value_domain_size, leaf_domain_size;

/* The size of msgpack's encoding of the unsigned integer `value` (msgspec's choice). */
static Py_ssize_t uint_size(unsigned long long value) {
    if (value < 128) return 1;
    if (value <= 0xFF) return 2;
    if (value <= 0xFFFF) return 3;
    if (value <= 0xFFFFFFFFULL) return 5;
    return 9;
}

static unsigned char *put_uint(unsigned char *out, unsigned long long value) {
    if (value < 128) {
        *out++ = (unsigned char)value;
    } else if (value <= 0xFF) {
        *out++ = 0xcc;
        *out++ = (unsigned char)value;
    } else if (value <= 0xFFFF) {
        *out++ = 0xcd;
        *out++ = (unsigned char)(value >> 8);
        *out++ = (unsigned char)value;
    } else if (value <= 0xFFFFFFFFULL) {
        *out++ = 0xce;
        for (int shift = 24; shift >= 0; shift -= 8) *out++ = (unsigned char)(value >> shift);
    } else {
        *out++ = 0xcf;
        for (int shift = 56; shift >= 0; shift -= 8) *out++ = (unsigned char)(value >> shift);
    }
    return out;
}

/* A non-negative int that fits 64 bits, or -1 with an exception set. */
int as_u64(PyObject *object, unsigned long long *out) {
    if (!PyLong_CheckExact(object)) {
        PyErr_SetString(PyExc_TypeError, "expected an int");
        return -1;
    }
    *out = PyLong_AsUnsignedLongLong(object);
    if (*out == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    return 0;
}

PyObject *encode_internal(const unsigned char *hashes, unsigned long long bitmap,
                          unsigned long long leaves, const unsigned long long *versions) {
    int present = __builtin_popcountll(bitmap);
    Py_ssize_t length = 1 + 1 + uint_size(bitmap) + uint_size(leaves);
    length += present <= 15 ? 1 : 3;
    for (int n = 0; n < RADIX; n++)
        if (bitmap >> n & 1) length += uint_size(versions[n]);
    Py_ssize_t packed = (Py_ssize_t)present * HASH_SIZE;
    length += (packed <= 0xFF ? 2 : 3) + packed;
    PyObject *data = PyBytes_FromStringAndSize(NULL, length);
    if (data == NULL) return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data);
    *out++ = 0x95;
    *out++ = INTERNAL_TAG;
    out = put_uint(out, bitmap);
    out = put_uint(out, leaves);
    if (present <= 15) {
        *out++ = (unsigned char)(0x90 | present);
    } else {
        *out++ = 0xdc;
        *out++ = 0;
        *out++ = (unsigned char)present;
    }
    for (int n = 0; n < RADIX; n++)
        if (bitmap >> n & 1) out = put_uint(out, versions[n]);
    if (packed <= 0xFF) {
        *out++ = 0xc4;
        *out++ = (unsigned char)packed;
    } else {
        *out++ = 0xc5;
        *out++ = (unsigned char)(packed >> 8);
        *out++ = (unsigned char)packed;
    }
    for (int n = 0; n < RADIX; n++) {
        if (bitmap >> n & 1) {
            memcpy(out, hashes + n * HASH_SIZE, HASH_SIZE);
            out += HASH_SIZE;
        }
    }
    assert(out == (unsigned char *)PyBytes_AS_STRING(data) + length);
    return data;
}

/* `rewrite` for C callers: the new branch, its hash and its encoding into the three outputs
 * (new references), or -1 with an exception set. */
static int rewrite_node(PyObject *node, long nibble, PyObject *digest, PyObject *version, int leaf,
                        PyObject **branch_out, PyObject **hash_out, PyObject **data_out) {
    if (!PyTuple_CheckExact(node) || PyTuple_GET_SIZE(node) != BRANCH_SIZE) {
        PyErr_SetString(PyExc_TypeError, "node: a branch tuple");
        return -1;
    }
    if (nibble < 0 || nibble >= RADIX) {
        PyErr_SetString(PyExc_ValueError, "nibble out of range");
        return -1;
    }
    PyObject *hashed = PyTuple_GET_ITEM(node, HASHED);
    if (!PyBytes_CheckExact(hashed) || PyBytes_GET_SIZE(hashed) < RADIX * HASH_SIZE ||
        PyBytes_GET_SIZE(hashed) > RADIX * HASH_SIZE + DOMAIN_MAX) {
        PyErr_SetString(PyExc_TypeError, "node: its first field is not a branch's hashes");
        return -1;
    }
    if (!PyBytes_CheckExact(digest) || PyBytes_GET_SIZE(digest) != HASH_SIZE) {
        PyErr_SetString(PyExc_TypeError, "digest: 32 bytes");
        return -1;
    }
    unsigned long long bitmap, leaves, written, child;
    if (as_u64(PyTuple_GET_ITEM(node, BITMAP), &bitmap) < 0 ||
        as_u64(PyTuple_GET_ITEM(node, LEAVES), &leaves) < 0 || as_u64(version, &written) < 0)
        return -1;
    if (bitmap > BITMAP_MAX || leaves > BITMAP_MAX) {
        PyErr_SetString(PyExc_ValueError, "node: a bitmap out of range");
        return -1;
    }
    unsigned long long bit = 1ULL << nibble;
    bitmap |= bit;
    leaves = leaf ? leaves | bit : leaves & ~bit;

    Py_ssize_t size = PyBytes_GET_SIZE(hashed);
    Py_ssize_t domain = size - RADIX * HASH_SIZE;
    PyObject *new_hashed = PyBytes_FromStringAndSize(NULL, size);
    if (new_hashed == NULL) return -1;
    unsigned char *buffer = (unsigned char *)PyBytes_AS_STRING(new_hashed);
    memcpy(buffer, PyBytes_AS_STRING(hashed), (size_t)size);
    memcpy(buffer + domain + nibble * HASH_SIZE, PyBytes_AS_STRING(digest), HASH_SIZE);
    unsigned char hash_buffer[HASH_SIZE];
    SHA256(buffer, (size_t)size, hash_buffer);

    unsigned long long versions[RADIX];
    for (int n = 0; n < RADIX; n++) {
        if (n == nibble) {
            versions[n] = written;
        } else {
            if (as_u64(PyTuple_GET_ITEM(node, CHILD + n), &child) < 0) {
                Py_DECREF(new_hashed);
                return -1;
            }
            versions[n] = child;
        }
    }
    PyObject *data = encode_internal(buffer + domain, bitmap, leaves, versions);
    if (data == NULL) {
        Py_DECREF(new_hashed);
        return -1;
    }

    PyObject *branch = PyTuple_New(BRANCH_SIZE);
    PyObject *hash = PyBytes_FromStringAndSize((const char *)hash_buffer, HASH_SIZE);
    PyObject *bitmap_object = PyLong_FromUnsignedLongLong(bitmap);
    PyObject *leaves_object = PyLong_FromUnsignedLongLong(leaves);
    if (branch == NULL || hash == NULL || bitmap_object == NULL || leaves_object == NULL) {
        Py_XDECREF(branch);
        Py_XDECREF(hash);
        Py_XDECREF(bitmap_object);
        Py_XDECREF(leaves_object);
        Py_DECREF(new_hashed);
        Py_DECREF(data);
        return -1;
    }
    PyTuple_SET_ITEM(branch, HASHED, new_hashed);
    PyTuple_SET_ITEM(branch, BITMAP, bitmap_object);
    PyTuple_SET_ITEM(branch, LEAVES, leaves_object);
    Py_INCREF(hash);
    PyTuple_SET_ITEM(branch, HASH, hash);
    Py_INCREF(version);
    PyTuple_SET_ITEM(branch, VERSION, version);
    for (int n = 0; n < RADIX; n++) {
        PyObject *item = n == nibble ? version : PyTuple_GET_ITEM(node, CHILD + n);
        Py_INCREF(item);
        PyTuple_SET_ITEM(branch, CHILD + n, item);
    }
    *branch_out = branch;
    *hash_out = hash;
    *data_out = data;
    return 0;
}

static PyObject *rewrite(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "rewrite(node, nibble, digest, version, leaf)");
        return NULL;
    }
    long nibble = PyLong_AsLong(args[1]);
    if (nibble == -1 && PyErr_Occurred()) return NULL;
    int leaf = PyObject_IsTrue(args[4]);
    if (leaf < 0) return NULL;
    PyObject *branch, *hash, *data;
    if (rewrite_node(args[0], nibble, args[2], args[3], leaf, &branch, &hash, &data) < 0)
        return NULL;
    PyObject *result = PyTuple_New(3);
    if (result == NULL) {
        Py_DECREF(branch);
        Py_DECREF(hash);
        Py_DECREF(data);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, branch);
    PyTuple_SET_ITEM(result, 1, hash);
    PyTuple_SET_ITEM(result, 2, data);
    return result;
}

/* msgpack's bin header for `size` bytes (msgspec's choice), into `out`; its length. */
static Py_ssize_t bin_header(unsigned char *out, Py_ssize_t size) {
    if (size <= 0xFF) {
        out[0] = 0xc4;
        out[1] = (unsigned char)size;
        return 2;
    }
    if (size <= 0xFFFF) {
        out[0] = 0xc5;
        out[1] = (unsigned char)(size >> 8);
        out[2] = (unsigned char)size;
        return 3;
    }
    out[0] = 0xc6;
    for (int n = 0; n < 4; n++) out[1 + n] = (unsigned char)((unsigned long long)size >> (24 - 8 * n));
    return 5;
}

/* A leaf record's encoding: msgpack [LEAF_TAG, bin key, bin value]. */
PyObject *encode_leaf(PyObject *key, PyObject *value) {
    if (!PyBytes_CheckExact(key) || !PyBytes_CheckExact(value)) {
        PyErr_SetString(PyExc_TypeError, "a leaf's key and value: bytes");
        return NULL;
    }
    Py_ssize_t key_size = PyBytes_GET_SIZE(key), value_size = PyBytes_GET_SIZE(value);
    if (key_size > 0xFFFFFFFFLL || value_size > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_ValueError, "a leaf over 4 GiB");
        return NULL;
    }
    unsigned char key_head[5], value_head[5];
    Py_ssize_t key_head_size = bin_header(key_head, key_size);
    Py_ssize_t value_head_size = bin_header(value_head, value_size);
    PyObject *data =
        PyBytes_FromStringAndSize(NULL, 2 + key_head_size + key_size + value_head_size + value_size);
    if (data == NULL) return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data);
    *out++ = 0x93;
    *out++ = LEAF_TAG;
    memcpy(out, key_head, (size_t)key_head_size);
    out += key_head_size;
    memcpy(out, PyBytes_AS_STRING(key), (size_t)key_size);
    out += key_size;
    memcpy(out, value_head, (size_t)value_head_size);
    out += value_head_size;
    memcpy(out, PyBytes_AS_STRING(value), (size_t)value_size);
    return data;
}

static PyObject *leaf_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "leaf_record(key, value)");
        return NULL;
    }
    return encode_leaf(args[0], args[1]);
}

/* A `NodeKey` (a tuple subclass, `type`) of `version` and `path`, as tuple.__new__ makes one. */
PyObject *node_key(PyTypeObject *type, PyObject *version, PyObject *path) {
    PyObject *key = type->tp_alloc(type, 2);
    if (key == NULL) return NULL;
    Py_INCREF(version);
    PyTuple_SET_ITEM(key, 0, version);
    Py_INCREF(path);
    PyTuple_SET_ITEM(key, 1, path);
    return key;
}

/* nodes[NodeKey(version, path)] = data; steals nothing. */
int put_node(PyObject *nodes, PyTypeObject *type, PyObject *version, PyObject *path,
                    PyObject *data) {
    PyObject *key = node_key(type, version, path);
    if (key == NULL) return -1;
    int result = PyDict_SetItem(nodes, key, data);
    Py_DECREF(key);
    return result;
}

static PyObject *rewrite_up(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    static const char hex[] = "0123456789abcdef";
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "rewrite_up(passed, top, version, nodes, stale, cache, node_key_type)");
        return NULL;
    }
    PyObject *passed = args[0], *top = args[1], *version = args[2], *nodes = args[3];
    PyObject *stale = args[4], *cache = args[5];
    if (!PyList_CheckExact(passed) || !PyDict_CheckExact(nodes) || !PyList_CheckExact(stale) ||
        !PyDict_CheckExact(cache) || !PyType_Check(args[6]) ||
        !PyType_IsSubtype((PyTypeObject *)args[6], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "rewrite_up: bad argument types");
        return NULL;
    }
    PyTypeObject *key_type = (PyTypeObject *)args[6];
    /* The leaf to place under the lowest node (an Item), if `top` is one. */
    PyObject *leaf = PyTuple_CheckExact(top) ? top : NULL;
    if (leaf == NULL && !PyBytes_CheckExact(top)) {
        PyErr_SetString(PyExc_TypeError, "top: an item or a hash");
        return NULL;
    }
    if (leaf != NULL && PyTuple_GET_SIZE(leaf) != 5) {
        PyErr_SetString(PyExc_TypeError, "top: an item of 5");
        return NULL;
    }
    /* A snapshot: `passed` (and the steps it owns) may change while Python code runs below
     * (an __index__, a dict key's __eq__), and `node`/`path` are borrowed from the steps. */
    PyObject *steps = PyList_AsTuple(passed);
    if (steps == NULL) return NULL;
    Py_INCREF(top);
    PyObject *root = NULL;
    for (Py_ssize_t index = PyTuple_GET_SIZE(steps) - 1; index >= 0; index--) {
        PyObject *step = PyTuple_GET_ITEM(steps, index);
        if (!PyTuple_CheckExact(step) || PyTuple_GET_SIZE(step) != 3 ||
            !PyUnicode_CheckExact(PyTuple_GET_ITEM(step, 1)) ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(step, 2))) {
            PyErr_SetString(PyExc_TypeError, "passed: (node, path, nibble) tuples");
            goto fail;
        }
        PyObject *node = PyTuple_GET_ITEM(step, 0), *path = PyTuple_GET_ITEM(step, 1);
        long nibble = PyLong_AsLong(PyTuple_GET_ITEM(step, 2));
        if (nibble == -1 && PyErr_Occurred()) goto fail;
        if (!PyTuple_CheckExact(node) || PyTuple_GET_SIZE(node) != BRANCH_SIZE) {
            PyErr_SetString(PyExc_TypeError, "node: a branch tuple");
            goto fail;
        }
        if (nibble < 0 || nibble >= RADIX) {
            PyErr_SetString(PyExc_ValueError, "nibble out of range");
            goto fail;
        }
        /* stale.append(NodeKey(node[VERSION], path)); cache.pop(path, None) */
        PyObject *old = node_key(key_type, PyTuple_GET_ITEM(node, VERSION), path);
        if (old == NULL) goto fail;
        int appended = PyList_Append(stale, old);
        Py_DECREF(old);
        if (appended < 0) goto fail;
        PyObject *cached = PyDict_GetItemWithError(cache, path);
        if (cached != NULL) {
            if (PyDict_DelItem(cache, path) < 0) goto fail;
        } else if (PyErr_Occurred()) {
            goto fail;
        }
        PyObject *digest;
        int is_leaf = leaf != NULL;
        if (is_leaf) {
            PyObject *child_path = PyUnicode_FromOrdinal(hex[nibble]);
            if (child_path == NULL) goto fail;
            PyObject *full_path = PyUnicode_Concat(path, child_path);
            Py_DECREF(child_path);
            if (full_path == NULL) goto fail;
            PyObject *data = encode_leaf(PyTuple_GET_ITEM(leaf, 2), PyTuple_GET_ITEM(leaf, 3));
            int put = data == NULL ? -1 : put_node(nodes, key_type, version, full_path, data);
            Py_DECREF(full_path);
            Py_XDECREF(data);
            if (put < 0) goto fail;
            digest = PyTuple_GET_ITEM(leaf, 1);
            leaf = NULL;
        } else {
            digest = top;
        }
        PyObject *branch, *hash, *data;
        if (rewrite_node(node, nibble, digest, version, is_leaf, &branch, &hash, &data) < 0)
            goto fail;
        Py_DECREF(top);
        top = hash;
        int put = put_node(nodes, key_type, version, path, data);
        Py_DECREF(data);
        if (put < 0) {
            Py_DECREF(branch);
            goto fail;
        }
        if (PyUnicode_GET_LENGTH(path) > 0) {
            int set = PyDict_SetItem(cache, path, branch);
            Py_DECREF(branch);
            if (set < 0) goto fail;
        } else {
            Py_XDECREF(root);
            root = branch;
        }
    }
    if (leaf != NULL) {
        PyErr_SetString(PyExc_ValueError, "rewrite_up: no node to place the leaf under");
        goto fail;
    }
    if (root == NULL) {
        Py_INCREF(Py_None);
        root = Py_None;
    }
    PyObject *result = PyTuple_New(2);
    if (result == NULL) goto fail;
    PyTuple_SET_ITEM(result, 0, top);
    PyTuple_SET_ITEM(result, 1, root);
    Py_DECREF(steps);
    return result;
fail:
    Py_DECREF(steps);
    Py_DECREF(top);
    Py_XDECREF(root);
    return NULL;
}

/* The attribute names `update_one` reads on its writer, and the tree's NodeKey type. */
PyObject *s_cache, *s_stale, *s_nodes, *s_internal, *s_replace_leaf, *s_cache_hits,
    *s_remember_root, *s_evict, *s_cache_max, *s_batch, *s_empty, *s_build, *s_lift, *s_remember;
PyObject *node_key_type;

static PyObject *set_node_key(PyObject *module, PyObject *type) {
    (void)module;
    if (!PyType_Check(type) || !PyType_IsSubtype((PyTypeObject *)type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "set_node_key(NodeKey): a tuple type");
        return NULL;
    }
    Py_INCREF(type);
    Py_XSETREF(node_key_type, type);
    Py_RETURN_NONE;
}

/* A hex digit's value, or -1. */
long hex_value(unsigned char digit) {
    if (digit >= '0' && digit <= '9') return digit - '0';
    if (digit >= 'a' && digit <= 'f') return digit - 'a' + 10;
    return -1;
}

/* passed.append((node, path, nibble)). */
static int append_step(PyObject *passed, PyObject *node, PyObject *path, long nibble) {
    PyObject *number = PyLong_FromLong(nibble);
    if (number == NULL) return -1;
    PyObject *step = PyTuple_Pack(3, node, path, number);
    Py_DECREF(number);
    if (step == NULL) return -1;
    int result = PyList_Append(passed, step);
    Py_DECREF(step);
    return result;
}

/* The hash of child `nibble` of `node` (a checked branch), as a new bytes object. */
PyObject *child_digest(PyObject *node, long nibble) {
    PyObject *hashed = PyTuple_GET_ITEM(node, HASHED);
    Py_ssize_t domain = PyBytes_GET_SIZE(hashed) - RADIX * HASH_SIZE;
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(hashed) + domain + nibble * HASH_SIZE,
                                     HASH_SIZE);
}

/* `node` is a branch whose first field holds 16 hashes; -1 with TypeError otherwise. */
int check_branch(PyObject *node) {
    if (!PyTuple_CheckExact(node) || PyTuple_GET_SIZE(node) != BRANCH_SIZE ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(node, HASHED)) ||
        PyBytes_GET_SIZE(PyTuple_GET_ITEM(node, HASHED)) < RADIX * HASH_SIZE) {
        PyErr_SetString(PyExc_TypeError, "node: a branch tuple");
        return -1;
    }
    return 0;
}

int add_cache_hits(PyObject *writer, Py_ssize_t hits) {
    if (hits == 0) return 0;
    PyObject *before = PyObject_GetAttr(writer, s_cache_hits);
    PyObject *count = PyLong_FromSsize_t(hits);
    PyObject *after = before && count ? PyNumber_Add(before, count) : NULL;
    int set = after == NULL ? -1 : PyObject_SetAttr(writer, s_cache_hits, after);
    Py_XDECREF(before);
    Py_XDECREF(count);
    Py_XDECREF(after);
    return set;
}

static PyObject *rewrite_up(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* The branch at `child_path` that `node` names as its child `nibble`: from the cache when it is
 * the version named, else read (the writer's `_internal`). A new reference. */
PyObject *child_branch(PyObject *writer, PyObject *cache, PyObject *node, long nibble,
                       PyObject *child_path, Py_ssize_t *hits) {
    PyObject *child_version = PyTuple_GET_ITEM(node, CHILD + nibble);
    PyObject *child = PyDict_GetItemWithError(cache, child_path);
    if (child != NULL) {
        Py_INCREF(child);
        int same = check_branch(child) < 0 ? -1
                                           : PyObject_RichCompareBool(
                                                 PyTuple_GET_ITEM(child, VERSION), child_version,
                                                 Py_EQ);
        if (same < 0) {
            Py_DECREF(child);
            return NULL;
        }
        if (same) {
            (*hits)++;
            return child;
        }
        Py_DECREF(child);
    } else if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *digest = child_digest(node, nibble);
    if (digest == NULL) return NULL;
    child = PyObject_CallMethodObjArgs(writer, s_internal, child_version, child_path,
                                       digest, NULL);
    Py_DECREF(digest);
    if (child != NULL && check_branch(child) < 0) Py_CLEAR(child);
    return child;
}

PyObject *update_one(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "update_one(writer, version, path, node, item)");
        return NULL;
    }
    if (node_key_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_node_key() not called");
        return NULL;
    }
    PyObject *writer = args[0], *version = args[1], *path = args[2], *item = args[4];
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 5 ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(item, 0)) ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(item, 1)) ||
        PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 1)) != HASH_SIZE || !PyUnicode_CheckExact(path)) {
        PyErr_SetString(PyExc_TypeError, "update_one: an item that sets a key, a str path");
        return NULL;
    }
    PyObject *item_path = PyTuple_GET_ITEM(item, 0);
    if (PyUnicode_KIND(item_path) != PyUnicode_1BYTE_KIND ||
        PyUnicode_GET_LENGTH(item_path) != 2 * HASH_SIZE ||
        PyUnicode_GET_LENGTH(path) >= 2 * HASH_SIZE) {
        PyErr_SetString(PyExc_ValueError, "update_one: a path of 64 hex digits, below a node");
        return NULL;
    }
    const unsigned char *chars = PyUnicode_1BYTE_DATA(item_path);
    const char *leaf_hash = PyBytes_AS_STRING(PyTuple_GET_ITEM(item, 1));
    int known = PyObject_IsTrue(PyTuple_GET_ITEM(item, 4));
    if (known < 0 || check_branch(args[3]) < 0) return NULL;
    Py_ssize_t depth = PyUnicode_GET_LENGTH(path);
    long nibble = hex_value(chars[depth]);
    if (nibble < 0) {
        PyErr_SetString(PyExc_ValueError, "update_one: a path of hex digits");
        return NULL;
    }
    PyObject *cache = PyObject_GetAttr(writer, s_cache);
    PyObject *stale = PyObject_GetAttr(writer, s_stale);
    PyObject *passed = PyList_New(0);
    PyObject *top = item, *current = args[3], *result = NULL, *nodes = NULL, *up = NULL;
    Py_INCREF(top);
    Py_INCREF(current);
    Py_ssize_t hits = 0;
    if (cache == NULL || stale == NULL || passed == NULL) goto done;
    if (!PyDict_CheckExact(cache) || !PyList_CheckExact(stale)) {
        PyErr_SetString(PyExc_TypeError, "update_one: the writer's cache and stale list");
        goto done;
    }
    if (append_step(passed, current, path, nibble) < 0) goto done;
    for (;;) {
        unsigned long long bitmap, leaves;
        if (as_u64(PyTuple_GET_ITEM(current, BITMAP), &bitmap) < 0 ||
            as_u64(PyTuple_GET_ITEM(current, LEAVES), &leaves) < 0)
            goto done;
        unsigned long long bit = 1ULL << nibble;
        depth++;
        if (!(bitmap & bit)) break;
        PyObject *child_version = PyTuple_GET_ITEM(current, CHILD + nibble);
        PyObject *child_path = PyUnicode_Substring(item_path, 0, depth);
        if (child_path == NULL) goto done;
        if (leaves & bit) {
            if (known) {
                /* The key's own leaf: replaced without being read (unless unchanged). */
                PyObject *hashed = PyTuple_GET_ITEM(current, HASHED);
                const char *slot = PyBytes_AS_STRING(hashed) + PyBytes_GET_SIZE(hashed) -
                                   RADIX * HASH_SIZE + nibble * HASH_SIZE;
                if (memcmp(slot, leaf_hash, HASH_SIZE) == 0) {
                    Py_DECREF(child_path);
                    Py_INCREF(Py_False);
                    result = Py_False;
                    goto done;
                }
                PyObject *old = node_key((PyTypeObject *)node_key_type, child_version, child_path);
                Py_DECREF(child_path);
                if (old == NULL) goto done;
                int appended = PyList_Append(stale, old);
                Py_DECREF(old);
                if (appended < 0) goto done;
                break;
            }
            PyObject *digest = child_digest(current, nibble);
            PyObject *key = digest == NULL ? NULL : PyTuple_Pack(2, child_version, child_path);
            PyObject *writes = key == NULL ? NULL : PyList_New(1);
            PyObject *placed = NULL;
            if (writes != NULL) {
                Py_INCREF(item);
                PyList_SET_ITEM(writes, 0, item);
                placed = PyObject_CallMethodObjArgs(writer, s_replace_leaf, version, key, digest,
                                                    writes, NULL);
            }
            Py_XDECREF(digest);
            Py_XDECREF(key);
            Py_XDECREF(writes);
            Py_DECREF(child_path);
            if (placed == NULL) goto done;
            if (placed == Py_False) {
                result = placed;
                goto done;
            }
            if (placed == Py_None) {
                Py_DECREF(placed);
                PyErr_SetString(PyExc_AssertionError, "a set key's leaf left nothing");
                goto done;
            }
            Py_DECREF(top);
            top = placed;
            break;
        }
        PyObject *child = child_branch(writer, cache, current, nibble, child_path, &hits);
        if (child == NULL) {
            Py_DECREF(child_path);
            goto done;
        }
        Py_DECREF(current);
        current = child;
        nibble = depth < 2 * HASH_SIZE ? hex_value(chars[depth]) : -1;
        if (nibble < 0) {
            Py_DECREF(child_path);
            PyErr_SetString(PyExc_ValueError, "update_one: an internal node at a leaf's depth");
            goto done;
        }
        int appended = append_step(passed, current, child_path, nibble);
        Py_DECREF(child_path);
        if (appended < 0) goto done;
    }
    nodes = PyObject_GetAttr(writer, s_nodes);
    if (nodes == NULL) goto done;
    PyObject *up_args[7] = {passed, top, version, nodes, stale, cache, node_key_type};
    up = rewrite_up(module, up_args, 7);
    if (up == NULL) goto done;
    PyObject *root = PyTuple_GET_ITEM(up, 1);
    if (root != Py_None) {
        PyObject *done_root =
            PyObject_CallMethodObjArgs(writer, s_remember_root, version, root, NULL);
        if (done_root == NULL) goto done;
        Py_DECREF(done_root);
    }
    PyObject *cache_max = PyObject_GetAttr(writer, s_cache_max);
    if (cache_max == NULL) goto done;
    Py_ssize_t most = PyLong_AsSsize_t(cache_max);
    Py_DECREF(cache_max);
    if (most == -1 && PyErr_Occurred()) goto done;
    if (PyDict_GET_SIZE(cache) > most) {
        PyObject *evicted = PyObject_CallMethodNoArgs(writer, s_evict);
        if (evicted == NULL) goto done;
        Py_DECREF(evicted);
    }
    result = PyTuple_GET_ITEM(up, 0);
    Py_INCREF(result);
done:
    if (result != NULL && add_cache_hits(writer, hits) < 0) Py_CLEAR(result);
    Py_XDECREF(up);
    Py_XDECREF(nodes);
    Py_XDECREF(cache);
    Py_XDECREF(stale);
    Py_XDECREF(passed);
    Py_DECREF(top);
    Py_DECREF(current);
    return result;
}

static PyObject *keys_bytes(PyObject *module, PyObject *keys) {
    (void)module;
    static const unsigned char lengths_max = 2 * HASH_SIZE;
    PyObject *sequence = PySequence_Fast(keys, "keys_bytes: a list of node keys");
    if (sequence == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    PyObject *out = PyList_New(count);
    if (out == NULL) {
        Py_DECREF(sequence);
        return NULL;
    }
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *key = PySequence_Fast_GET_ITEM(sequence, index);
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 2 ||
            !PyUnicode_CheckExact(PyTuple_GET_ITEM(key, 1))) {
            PyErr_SetString(PyExc_TypeError, "keys_bytes: (version, path) keys");
            goto fail;
        }
        unsigned long long version;
        if (as_u64(PyTuple_GET_ITEM(key, 0), &version) < 0) goto fail;
        PyObject *path = PyTuple_GET_ITEM(key, 1);
        Py_ssize_t length = PyUnicode_GET_LENGTH(path);
        if (PyUnicode_KIND(path) != PyUnicode_1BYTE_KIND || length > lengths_max) {
            PyErr_SetString(PyExc_ValueError, "keys_bytes: a path of at most 64 hex digits");
            goto fail;
        }
        const unsigned char *chars = PyUnicode_1BYTE_DATA(path);
        PyObject *data = PyBytes_FromStringAndSize(NULL, 9 + (length + 1) / 2);
        if (data == NULL) goto fail;
        unsigned char *bytes = (unsigned char *)PyBytes_AS_STRING(data);
        for (int n = 0; n < 8; n++) bytes[n] = (unsigned char)(version >> (56 - 8 * n));
        bytes[8] = (unsigned char)length;
        for (Py_ssize_t at = 0; at < length; at += 2) {
            long high = hex_value(chars[at]);
            long low = at + 1 < length ? hex_value(chars[at + 1]) : 0;
            if (high < 0 || low < 0) {
                Py_DECREF(data);
                PyErr_SetString(PyExc_ValueError, "keys_bytes: a path of hex digits");
                goto fail;
            }
            bytes[9 + at / 2] = (unsigned char)(high << 4 | low);
        }
        PyList_SET_ITEM(out, index, data);
    }
    Py_DECREF(sequence);
    return out;
fail:
    Py_DECREF(sequence);
    Py_DECREF(out);
    return NULL;
}

static int copy_domain(PyObject *tag, unsigned char *out, Py_ssize_t *size) {
    if (!PyBytes_CheckExact(tag) || PyBytes_GET_SIZE(tag) > DOMAIN_MAX) {
        PyErr_SetString(PyExc_TypeError, "a domain tag: bytes of at most 64");
        return -1;
    }
    *size = PyBytes_GET_SIZE(tag);
    memcpy(out, PyBytes_AS_STRING(tag), (size_t)*size);
    return 0;
}

static PyObject *domains(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "domains(key, value, leaf)");
        return NULL;
    }
    if (copy_domain(args[0], key_domain, &key_domain_size) < 0 ||
        copy_domain(args[1], value_domain, &value_domain_size) < 0 ||
        copy_domain(args[2], leaf_domain, &leaf_domain_size) < 0) {
        key_domain_size = -1;
        return NULL;
    }
    Py_RETURN_NONE;
}

/* SHA-256 of `prefix` then `data`. */
static void hash2(const unsigned char *prefix, Py_ssize_t prefix_size, const void *data,
                  Py_ssize_t size, unsigned char *out) {
    SHA256_CTX context;
    SHA256_Init(&context);
    SHA256_Update(&context, prefix, (size_t)prefix_size);
    SHA256_Update(&context, data, (size_t)size);
    SHA256_Final(out, &context);
}

static PyObject *item(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    static const char hex[] = "0123456789abcdef";
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "item(key, value, known)");
        return NULL;
    }
    if (key_domain_size < 0) {
        PyErr_SetString(PyExc_RuntimeError, "domains() not called");
        return NULL;
    }
    PyObject *key = args[0], *value = args[1], *known = args[2];
    if (!PyBytes_CheckExact(key) || !PyBytes_CheckExact(value)) {
        PyErr_SetString(PyExc_TypeError, "key and value: bytes");
        return NULL;
    }
    unsigned char key_hash[HASH_SIZE], both[2 * HASH_SIZE], leaf_hash[HASH_SIZE];
    hash2(key_domain, key_domain_size, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), key_hash);
    memcpy(both, key_hash, HASH_SIZE);
    hash2(value_domain, value_domain_size, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
          both + HASH_SIZE);
    hash2(leaf_domain, leaf_domain_size, both, 2 * HASH_SIZE, leaf_hash);
    char path[2 * HASH_SIZE];
    for (int n = 0; n < HASH_SIZE; n++) {
        path[2 * n] = hex[key_hash[n] >> 4];
        path[2 * n + 1] = hex[key_hash[n] & 15];
    }
    PyObject *path_object = PyUnicode_FromStringAndSize(path, 2 * HASH_SIZE);
    PyObject *leaf_object = PyBytes_FromStringAndSize((const char *)leaf_hash, HASH_SIZE);
    PyObject *result = PyTuple_New(5);
    if (path_object == NULL || leaf_object == NULL || result == NULL) {
        Py_XDECREF(path_object);
        Py_XDECREF(leaf_object);
        Py_XDECREF(result);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, path_object);
    PyTuple_SET_ITEM(result, 1, leaf_object);
    Py_INCREF(key);
    PyTuple_SET_ITEM(result, 2, key);
    Py_INCREF(value);
    PyTuple_SET_ITEM(result, 3, value);
    Py_INCREF(known);
    PyTuple_SET_ITEM(result, 4, known);
    return result;
}

static PyMethodDef methods[] = {
    {"rewrite", (PyCFunction)(void (*)(void))rewrite, METH_FASTCALL,
     "A branch with one child replaced: (branch, hash, encoding)."},
    {"update_one", (PyCFunction)(void (*)(void))update_one, METH_FASTCALL,
     "TreeWriter._update_one: one key set below `node`, down its path and up again."},
    {"update", (PyCFunction)(void (*)(void))update, METH_FASTCALL,
     "TreeWriter._update: the writes batch[lo:hi] below `node`, split by nibble."},
    {"set_node_key", (PyCFunction)set_node_key, METH_O, "The tree's NodeKey type."},
    {"keys_bytes", (PyCFunction)keys_bytes, METH_O, "NodeKey.to_bytes of each key."},
    {"rewrite_up", (PyCFunction)(void (*)(void))rewrite_up, METH_FASTCALL,
     "The nodes passed on a key's path rewritten, lowest first: (top hash, root or None)."},
    {"leaf_record", (PyCFunction)(void (*)(void))leaf_record, METH_FASTCALL,
     "A leaf record's encoding."},
    {"domains", (PyCFunction)(void (*)(void))domains, METH_FASTCALL,
     "The key, value and leaf domain tags `item` hashes under."},
    {"item", (PyCFunction)(void (*)(void))item, METH_FASTCALL,
     "A write of a key to a value: (path, leaf hash, key, value, known)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_jmt_native",
    "The state tree's per-node rewrite and leaf hashing in C (SHA-256 suite).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jmt_native(void) {
    static const char *names[] = {"_cache",     "_stale",         "_nodes",    "_internal",
                                  "_replace_leaf", "cache_hits", "_remember_root", "_evict",
                                  "_cache_max", "_batch",         "_empty",    "_build",
                                  "_lift",      "_remember"};
    PyObject **slots[] = {&s_cache,      &s_stale,        &s_nodes, &s_internal,
                          &s_replace_leaf, &s_cache_hits, &s_remember_root, &s_evict,
                          &s_cache_max,  &s_batch,        &s_empty, &s_build,
                          &s_lift,       &s_remember};
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
        if (*slots[n] == NULL) {
            *slots[n] = PyUnicode_InternFromString(names[n]);
            if (*slots[n] == NULL) return NULL;
        }
    }
    return PyModule_Create(&module_definition);
}
