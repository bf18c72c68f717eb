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
 *   item(key, value, known) -> (path, leaf_hash, key, value, known)
 *       A write of `key` to `value` (bytes): its path (the key hash in hex) and its leaf hash,
 *       with the tree's domain tags given once to `domains`.
 *
 * Must never touch the disk, a clock, randomness or any state but the domain tags it is
 * given: the same inputs give the same outputs, on every node.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
/* SHA256_Init and its kin: deprecated in OpenSSL 3 for EVP, and the fastest call still. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <string.h>

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
#define BITMAP_MAX 0xFFFF
#define DOMAIN_MAX 64

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
static int as_u64(PyObject *object, unsigned long long *out) {
    if (!PyLong_CheckExact(object)) {
        PyErr_SetString(PyExc_TypeError, "expected an int");
        return -1;
    }
    *out = PyLong_AsUnsignedLongLong(object);
    if (*out == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    return 0;
}

static PyObject *rewrite(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "rewrite(node, nibble, digest, version, leaf)");
        return NULL;
    }
    PyObject *node = args[0], *digest = args[2], *version = args[3];
    if (!PyTuple_CheckExact(node) || PyTuple_GET_SIZE(node) != BRANCH_SIZE) {
        PyErr_SetString(PyExc_TypeError, "node: a branch tuple");
        return NULL;
    }
    long nibble = PyLong_AsLong(args[1]);
    if (nibble == -1 && PyErr_Occurred()) return NULL;
    if (nibble < 0 || nibble >= RADIX) {
        PyErr_SetString(PyExc_ValueError, "nibble out of range");
        return NULL;
    }
    int leaf = PyObject_IsTrue(args[4]);
    if (leaf < 0) return NULL;
    PyObject *hashed = PyTuple_GET_ITEM(node, HASHED);
    if (!PyBytes_CheckExact(hashed) || PyBytes_GET_SIZE(hashed) < RADIX * HASH_SIZE ||
        PyBytes_GET_SIZE(hashed) > RADIX * HASH_SIZE + DOMAIN_MAX) {
        PyErr_SetString(PyExc_TypeError, "node: its first field is not a branch's hashes");
        return NULL;
    }
    if (!PyBytes_CheckExact(digest) || PyBytes_GET_SIZE(digest) != HASH_SIZE) {
        PyErr_SetString(PyExc_TypeError, "digest: 32 bytes");
        return NULL;
    }
    unsigned long long bitmap, leaves, written, child;
    if (as_u64(PyTuple_GET_ITEM(node, BITMAP), &bitmap) < 0 ||
        as_u64(PyTuple_GET_ITEM(node, LEAVES), &leaves) < 0 || as_u64(version, &written) < 0)
        return NULL;
    if (bitmap > BITMAP_MAX || leaves > BITMAP_MAX) {
        PyErr_SetString(PyExc_ValueError, "node: a bitmap out of range");
        return NULL;
    }
    unsigned long long bit = 1ULL << nibble;
    bitmap |= bit;
    leaves = leaf ? leaves | bit : leaves & ~bit;

    Py_ssize_t size = PyBytes_GET_SIZE(hashed);
    Py_ssize_t domain = size - RADIX * HASH_SIZE;
    PyObject *new_hashed = PyBytes_FromStringAndSize(NULL, size);
    if (new_hashed == NULL) return NULL;
    unsigned char *buffer = (unsigned char *)PyBytes_AS_STRING(new_hashed);
    memcpy(buffer, PyBytes_AS_STRING(hashed), (size_t)size);
    memcpy(buffer + domain + nibble * HASH_SIZE, PyBytes_AS_STRING(digest), HASH_SIZE);
    unsigned char hash_buffer[HASH_SIZE];
    SHA256(buffer, (size_t)size, hash_buffer);

    /* The encoding: [tag, bitmap, leaves, [versions...], bin(hashes...)]. */
    int present = __builtin_popcountll(bitmap);
    unsigned long long versions[RADIX];
    Py_ssize_t length = 1 + 1 + uint_size(bitmap) + uint_size(leaves);
    length += present <= 15 ? 1 : 3;
    for (int n = 0; n < RADIX; n++) {
        if (n == nibble) {
            versions[n] = written;
        } else {
            if (as_u64(PyTuple_GET_ITEM(node, CHILD + n), &child) < 0) {
                Py_DECREF(new_hashed);
                return NULL;
            }
            versions[n] = child;
        }
        if (bitmap >> n & 1) length += uint_size(versions[n]);
    }
    Py_ssize_t packed = (Py_ssize_t)present * HASH_SIZE;
    length += (packed <= 0xFF ? 2 : 3) + packed;
    PyObject *data = PyBytes_FromStringAndSize(NULL, length);
    if (data == NULL) {
        Py_DECREF(new_hashed);
        return NULL;
    }
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
            memcpy(out, buffer + domain + n * HASH_SIZE, HASH_SIZE);
            out += HASH_SIZE;
        }
    }
    assert(out == (unsigned char *)PyBytes_AS_STRING(data) + length);

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
        return NULL;
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

PyMODINIT_FUNC PyInit__jmt_native(void) { return PyModule_Create(&module_definition); }
