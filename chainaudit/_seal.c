/* AES-256-GCM sealing of many record bodies in one call (chainaudit.datakeys.seal_items).
 *
 * An optional extension, linked with the system's OpenSSL libcrypto: without it (no
 * OpenSSL headers at build time) chainaudit.datakeys seals with the `cryptography` package,
 * byte for byte the same format. Building a `cryptography` AESGCM object per record costs
 * about 2 µs; here one EVP context is re-keyed per record (AES-NI key schedule), which is
 * several times cheaper. Opening stays on `cryptography`.
 *
 * seal_many(keys, nonces, bodies, aads, magic) -> list[bytes]
 *   keys: 32 * n bytes; nonces: 12 * n bytes; bodies, aads: lists of n bytes objects.
 *   Item i is magic || nonce_i || AES-256-GCM(key_i, nonce_i, bodies[i], aads[i]) || tag_i.
 *   Raises ValueError on malformed arguments, RuntimeError if OpenSSL fails.
 *
 * seal_columns(text, meta, kinds, first, keys, nonces, magic) -> (tail, meta, chosen)
 *   The same for the records of a bulk batch (chainaudit.native.Batch: `text` its bodies,
 *   `meta` its 48-byte BATCH_META entries) whose kind is in the tuple `kinds` (bytes): record
 *   i, leaf first + i, is sealed with key i and nonce i (keys and nonces hold one per record)
 *   and associated data "chainaudit-record-v1\0<leaf>\0<id>". Returns the sealed bodies back
 *   to back (`tail`, to be put after `text`), a copy of `meta` whose entries of the sealed
 *   records point there, and the positions of the sealed records (uint32, native order).
 *   ValueError when the sealed batch would pass 4 GiB or an entry points outside `text`.
 *
 * drop_sealed(text, meta, start, stop) -> (text, meta)
 *   For a batch sealed by seal_columns: the sealed bodies of records start .. stop - 1
 *   (those whose body begins with 0x00, the first byte of a sealed body) removed from `text`,
 *   their entries set to an empty body at offset 0, and the later offsets moved down. Used
 *   once the records' bundles are packed, so the sealed bodies cross to the writer only once.
 *   ValueError if the sealed bodies of those records are not one run in record order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>

#define KEY_SIZE 32
#define NONCE_SIZE 12
#define TAG_SIZE 16

static PyObject *seal_many(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer keys, nonces, magic;
    PyObject *bodies, *aads;
    if (!PyArg_ParseTuple(args, "y*y*O!O!y*", &keys, &nonces, &PyList_Type, &bodies,
                          &PyList_Type, &aads, &magic))
        return NULL;
    PyObject *out = NULL;
    EVP_CIPHER_CTX *ctx = NULL;
    Py_ssize_t n = PyList_GET_SIZE(bodies);
    if (PyList_GET_SIZE(aads) != n || keys.len != n * KEY_SIZE || nonces.len != n * NONCE_SIZE) {
        PyErr_SetString(PyExc_ValueError, "seal_many: keys, nonces, bodies and aads differ in count");
        goto done;
    }
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_SIZE, NULL) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "seal_many: OpenSSL cannot set up AES-256-GCM");
        goto done;
    }
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    const unsigned char *key = keys.buf, *nonce = nonces.buf;
    for (Py_ssize_t i = 0; i < n; i++, key += KEY_SIZE, nonce += NONCE_SIZE) {
        PyObject *body = PyList_GET_ITEM(bodies, i), *aad = PyList_GET_ITEM(aads, i);
        if (!PyBytes_Check(body) || !PyBytes_Check(aad)) {
            PyErr_SetString(PyExc_ValueError, "seal_many: bodies and aads must be bytes");
            goto fail;
        }
        Py_ssize_t body_len = PyBytes_GET_SIZE(body), aad_len = PyBytes_GET_SIZE(aad);
        if (body_len > INT_MAX - TAG_SIZE || aad_len > INT_MAX) {
            PyErr_SetString(PyExc_ValueError, "seal_many: a body or aad is too large");
            goto fail;
        }
        PyObject *item =
            PyBytes_FromStringAndSize(NULL, magic.len + NONCE_SIZE + body_len + TAG_SIZE);
        if (item == NULL)
            goto fail;
        PyList_SET_ITEM(out, i, item);
        unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(item);
        memcpy(dst, magic.buf, (size_t)magic.len);
        memcpy(dst + magic.len, nonce, NONCE_SIZE);
        unsigned char *ct = dst + magic.len + NONCE_SIZE;
        int len = 0, fin = 0;
        if (EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) != 1 ||
            (aad_len > 0 &&
             EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)PyBytes_AS_STRING(aad),
                               (int)aad_len) != 1) ||
            EVP_EncryptUpdate(ctx, ct, &len, (const unsigned char *)PyBytes_AS_STRING(body),
                              (int)body_len) != 1 ||
            EVP_EncryptFinal_ex(ctx, ct + len, &fin) != 1 || len + fin != body_len ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_SIZE, ct + body_len) != 1) {
            PyErr_SetString(PyExc_RuntimeError, "seal_many: OpenSSL failed to encrypt");
            goto fail;
        }
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    if (ctx != NULL)
        EVP_CIPHER_CTX_free(ctx);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&nonces);
    PyBuffer_Release(&magic);
    return out;
}

typedef struct {
    uint32_t body_at, body_len, id_at, id_len, kind_at, kind_len, actor_at, actor_len;
    int64_t millis;
    uint32_t salted, unused;
} batch_meta_t;

static int encrypt_one(EVP_CIPHER_CTX *ctx, const unsigned char *key, const unsigned char *nonce,
                       const unsigned char *aad, int aad_len, const unsigned char *body,
                       int body_len, unsigned char *ct) {
    int len = 0, fin = 0;
    return EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) == 1 &&
           EVP_EncryptUpdate(ctx, NULL, &len, aad, aad_len) == 1 &&
           EVP_EncryptUpdate(ctx, ct, &len, body, body_len) == 1 &&
           EVP_EncryptFinal_ex(ctx, ct + len, &fin) == 1 && len + fin == body_len &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_SIZE, ct + body_len) == 1;
}

static PyObject *seal_columns(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer text, meta, keys, nonces, magic;
    PyObject *kinds;
    long long first;
    if (!PyArg_ParseTuple(args, "y*y*O!Ly*y*y*", &text, &meta, &PyTuple_Type, &kinds, &first,
                          &keys, &nonces, &magic))
        return NULL;
    PyObject *result = NULL, *tail = NULL, *new_meta = NULL, *chosen = NULL;
    EVP_CIPHER_CTX *ctx = NULL;
    Py_ssize_t n = meta.len / (Py_ssize_t)sizeof(batch_meta_t), nk = PyTuple_GET_SIZE(kinds);
    if (meta.len % (Py_ssize_t)sizeof(batch_meta_t) || keys.len != n * KEY_SIZE ||
        nonces.len != n * NONCE_SIZE || first < 0) {
        PyErr_SetString(PyExc_ValueError, "seal_columns: malformed meta, keys or nonces");
        goto done;
    }
    for (Py_ssize_t k = 0; k < nk; k++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(kinds, k))) {
            PyErr_SetString(PyExc_ValueError, "seal_columns: kinds must be bytes");
            goto done;
        }
    }
    const unsigned char *src = text.buf;
    new_meta = PyBytes_FromStringAndSize(meta.buf, meta.len);
    chosen = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(uint32_t));
    if (new_meta == NULL || chosen == NULL)
        goto done;
    batch_meta_t *entries = (batch_meta_t *)PyBytes_AS_STRING(new_meta);
    uint32_t *picked = (uint32_t *)PyBytes_AS_STRING(chosen);
    Py_ssize_t count = 0, size = 0, overhead = magic.len + NONCE_SIZE + TAG_SIZE;
    for (Py_ssize_t i = 0; i < n; i++) {
        batch_meta_t *e = &entries[i];
        if ((Py_ssize_t)e->body_at + e->body_len > text.len ||
            (Py_ssize_t)e->id_at + e->id_len > text.len ||
            (Py_ssize_t)e->kind_at + e->kind_len > text.len) {
            PyErr_SetString(PyExc_ValueError, "seal_columns: an entry points outside the text");
            goto done;
        }
        for (Py_ssize_t k = 0; k < nk; k++) {
            PyObject *kind = PyTuple_GET_ITEM(kinds, k);
            if (PyBytes_GET_SIZE(kind) == (Py_ssize_t)e->kind_len &&
                memcmp(PyBytes_AS_STRING(kind), src + e->kind_at, e->kind_len) == 0) {
                picked[count++] = (uint32_t)i;
                size += e->body_len + overhead;
                break;
            }
        }
    }
    if (text.len + size >= ((Py_ssize_t)1 << 32)) {
        PyErr_SetString(PyExc_ValueError,
                        "a bulk batch over 4 GiB cannot be sealed: ingest smaller chunks");
        goto done;
    }
    tail = PyBytes_FromStringAndSize(NULL, size);
    if (tail == NULL)
        goto done;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_SIZE, NULL) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "seal_columns: OpenSSL cannot set up AES-256-GCM");
        goto done;
    }
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(tail);
    Py_ssize_t at = text.len;
    unsigned char aad[64 + 4096];
    static const char prefix[] = "chainaudit-record-v1";
    for (Py_ssize_t c = 0; c < count; c++) {
        uint32_t i = picked[c];
        batch_meta_t *e = &entries[i];
        if (e->id_len > 4096) {
            PyErr_SetString(PyExc_ValueError, "seal_columns: a record id is too long");
            goto done;
        }
        int head = snprintf((char *)aad, 64, "%s%c%lld%c", prefix, 0, first + (long long)i, 0);
        memcpy(aad + head, src + e->id_at, e->id_len);
        const unsigned char *nonce = (const unsigned char *)nonces.buf + (Py_ssize_t)i * NONCE_SIZE;
        memcpy(dst, magic.buf, (size_t)magic.len);
        memcpy(dst + magic.len, nonce, NONCE_SIZE);
        if (!encrypt_one(ctx, (const unsigned char *)keys.buf + (Py_ssize_t)i * KEY_SIZE, nonce,
                         aad, head + (int)e->id_len, src + e->body_at, (int)e->body_len,
                         dst + magic.len + NONCE_SIZE)) {
            PyErr_SetString(PyExc_RuntimeError, "seal_columns: OpenSSL failed to encrypt");
            goto done;
        }
        Py_ssize_t sealed_len = e->body_len + overhead;
        e->body_at = (uint32_t)at;
        e->body_len = (uint32_t)sealed_len;
        at += sealed_len;
        dst += sealed_len;
    }
    if (_PyBytes_Resize(&chosen, count * (Py_ssize_t)sizeof(uint32_t)) == 0)
        result = PyTuple_Pack(3, tail, new_meta, chosen);
done:
    if (ctx != NULL)
        EVP_CIPHER_CTX_free(ctx);
    Py_XDECREF(tail);
    Py_XDECREF(new_meta);
    Py_XDECREF(chosen);
    PyBuffer_Release(&text);
    PyBuffer_Release(&meta);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&nonces);
    PyBuffer_Release(&magic);
    return result;
}

static PyObject *drop_sealed(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer text, meta;
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "y*y*nn", &text, &meta, &start, &stop))
        return NULL;
    PyObject *result = NULL, *new_meta = NULL, *new_text = NULL;
    Py_ssize_t n = meta.len / (Py_ssize_t)sizeof(batch_meta_t);
    if (meta.len % (Py_ssize_t)sizeof(batch_meta_t) || start < 0 || stop > n || start > stop) {
        PyErr_SetString(PyExc_ValueError, "drop_sealed: malformed meta or range");
        goto done;
    }
    new_meta = PyBytes_FromStringAndSize(meta.buf, meta.len);
    if (new_meta == NULL)
        goto done;
    batch_meta_t *entries = (batch_meta_t *)PyBytes_AS_STRING(new_meta);
    const unsigned char *src = text.buf;
    Py_ssize_t lo = -1, hi = -1;
    for (Py_ssize_t i = start; i < stop; i++) {
        batch_meta_t *e = &entries[i];
        if ((Py_ssize_t)e->body_at + e->body_len > text.len) {
            PyErr_SetString(PyExc_ValueError, "drop_sealed: an entry points outside the text");
            goto done;
        }
        if (e->body_len == 0 || src[e->body_at] != 0)
            continue;
        if (lo < 0)
            lo = hi = e->body_at;
        if ((Py_ssize_t)e->body_at != hi) {
            PyErr_SetString(PyExc_ValueError, "drop_sealed: the sealed bodies are not one run");
            goto done;
        }
        hi += e->body_len;
        e->body_at = 0;
        e->body_len = 0;
    }
    if (lo < 0) {
        result = PyTuple_Pack(2, PyTuple_GET_ITEM(args, 0), PyTuple_GET_ITEM(args, 1));
        goto done;
    }
    Py_ssize_t cut = hi - lo;
    for (Py_ssize_t i = 0; i < n; i++) {
        batch_meta_t *e = &entries[i];
        if ((Py_ssize_t)e->body_at >= hi)
            e->body_at -= (uint32_t)cut;
        else if ((Py_ssize_t)e->body_at + e->body_len > lo && (i < start || i >= stop)) {
            PyErr_SetString(PyExc_ValueError, "drop_sealed: another record's body is in the run");
            goto done;
        }
    }
    new_text = PyBytes_FromStringAndSize(NULL, text.len - cut);
    if (new_text == NULL)
        goto done;
    memcpy(PyBytes_AS_STRING(new_text), src, (size_t)lo);
    memcpy(PyBytes_AS_STRING(new_text) + lo, src + hi, (size_t)(text.len - hi));
    result = PyTuple_Pack(2, new_text, new_meta);
done:
    Py_XDECREF(new_text);
    Py_XDECREF(new_meta);
    PyBuffer_Release(&text);
    PyBuffer_Release(&meta);
    return result;
}

static PyMethodDef methods[] = {
    {"drop_sealed", drop_sealed, METH_VARARGS,
     "drop_sealed(text, meta, start, stop) -> (text, meta) without those sealed bodies"},
    {"seal_columns", seal_columns, METH_VARARGS,
     "seal_columns(text, meta, kinds, first, keys, nonces, magic) -> (tail, meta, chosen)"},
    {"seal_many", seal_many, METH_VARARGS,
     "seal_many(keys, nonces, bodies, aads, magic) -> list of magic||nonce||ciphertext||tag"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_seal", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__seal(void) { return PyModule_Create(&module); }
