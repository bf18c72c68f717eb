/* consortia.execution._jmt_native, its second file: a block's writes split below a node.
 *
 *   update(writer, version, path, node, lo, hi) -> hash, leaf Item, None or False
 *       `TreeWriter._update` (jmt_write.py) for the writer `writer`: the subtree of the
 *       internal node `node` at `path` after the writes writer._batch[lo:hi] (sorted by path,
 *       all under `path`). It splits them by their next nibble, goes down into each changed
 *       child (`update_one` where one key is set below an internal child, itself where more
 *       are), and writes the node again over what changed (`finish`): its children's leaf
 *       records, its record, the stale list and the cache, in the order the Python does.
 *       The rarer turns call the writer back, as the Python calls itself: `_internal` on a
 *       cache miss, `_replace_leaf` where writes meet a leaf not known to be theirs, `_build`
 *       for new keys under an empty child, `_lift` where one leaf is left to move up,
 *       `_remember`/`_remember_root` for the new node.
 *
 * The Python it replaces stays the reference (tests/unit/test_jmt_native.py runs both on two
 * trees and compares everything, version by version). Must never touch the disk, a clock or
 * randomness.
 */
#include "_jmt_native.h"
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <string.h>

/* One call of `update`: what every level of the descent shares. */
struct walk {
    PyObject *module, *writer, *version;
    PyObject *batch; /* a tuple snapshot of writer._batch: its items outlive any callback */
    PyObject *cache, *stale, *nodes;
    const char *empty; /* the placeholder hash of an empty child */
    Py_ssize_t hits;   /* cache hits, added to writer.cache_hits at the end */
};

static PyObject *subtree(struct walk *walk, PyObject *path, PyObject *node, Py_ssize_t lo,
                         Py_ssize_t hi);

/* The path of write `index` (checked on entry: 64 hex digits, one byte each). */
static const unsigned char *path_of(struct walk *walk, Py_ssize_t index) {
    return PyUnicode_1BYTE_DATA(PyTuple_GET_ITEM(PyTuple_GET_ITEM(walk->batch, index), 0));
}

/* Whether write `index` sets its key (else it deletes it). */
static int sets(struct walk *walk, Py_ssize_t index) {
    return PyTuple_GET_ITEM(PyTuple_GET_ITEM(walk->batch, index), 1) != Py_None;
}

static PyObject *one(struct walk *walk, PyObject *path, PyObject *node, PyObject *item) {
    PyObject *args[5] = {walk->writer, walk->version, path, node, item};
    return update_one(walk->module, args, 5);
}

/* `TreeWriter._changed_child`: the non-empty child `nibble` of `node`, at `child_path`, after
 * the writes [start, stop). */
static PyObject *changed_child(struct walk *walk, PyObject *child_path, long nibble,
                               PyObject *node, Py_ssize_t start, Py_ssize_t stop) {
    unsigned long long leaves;
    if (as_u64(PyTuple_GET_ITEM(node, LEAVES), &leaves) < 0) return NULL;
    PyObject *item = PyTuple_GET_ITEM(walk->batch, start);
    if (!(leaves >> nibble & 1)) {
        PyObject *child =
            child_branch(walk->writer, walk->cache, node, nibble, child_path, &walk->hits);
        if (child == NULL) return NULL;
        PyObject *result = stop == start + 1 && sets(walk, start)
                               ? one(walk, child_path, child, item)
                               : subtree(walk, child_path, child, start, stop);
        Py_DECREF(child);
        return result;
    }
    PyObject *child_version = PyTuple_GET_ITEM(node, CHILD + nibble);
    if (stop == start + 1) {
        int known = PyObject_IsTrue(PyTuple_GET_ITEM(item, 4));
        if (known < 0) return NULL;
        if (known) {
            /* A present key under a leaf child is that leaf's key: replaced unread. */
            PyObject *leaf_hash = PyTuple_GET_ITEM(item, 1);
            PyObject *hashed = PyTuple_GET_ITEM(node, HASHED);
            const char *slot = PyBytes_AS_STRING(hashed) + PyBytes_GET_SIZE(hashed) -
                               RADIX * HASH_SIZE + nibble * HASH_SIZE;
            if (leaf_hash != Py_None && memcmp(slot, PyBytes_AS_STRING(leaf_hash), HASH_SIZE) == 0)
                Py_RETURN_FALSE;
            PyObject *old = node_key((PyTypeObject *)node_key_type, child_version, child_path);
            if (old == NULL) return NULL;
            int appended = PyList_Append(walk->stale, old);
            Py_DECREF(old);
            if (appended < 0) return NULL;
            if (leaf_hash == Py_None) Py_RETURN_NONE;
            Py_INCREF(item);
            return item;
        }
    }
    PyObject *digest = child_digest(node, nibble);
    PyObject *key = digest == NULL ? NULL : PyTuple_Pack(2, child_version, child_path);
    PyObject *writes = key == NULL ? NULL : PyTuple_GetSlice(walk->batch, start, stop);
    PyObject *list = writes == NULL ? NULL : PySequence_List(writes);
    PyObject *result = list == NULL ? NULL
                                    : PyObject_CallMethodObjArgs(walk->writer, s_replace_leaf,
                                                                 walk->version, key, digest,
                                                                 list, NULL);
    Py_XDECREF(digest);
    Py_XDECREF(key);
    Py_XDECREF(writes);
    Py_XDECREF(list);
    return result;
}

/* The new keys among the writes [start, stop) under an empty child at `child_path`: the
 * writer's `_build` of them, or False when none sets a key. */
static PyObject *empty_child(struct walk *walk, PyObject *child_path, Py_ssize_t start,
                             Py_ssize_t stop) {
    PyObject *written = PyList_New(0);
    if (written == NULL) return NULL;
    for (Py_ssize_t index = start; index < stop; index++) {
        if (sets(walk, index) &&
            PyList_Append(written, PyTuple_GET_ITEM(walk->batch, index)) < 0) {
            Py_DECREF(written);
            return NULL;
        }
    }
    PyObject *result;
    if (PyList_GET_SIZE(written) == 0) {
        Py_INCREF(Py_False);
        result = Py_False;
    } else {
        result = PyObject_CallMethodObjArgs(walk->writer, s_build, walk->version, child_path,
                                            written, NULL);
    }
    Py_DECREF(written);
    return result;
}

/* `TreeWriter._changed_children`: the children of `node` (at `path`, `depth` nibbles) that
 * the writes [lo, hi) change, each as it is now, into `nibbles` and `placed` (new
 * references, `*count` of them, at most one per nibble). */
static int changed_children(struct walk *walk, Py_ssize_t depth, PyObject *node,
                            Py_ssize_t lo, Py_ssize_t hi, long *nibbles, PyObject **placed,
                            int *count) {
    unsigned long long bitmap;
    if (as_u64(PyTuple_GET_ITEM(node, BITMAP), &bitmap) < 0) return -1;
    Py_ssize_t start = lo;
    while (start < hi) {
        unsigned char digit = path_of(walk, start)[depth];
        Py_ssize_t stop;
        if (start + 1 == hi || path_of(walk, start + 1)[depth] != digit) {
            stop = start + 1;
        } else if (digit == 'f') {
            stop = hi;
        } else {
            /* The first write past this nibble (the writes are sorted and share `path`). */
            Py_ssize_t low = start + 2, high = hi;
            while (low < high) {
                Py_ssize_t middle = low + (high - low) / 2;
                if (path_of(walk, middle)[depth] > digit)
                    high = middle;
                else
                    low = middle + 1;
            }
            stop = low;
        }
        long nibble = hex_value(digit);
        if (nibble < 0) {
            PyErr_SetString(PyExc_ValueError, "update: a path of hex digits");
            return -1;
        }
        if (*count >= RADIX) {
            PyErr_SetString(PyExc_ValueError, "update: the writes are not sorted by path");
            return -1;
        }
        PyObject *child_path =
            PyUnicode_Substring(PyTuple_GET_ITEM(PyTuple_GET_ITEM(walk->batch, start), 0), 0,
                                depth + 1);
        if (child_path == NULL) return -1;
        PyObject *result;
        if (bitmap >> nibble & 1) {
            result = changed_child(walk, child_path, nibble, node, start, stop);
        } else if (stop == start + 1) {
            /* An empty child and one write: its leaf, if it sets the key. */
            result = sets(walk, start) ? PyTuple_GET_ITEM(walk->batch, start) : Py_False;
            Py_INCREF(result);
        } else {
            result = empty_child(walk, child_path, start, stop);
        }
        Py_DECREF(child_path);
        if (result == NULL) return -1;
        if (result == Py_False) {
            Py_DECREF(result);
        } else {
            nibbles[*count] = nibble;
            placed[(*count)++] = result;
        }
        start = stop;
    }
    return 0;
}

/* `TreeWriter._drop`: the node at `path` written at `version` is stale; forget it. */
static int drop(struct walk *walk, PyObject *version, PyObject *path) {
    PyObject *old = node_key((PyTypeObject *)node_key_type, version, path);
    if (old == NULL) return -1;
    int appended = PyList_Append(walk->stale, old);
    Py_DECREF(old);
    if (appended < 0) return -1;
    PyObject *cached = PyDict_GetItemWithError(walk->cache, path);
    if (cached == NULL) return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(cached);
    int same = check_branch(cached) < 0
                   ? -1
                   : PyObject_RichCompareBool(PyTuple_GET_ITEM(cached, VERSION), version, Py_EQ);
    Py_DECREF(cached);
    if (same <= 0) return same;
    return PyDict_DelItem(walk->cache, path);
}

/* `TreeWriter._finish` over the old node `node`: the node at `path` written at this version
 * with the `changed` children put in (leaf records written for the leaves), its record
 * written, the node remembered. Its hash. */
static PyObject *finish(struct walk *walk, PyObject *path, PyObject *node,
                        unsigned long long bitmap, unsigned long long leaves,
                        const long *nibbles, PyObject *const *placed, int count) {
    static const char hex[] = "0123456789abcdef";
    PyObject *hashed = PyTuple_GET_ITEM(node, HASHED);
    Py_ssize_t size = PyBytes_GET_SIZE(hashed), domain = size - RADIX * HASH_SIZE;
    PyObject *versions[RADIX];
    for (int n = 0; n < RADIX; n++) versions[n] = PyTuple_GET_ITEM(node, CHILD + n);
    PyObject *new_hashed = PyBytes_FromStringAndSize(PyBytes_AS_STRING(hashed), size);
    PyObject *zero = PyLong_FromLong(0);
    PyObject *digest = NULL, *data = NULL, *branch = NULL;
    if (new_hashed == NULL || zero == NULL) goto done;
    unsigned char *hashes = (unsigned char *)PyBytes_AS_STRING(new_hashed) + domain;
    for (int index = 0; index < count; index++) {
        long nibble = nibbles[index];
        PyObject *child = placed[index];
        const char *child_hash;
        if (child == Py_None) {
            memcpy(hashes + nibble * HASH_SIZE, walk->empty, HASH_SIZE);
            versions[nibble] = zero;
            continue;
        }
        if (PyTuple_Check(child)) {
            if (PyTuple_GET_SIZE(child) != 5) {
                PyErr_SetString(PyExc_TypeError, "update: a placed leaf is not an Item of 5");
                goto done;
            }
            PyObject *leaf_hash = PyTuple_GET_ITEM(child, 1);
            if (!PyBytes_CheckExact(leaf_hash) || PyBytes_GET_SIZE(leaf_hash) != HASH_SIZE) {
                PyErr_SetString(PyExc_TypeError, "update: a placed leaf without its hash");
                goto done;
            }
            char digit = hex[nibble];
            PyObject *suffix = PyUnicode_FromStringAndSize(&digit, 1);
            PyObject *leaf_path = suffix == NULL ? NULL : PyUnicode_Concat(path, suffix);
            PyObject *record = leaf_path == NULL ? NULL
                                                 : encode_leaf(PyTuple_GET_ITEM(child, 2),
                                                               PyTuple_GET_ITEM(child, 3));
            int put = record == NULL ? -1
                                     : put_node(walk->nodes, (PyTypeObject *)node_key_type,
                                                walk->version, leaf_path, record);
            Py_XDECREF(suffix);
            Py_XDECREF(leaf_path);
            Py_XDECREF(record);
            if (put < 0) goto done;
            child_hash = PyBytes_AS_STRING(leaf_hash);
        } else if (PyBytes_CheckExact(child) && PyBytes_GET_SIZE(child) == HASH_SIZE) {
            child_hash = PyBytes_AS_STRING(child);
        } else {
            PyErr_SetString(PyExc_TypeError, "update: a changed child is not a hash or a leaf");
            goto done;
        }
        memcpy(hashes + nibble * HASH_SIZE, child_hash, HASH_SIZE);
        versions[nibble] = walk->version;
    }
    unsigned char hash_buffer[HASH_SIZE];
    SHA256((const unsigned char *)PyBytes_AS_STRING(new_hashed), (size_t)size, hash_buffer);
    unsigned long long numbers[RADIX];
    for (int n = 0; n < RADIX; n++)
        if (as_u64(versions[n], &numbers[n]) < 0) goto done;
    data = encode_internal(hashes, bitmap, leaves, numbers);
    digest = PyBytes_FromStringAndSize((const char *)hash_buffer, HASH_SIZE);
    branch = PyTuple_New(BRANCH_SIZE);
    PyObject *bitmap_object = PyLong_FromUnsignedLongLong(bitmap);
    PyObject *leaves_object = PyLong_FromUnsignedLongLong(leaves);
    if (data == NULL || digest == NULL || branch == NULL || bitmap_object == NULL ||
        leaves_object == NULL) {
        Py_XDECREF(bitmap_object);
        Py_XDECREF(leaves_object);
        Py_CLEAR(digest);
        goto done;
    }
    Py_INCREF(new_hashed);
    PyTuple_SET_ITEM(branch, HASHED, new_hashed);
    PyTuple_SET_ITEM(branch, BITMAP, bitmap_object);
    PyTuple_SET_ITEM(branch, LEAVES, leaves_object);
    Py_INCREF(digest);
    PyTuple_SET_ITEM(branch, HASH, digest);
    Py_INCREF(walk->version);
    PyTuple_SET_ITEM(branch, VERSION, walk->version);
    for (int n = 0; n < RADIX; n++) {
        Py_INCREF(versions[n]);
        PyTuple_SET_ITEM(branch, CHILD + n, versions[n]);
    }
    if (put_node(walk->nodes, (PyTypeObject *)node_key_type, walk->version, path, data) < 0) {
        Py_CLEAR(digest);
        goto done;
    }
    PyObject *remembered =
        PyUnicode_GET_LENGTH(path) > 0
            ? PyObject_CallMethodObjArgs(walk->writer, s_remember, path, branch, NULL)
            : PyObject_CallMethodObjArgs(walk->writer, s_remember_root, walk->version, branch,
                                         NULL);
    if (remembered == NULL) {
        Py_CLEAR(digest);
        goto done;
    }
    Py_DECREF(remembered);
done:
    Py_XDECREF(new_hashed);
    Py_XDECREF(zero);
    Py_XDECREF(data);
    Py_XDECREF(branch);
    return digest;
}

/* `TreeWriter._update`: the subtree of the internal node `node` at `path` after the writes
 * [lo, hi), all under `path`. */
static PyObject *subtree(struct walk *walk, PyObject *path, PyObject *node, Py_ssize_t lo,
                         Py_ssize_t hi) {
    if (hi - lo == 1 && sets(walk, lo))
        return one(walk, path, node, PyTuple_GET_ITEM(walk->batch, lo));
    Py_ssize_t depth = PyUnicode_GET_LENGTH(path);
    if (depth >= PATH_LENGTH) {
        PyErr_SetString(PyExc_ValueError, "update: an internal node at a leaf's depth");
        return NULL;
    }
    long nibbles[RADIX];
    PyObject *placed[RADIX];
    int count = 0;
    PyObject *result = NULL;
    if (changed_children(walk, depth, node, lo, hi, nibbles, placed, &count) < 0)
        goto done;
    if (count == 0) {
        Py_INCREF(Py_False);
        result = Py_False;
        goto done;
    }
    if (drop(walk, PyTuple_GET_ITEM(node, VERSION), path) < 0) goto done;
    unsigned long long bitmap, leaves;
    if (as_u64(PyTuple_GET_ITEM(node, BITMAP), &bitmap) < 0 ||
        as_u64(PyTuple_GET_ITEM(node, LEAVES), &leaves) < 0)
        goto done;
    for (int index = 0; index < count; index++) {
        unsigned long long bit = 1ULL << nibbles[index];
        if (placed[index] == Py_None) {
            bitmap &= ~bit;
            leaves &= ~bit;
        } else if (PyTuple_Check(placed[index])) {
            bitmap |= bit;
            leaves |= bit;
        } else {
            bitmap |= bit;
            leaves &= ~bit;
        }
    }
    if (bitmap == 0) {
        Py_INCREF(Py_None);
        result = Py_None;
        goto done;
    }
    if (bitmap > BITMAP_MAX || leaves > BITMAP_MAX) {
        PyErr_SetString(PyExc_ValueError, "update: a bitmap out of range");
        goto done;
    }
    if (leaves == bitmap && (bitmap & (bitmap - 1)) == 0) {
        /* One child left, a leaf: it moves up to this node's place. */
        long nibble = __builtin_ctzll(bitmap);
        for (int index = 0; index < count; index++) {
            if (nibbles[index] == nibble) {
                if (!PyTuple_Check(placed[index])) {
                    PyErr_SetString(PyExc_AssertionError, "update: the leaf left is no leaf");
                    goto done;
                }
                Py_INCREF(placed[index]);
                result = placed[index];
                goto done;
            }
        }
        PyObject *number = PyLong_FromLong(nibble);
        if (number == NULL) goto done;
        result = PyObject_CallMethodObjArgs(walk->writer, s_lift, node, path, number, NULL);
        Py_DECREF(number);
        goto done;
    }
    result = finish(walk, path, node, bitmap, leaves, nibbles, placed, count);
done:
    for (int index = 0; index < count; index++) Py_DECREF(placed[index]);
    return result;
}

PyObject *update(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "update(writer, version, path, node, lo, hi)");
        return NULL;
    }
    if (node_key_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_node_key() not called");
        return NULL;
    }
    struct walk walk = {module, args[0], args[1], NULL, NULL, NULL, NULL, NULL, 0};
    PyObject *path = args[2], *node = args[3], *result = NULL, *batch = NULL, *empty = NULL;
    unsigned long long written;
    Py_ssize_t lo = PyLong_AsSsize_t(args[4]);
    if (lo == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t hi = PyLong_AsSsize_t(args[5]);
    if (hi == -1 && PyErr_Occurred()) return NULL;
    if (!PyUnicode_CheckExact(path) || PyUnicode_KIND(path) != PyUnicode_1BYTE_KIND ||
        check_branch(node) < 0 || as_u64(walk.version, &written) < 0)
        goto type_error;
    batch = PyObject_GetAttr(walk.writer, s_batch);
    walk.cache = PyObject_GetAttr(walk.writer, s_cache);
    walk.stale = PyObject_GetAttr(walk.writer, s_stale);
    walk.nodes = PyObject_GetAttr(walk.writer, s_nodes);
    empty = PyObject_GetAttr(walk.writer, s_empty);
    if (batch == NULL || walk.cache == NULL || walk.stale == NULL || walk.nodes == NULL ||
        empty == NULL)
        goto done;
    if (!PyList_CheckExact(batch) || !PyDict_CheckExact(walk.cache) ||
        !PyList_CheckExact(walk.stale) || !PyDict_CheckExact(walk.nodes) ||
        !PyBytes_CheckExact(empty) || PyBytes_GET_SIZE(empty) != HASH_SIZE)
        goto type_error;
    walk.empty = PyBytes_AS_STRING(empty);
    walk.batch = PyList_AsTuple(batch);
    if (walk.batch == NULL) goto done;
    Py_ssize_t depth = PyUnicode_GET_LENGTH(path);
    if (lo < 0 || hi > PyTuple_GET_SIZE(walk.batch) || lo > hi || depth >= PATH_LENGTH) {
        PyErr_SetString(PyExc_ValueError, "update: writes [lo, hi) of the batch, below a node");
        goto done;
    }
    const unsigned char *prefix = PyUnicode_1BYTE_DATA(path);
    for (Py_ssize_t index = lo; index < hi; index++) {
        PyObject *item = PyTuple_GET_ITEM(walk.batch, index);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 5) goto type_error;
        PyObject *item_path = PyTuple_GET_ITEM(item, 0), *leaf_hash = PyTuple_GET_ITEM(item, 1);
        if (!PyUnicode_CheckExact(item_path) || PyUnicode_KIND(item_path) != PyUnicode_1BYTE_KIND ||
            PyUnicode_GET_LENGTH(item_path) != PATH_LENGTH ||
            (leaf_hash != Py_None &&
             (!PyBytes_CheckExact(leaf_hash) || PyBytes_GET_SIZE(leaf_hash) != HASH_SIZE)))
            goto type_error;
        const unsigned char *chars = PyUnicode_1BYTE_DATA(item_path);
        if (memcmp(chars, prefix, (size_t)depth) != 0 ||
            (index > lo && memcmp(path_of(&walk, index - 1), chars, PATH_LENGTH) >= 0)) {
            PyErr_SetString(PyExc_ValueError,
                            "update: the writes must be under the node, sorted, one per key");
            goto done;
        }
    }
    result = subtree(&walk, path, node, lo, hi);
    if (walk.hits > 0) {
        /* Counted even when the walk failed midway, as the Python counts them as it goes. */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        int set = add_cache_hits(walk.writer, walk.hits);
        if (type != NULL) {
            /* The walk's own error is the one to report. */
            PyErr_Clear();
            PyErr_Restore(type, value, traceback);
        } else if (set < 0) {
            Py_CLEAR(result);
        }
    }
    goto done;
type_error:
    PyErr_SetString(PyExc_TypeError,
                    "update: a writer with its batch of Items, cache, stale list and nodes, a "
                    "str path and a branch");
done:
    Py_XDECREF(batch);
    Py_XDECREF(walk.batch);
    Py_XDECREF(walk.cache);
    Py_XDECREF(walk.stale);
    Py_XDECREF(walk.nodes);
    Py_XDECREF(empty);
    return result;
}
