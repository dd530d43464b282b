/*
 * chainaudit._native: the native fast path of bulk ingest.
 *
 * prepare_lines() turns a chunk of JSON Lines into prepared records (the fields of
 * chainaudit.records.PreparedRecord) for the common, simple lines, and hands every other line
 * back to the caller by its offset so that the Python path (records.parse_json_line) handles
 * it. The fast path accepts a line only when it is certain to produce exactly what the Python
 * path produces:
 *
 *   - strict JSON (RFC 8259), one object, ASCII only, no backslash escapes, no raw control
 *     characters in strings, integers of at most 15 digits in canonical decimal form (no
 *     "-0"), true/false/null, nesting at most 32 deep, no duplicate key in any object;
 *   - exactly the fields id, kind, timestamp, actor, payload and optionally salt, each valid
 *     as records.prepare() defines it (the timestamp without fractional seconds);
 *   - a canonical body (RFC 8785) of at most MAX_RECORD_BYTES.
 *
 * An optional submitter (records.prepare's `submitter`, e.g. "local:alice") is stamped into
 * every body as its "submitter" field; a line carrying its own "submitter" field is declined
 * (the Python path refuses it). Lines whose id starts with one of the optional reserved
 * prefixes are declined too (the Python path refuses them for a client; reserved kinds are
 * declined by leaving them out of `kinds`).
 *
 * In that domain RFC 8785 is simple: keys sorted bytewise (equal to UTF-16 order for ASCII),
 * no whitespace, strings copied verbatim (nothing in them needs escaping), integers as written.
 * The leaf hash is SHA-256(0x00 || body) (RFC 9162 section 2.1.1), with SHA-256 implemented
 * below from FIPS 180-4 (portable C, plus the x86 SHA extensions when the CPU has them).
 *
 * The function never raises for a bad record: it declines the line instead. It raises only
 * for bad arguments, when the salts run out, or when memory runs out.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CHAINAUDIT_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define CHAINAUDIT_SHA_NI 0
#endif

#define MAX_RECORD_BYTES (64 * 1024) /* records.MAX_RECORD_BYTES */
#define MAX_NESTING 32               /* containers nested at most this deep (top level = 1) */
#define MAX_INT_DIGITS 15            /* records._safe_int: 15 digits always fit in 2**53 - 1 */
#define SALT_BYTES 16
#define SALT_HEX (2 * SALT_BYTES)
#define ID_MAX 128
#define ACTOR_MAX 256
#define SUBMITTER_NAME_MAX 64 /* records._SUBMITTER: (key|local|service):[A-Za-z0-9._@-]{1,64} */
#define MAX_RESERVED 32

/* ------------------------------------------------------------------------------------------ */
/* SHA-256 (FIPS 180-4)                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* First 32 bits of the fractional parts of the cube roots of the first 64 primes (4.2.2). */
static const uint32_t K256[64] = {
    0x428a2f98U, 0x71374491U, 0xb5c0fbcfU, 0xe9b5dba5U, 0x3956c25bU, 0x59f111f1U, 0x923f82a4U,
    0xab1c5ed5U, 0xd807aa98U, 0x12835b01U, 0x243185beU, 0x550c7dc3U, 0x72be5d74U, 0x80deb1feU,
    0x9bdc06a7U, 0xc19bf174U, 0xe49b69c1U, 0xefbe4786U, 0x0fc19dc6U, 0x240ca1ccU, 0x2de92c6fU,
    0x4a7484aaU, 0x5cb0a9dcU, 0x76f988daU, 0x983e5152U, 0xa831c66dU, 0xb00327c8U, 0xbf597fc7U,
    0xc6e00bf3U, 0xd5a79147U, 0x06ca6351U, 0x14292967U, 0x27b70a85U, 0x2e1b2138U, 0x4d2c6dfcU,
    0x53380d13U, 0x650a7354U, 0x766a0abbU, 0x81c2c92eU, 0x92722c85U, 0xa2bfe8a1U, 0xa81a664bU,
    0xc24b8b70U, 0xc76c51a3U, 0xd192e819U, 0xd6990624U, 0xf40e3585U, 0x106aa070U, 0x19a4c116U,
    0x1e376c08U, 0x2748774cU, 0x34b0bcb5U, 0x391c0cb3U, 0x4ed8aa4aU, 0x5b9cca4fU, 0x682e6ff3U,
    0x748f82eeU, 0x78a5636fU, 0x84c87814U, 0x8cc70208U, 0x90befffaU, 0xa4506cebU, 0xbef9a3f7U,
    0xc67178f2U,
};

/* First 32 bits of the fractional parts of the square roots of the first 8 primes (5.3.3). */
static const uint32_t H256[8] = {
    0x6a09e667U, 0xbb67ae85U, 0x3c6ef372U, 0xa54ff53aU,
    0x510e527fU, 0x9b05688cU, 0x1f83d9abU, 0x5be0cd19U,
};

typedef void (*sha256_blocks_fn)(uint32_t state[8], const unsigned char *data, size_t blocks);

static inline uint32_t
load_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void
store_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))         /* (x & y) ^ (~x & z) */
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y)))) /* (x & y) ^ (x & z) ^ (y & z) */
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

/* One round of 6.2.2 step 3, with the working variables renamed instead of shifted. */
#define ROUND(a, b, c, d, e, f, g, h, i)                                                     \
    do {                                                                                       \
        uint32_t t1_ = (h) + BSIG1(e) + CH(e, f, g) + K256[i] + w[i];                          \
        uint32_t t2_ = BSIG0(a) + MAJ(a, b, c);                                                \
        (d) += t1_;                                                                            \
        (h) = t1_ + t2_;                                                                       \
    } while (0)

static void
sha256_blocks_portable(uint32_t state[8], const unsigned char *data, size_t blocks)
{
    uint32_t w[64];
    while (blocks--) {
        for (int i = 0; i < 16; i++) {
            w[i] = load_be32(data + 4 * i);
        }
        for (int i = 16; i < 64; i++) {
            w[i] = SSIG1(w[i - 2]) + w[i - 7] + SSIG0(w[i - 15]) + w[i - 16];
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int i = 0; i < 64; i += 8) {
            ROUND(a, b, c, d, e, f, g, h, i);
            ROUND(h, a, b, c, d, e, f, g, i + 1);
            ROUND(g, h, a, b, c, d, e, f, i + 2);
            ROUND(f, g, h, a, b, c, d, e, i + 3);
            ROUND(e, f, g, h, a, b, c, d, i + 4);
            ROUND(d, e, f, g, h, a, b, c, i + 5);
            ROUND(c, d, e, f, g, h, a, b, i + 6);
            ROUND(b, c, d, e, f, g, h, a, i + 7);
        }
        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
        data += 64;
    }
}

#if CHAINAUDIT_SHA_NI
/*
 * The same compression function with the x86 SHA extensions. SHA256RNDS2 does two rounds on
 * the working variables packed as (A, B, E, F) and (C, D, G, H); SHA256MSG1/MSG2 compute the
 * message schedule of 6.2.2 step 1 four words at a time.
 */
__attribute__((target("sha,sse4.1,ssse3"))) static void
sha256_blocks_shani(uint32_t state[8], const unsigned char *data, size_t blocks)
{
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i dcba = _mm_loadu_si128((const __m128i *)(const void *)&state[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)(const void *)&state[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);

    while (blocks--) {
        const __m128i abef_in = abef, cdgh_in = cdgh;
        __m128i m[4];
        for (int t = 0; t < 16; t++) {
            __m128i words;
            if (t < 4) {
                words = _mm_shuffle_epi8(
                    _mm_loadu_si128((const __m128i *)(const void *)(data + 16 * t)), byteswap);
            }
            else {
                /* W[i-16] + s0(W[i-15]), plus W[i-7], plus s1(W[i-2]), for i = 4t .. 4t+3. */
                words = _mm_sha256msg1_epu32(m[t & 3], m[(t + 1) & 3]);
                words = _mm_add_epi32(words, _mm_alignr_epi8(m[(t + 3) & 3], m[(t + 2) & 3], 4));
                words = _mm_sha256msg2_epu32(words, m[(t + 3) & 3]);
            }
            m[t & 3] = words;
            __m128i wk = _mm_add_epi32(
                words, _mm_loadu_si128((const __m128i *)(const void *)&K256[4 * t]));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));
        }
        abef = _mm_add_epi32(abef, abef_in);
        cdgh = _mm_add_epi32(cdgh, cdgh_in);
        data += 64;
    }

    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)(void *)&state[0], _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)(void *)&state[4], _mm_alignr_epi8(dchg, feba, 8));
}

static int
cpu_has_sha_extensions(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        return 0;
    }
    if (!(ecx & (1U << 9)) || !(ecx & (1U << 19))) { /* SSSE3, SSE4.1 */
        return 0;
    }
    if (__get_cpuid_max(0, NULL) < 7) {
        return 0;
    }
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx & (1U << 29)) != 0; /* SHA */
}
#endif

static sha256_blocks_fn sha256_blocks = sha256_blocks_portable;

/* SHA-256 of data[0:len] with padding per 5.1.1. */
static void
sha256_with(sha256_blocks_fn blocks, const unsigned char *data, size_t len, unsigned char out[32])
{
    uint32_t state[8];
    unsigned char tail[128];
    memcpy(state, H256, sizeof state);
    size_t whole = len / 64;
    blocks(state, data, whole);
    size_t rest = len - whole * 64;
    memset(tail, 0, sizeof tail);
    if (rest) {
        memcpy(tail, data + whole * 64, rest);
    }
    tail[rest] = 0x80;
    size_t tail_len = rest + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    store_be32(tail + tail_len - 8, (uint32_t)(bits >> 32));
    store_be32(tail + tail_len - 4, (uint32_t)bits);
    blocks(state, tail, tail_len / 64);
    for (int i = 0; i < 8; i++) {
        store_be32(out + 4 * i, state[i]);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The JSON subset: parse one line and write its canonical form                               */
/* ------------------------------------------------------------------------------------------ */

enum { OK = 0, DECLINE = -1, NOMEM = -2 };

typedef struct {
    const unsigned char *key; /* into the line: keys hold no escapes, so the source is the key */
    size_t key_len;
    size_t value_at; /* the member's canonical value, in the output buffer */
    size_t value_len;
} member_t;

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    unsigned char *out; /* canonical bytes being written; MAX_RECORD_BYTES at most */
    size_t out_len;
    unsigned char *scratch; /* where an object's members are put in order */
    member_t *members;      /* a stack: each open object's members sit on top */
    size_t members_len;
    size_t members_cap;
} parser_t;

/* String bytes: 0 plain, 1 the closing quote, 2 refused (escape, control, non-ASCII). */
static unsigned char string_byte[256];
/* Bytes of an id after the first: A-Z a-z 0-9 . _ : @ / - */
static unsigned char id_byte[256];

static void
init_tables(void)
{
    for (int c = 0; c < 256; c++) {
        string_byte[c] = (c < 0x20 || c >= 0x80 || c == '\\') ? 2 : (c == '"') ? 1 : 0;
        id_byte[c] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '.' || c == '_' || c == ':' || c == '@' || c == '/' || c == '-';
    }
}

static inline void
skip_ws(parser_t *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r' || *ps->p == '\n')) {
        ps->p++;
    }
}

static inline int
emit(parser_t *ps, const void *bytes, size_t n)
{
    /* Everything in the output buffer ends up in the body, so overflowing it means the body
       would be over the limit: decline. */
    if (n > MAX_RECORD_BYTES - ps->out_len) {
        return DECLINE;
    }
    memcpy(ps->out + ps->out_len, bytes, n);
    ps->out_len += n;
    return OK;
}

static inline int
emit_byte(parser_t *ps, unsigned char c)
{
    if (ps->out_len >= MAX_RECORD_BYTES) {
        return DECLINE;
    }
    ps->out[ps->out_len++] = c;
    return OK;
}

/* At an opening quote: find the string's contents, refusing escapes and non-ASCII. */
static inline int
scan_string(parser_t *ps, const unsigned char **start, size_t *len)
{
    const unsigned char *p = ps->p + 1;
    const unsigned char *end = ps->end;
    while (p < end && string_byte[*p] == 0) {
        p++;
    }
    if (p >= end || string_byte[*p] != 1) {
        return DECLINE;
    }
    *start = ps->p + 1;
    *len = (size_t)(p - (ps->p + 1));
    ps->p = p + 1;
    return OK;
}

static int parse_value(parser_t *ps, int depth);

static int
compare_members(const void *left, const void *right)
{
    const member_t *a = left, *b = right;
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = n ? memcmp(a->key, b->key, n) : 0;
    if (c) {
        return c;
    }
    return (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

static void
sort_members(member_t *m, size_t n)
{
    if (n > 16) {
        qsort(m, n, sizeof *m, compare_members);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        member_t item = m[i];
        size_t j = i;
        while (j > 0 && compare_members(&m[j - 1], &item) > 0) {
            m[j] = m[j - 1];
            j--;
        }
        m[j] = item;
    }
}

static int
push_member(parser_t *ps, const member_t *member)
{
    if (ps->members_len == ps->members_cap) {
        size_t cap = ps->members_cap ? 2 * ps->members_cap : 64;
        member_t *grown = PyMem_Realloc(ps->members, cap * sizeof *grown);
        if (grown == NULL) {
            return NOMEM;
        }
        ps->members = grown;
        ps->members_cap = cap;
    }
    ps->members[ps->members_len++] = *member;
    return OK;
}

/*
 * At '{': parse an object's members, writing their values to the output as they come, then
 * rewrite the object there with its members sorted by key.
 */
static int
parse_object(parser_t *ps, int depth)
{
    if (depth > MAX_NESTING) {
        return DECLINE;
    }
    int rc;
    size_t open_at = ps->out_len;
    size_t base = ps->members_len;
    if ((rc = emit_byte(ps, '{')) != OK) {
        return rc;
    }
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return emit_byte(ps, '}');
    }
    for (;;) {
        member_t member;
        if (ps->p >= ps->end || *ps->p != '"') {
            return DECLINE;
        }
        if ((rc = scan_string(ps, &member.key, &member.key_len)) != OK) {
            return rc;
        }
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            return DECLINE;
        }
        ps->p++;
        skip_ws(ps);
        member.value_at = ps->out_len;
        if ((rc = parse_value(ps, depth)) != OK) {
            return rc;
        }
        member.value_len = ps->out_len - member.value_at;
        if ((rc = push_member(ps, &member)) != OK) {
            return rc;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            break;
        }
        return DECLINE;
    }

    member_t *members = ps->members + base;
    size_t count = ps->members_len - base;
    sort_members(members, count);
    size_t size = 2 + count - 1; /* braces and commas */
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && compare_members(&members[i - 1], &members[i]) == 0) {
            return DECLINE; /* a duplicate key: Python keeps the last one; leave it to Python */
        }
        size += members[i].key_len + 3 + members[i].value_len;
    }
    if (size > MAX_RECORD_BYTES - open_at) {
        return DECLINE;
    }
    unsigned char *s = ps->scratch;
    for (size_t i = 0; i < count; i++) {
        if (i > 0) {
            *s++ = ',';
        }
        *s++ = '"';
        memcpy(s, members[i].key, members[i].key_len);
        s += members[i].key_len;
        *s++ = '"';
        *s++ = ':';
        memcpy(s, ps->out + members[i].value_at, members[i].value_len);
        s += members[i].value_len;
    }
    memcpy(ps->out + open_at + 1, ps->scratch, size - 2);
    ps->out[open_at + size - 1] = '}';
    ps->out_len = open_at + size;
    ps->members_len = base;
    return OK;
}

static int
parse_array(parser_t *ps, int depth)
{
    if (depth > MAX_NESTING) {
        return DECLINE;
    }
    int rc;
    if ((rc = emit_byte(ps, '[')) != OK) {
        return rc;
    }
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return emit_byte(ps, ']');
    }
    for (;;) {
        if ((rc = parse_value(ps, depth)) != OK) {
            return rc;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            if ((rc = emit_byte(ps, ',')) != OK) {
                return rc;
            }
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return emit_byte(ps, ']');
        }
        return DECLINE;
    }
}

static int
parse_literal(parser_t *ps, const char *word, size_t n)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        return DECLINE;
    }
    ps->p += n;
    return emit(ps, word, n);
}

/* An integer -?(0|[1-9][0-9]*) of at most 15 digits, not -0. Anything else after it (a
   fraction, an exponent, more digits after a leading zero) fails the caller's next check. */
static int
parse_integer(parser_t *ps)
{
    const unsigned char *start = ps->p;
    const unsigned char *p = start;
    if (*p == '-') {
        p++;
    }
    if (p >= ps->end || *p < '0' || *p > '9') {
        return DECLINE;
    }
    if (*p == '0') {
        if (p != start) {
            return DECLINE; /* -0: Python writes 0; rare enough to leave to Python */
        }
        p++;
    }
    else {
        const unsigned char *digits = p;
        while (p < ps->end && *p >= '0' && *p <= '9') {
            p++;
        }
        if (p - digits > MAX_INT_DIGITS) {
            return DECLINE;
        }
    }
    ps->p = p;
    return emit(ps, start, (size_t)(p - start));
}

static int
parse_value(parser_t *ps, int depth)
{
    if (ps->p >= ps->end) {
        return DECLINE;
    }
    switch (*ps->p) {
    case '{':
        return parse_object(ps, depth + 1);
    case '[':
        return parse_array(ps, depth + 1);
    case '"': {
        const unsigned char *start = ps->p;
        const unsigned char *text;
        size_t len;
        int rc = scan_string(ps, &text, &len);
        return rc != OK ? rc : emit(ps, start, len + 2);
    }
    case 't':
        return parse_literal(ps, "true", 4);
    case 'f':
        return parse_literal(ps, "false", 5);
    case 'n':
        return parse_literal(ps, "null", 4);
    default:
        return parse_integer(ps);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The record                                                                                  */
/* ------------------------------------------------------------------------------------------ */

enum { F_ID, F_KIND, F_TIMESTAMP, F_ACTOR, F_PAYLOAD, F_SALT, F_COUNT };

static const struct {
    const char *name;
    size_t len;
} FIELD_NAMES[F_COUNT] = {
    {"id", 2}, {"kind", 4}, {"timestamp", 9}, {"actor", 5}, {"payload", 7}, {"salt", 4},
};

static int
field_of(const unsigned char *key, size_t len)
{
    for (int f = 0; f < F_COUNT; f++) {
        if (FIELD_NAMES[f].len == len && memcmp(FIELD_NAMES[f].name, key, len) == 0) {
            return f;
        }
    }
    return -1;
}

static inline int
two_digits(const unsigned char *s, int *value)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') {
        return 0;
    }
    *value = (s[0] - '0') * 10 + (s[1] - '0');
    return 1;
}

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d (y >= 1). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = y / 400; /* y >= 0 here */
    int64_t year_of_era = y - era * 400;
    int64_t day_of_year = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

/*
 * YYYY-MM-DDTHH:MM:SS followed by Z or +HH:MM / -HH:MM, a valid date and time (what
 * records.parse_timestamp accepts, minus fractional seconds), as epoch milliseconds.
 * Years 1-9999 keep every value far below 2**53, so Python's float arithmetic is exact.
 */
static int
parse_timestamp(const unsigned char *s, size_t n, int64_t *millis)
{
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int century, year_in_century, month, day, hour, minute, second;
    int offset_hours = 0, offset_minutes = 0, sign = 0;
    if (n != 20 && n != 25) {
        return 0;
    }
    if (!two_digits(s, &century) || !two_digits(s + 2, &year_in_century) || s[4] != '-' ||
        !two_digits(s + 5, &month) || s[7] != '-' || !two_digits(s + 8, &day) || s[10] != 'T' ||
        !two_digits(s + 11, &hour) || s[13] != ':' || !two_digits(s + 14, &minute) ||
        s[16] != ':' || !two_digits(s + 17, &second)) {
        return 0;
    }
    if (n == 20) {
        if (s[19] != 'Z') {
            return 0;
        }
    }
    else {
        if ((s[19] != '+' && s[19] != '-') || !two_digits(s + 20, &offset_hours) ||
            s[22] != ':' || !two_digits(s + 23, &offset_minutes)) {
            return 0;
        }
        sign = s[19] == '+' ? 1 : -1;
    }
    int year = century * 100 + year_in_century;
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 ||
        second > 59 || offset_hours > 23 || offset_minutes > 59) {
        return 0;
    }
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > month_days[month - 1] + (month == 2 && leap)) {
        return 0;
    }
    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 +
                      second - sign * (offset_hours * 3600 + offset_minutes * 60);
    *millis = seconds * 1000;
    return 1;
}

static int
valid_id(const unsigned char *s, size_t n)
{
    if (n < 1 || n > ID_MAX) {
        return 0;
    }
    if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') ||
          (s[0] >= '0' && s[0] <= '9'))) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (!id_byte[s[i]]) {
            return 0;
        }
    }
    return 1;
}

static int
valid_actor(const unsigned char *s, size_t n)
{
    /* Strings here hold only 0x20-0x7f already; isprintable() refuses DEL. */
    if (n < 1 || n > ACTOR_MAX) {
        return 0;
    }
    return memchr(s, 0x7f, n) == NULL;
}

static int
valid_salt(const unsigned char *s, size_t n)
{
    if (n != SALT_HEX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

static PyObject *
ascii_str(const unsigned char *s, size_t n)
{
    PyObject *str = PyUnicode_New((Py_ssize_t)n, 127);
    if (str != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(str), s, n);
    }
    return str;
}

typedef struct {
    parser_t ps;
    unsigned char *leaf; /* 0x00 followed by the body */
    PyObject *kinds;
    const char *submitter; /* the stamped submitter (ASCII, valid), or NULL */
    size_t submitter_len;
    const char *reserved[MAX_RESERVED]; /* id prefixes to decline (ASCII) */
    size_t reserved_len[MAX_RESERVED];
    size_t reserved_count;
    const unsigned char *salts;
    size_t salts_len;
    size_t salts_used;
    PyObject *last_kind; /* the last kind found in `kinds`, reused while lines repeat it */
    PyTypeObject *record_type; /* a tuple subclass for the results, or NULL for plain tuples */
} context_t;

static inline void
put(unsigned char **at, const char *text, size_t n)
{
    memcpy(*at, text, n);
    *at += n;
}

/* One accepted line: its body (after the 0x00 leaf prefix in cx->leaf) and fields. */
typedef struct {
    size_t body_len;
    unsigned char digest[32];
    size_t id_at, id_len, kind_at, kind_len, actor_at, actor_len; /* into the body */
    int64_t millis;
    int salted;
    PyObject *kind; /* a new reference to the kind, a member of cx->kinds */
} prepared_t;

#define DECLINED ((PyObject *)1)

/*
 * Prepare one non-blank line into `pr` (its body in cx->leaf + 1). Returns Py_True (no new
 * reference) when accepted, DECLINED to decline, or NULL with an exception set.
 */
static PyObject *
prepare_fields(context_t *cx, const unsigned char *line, size_t len, prepared_t *pr)
{
    parser_t *ps = &cx->ps;
    ps->p = line;
    ps->end = line + len;
    ps->out_len = 0;
    ps->members_len = 0;

    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != '{') {
        return DECLINED;
    }
    ps->p++;
    skip_ws(ps);

    size_t at[F_COUNT] = {0}, size[F_COUNT] = {0};
    unsigned seen = 0;
    for (;;) {
        const unsigned char *key;
        size_t key_len;
        if (ps->p >= ps->end || *ps->p != '"' || scan_string(ps, &key, &key_len) != OK) {
            return DECLINED;
        }
        int field = field_of(key, key_len);
        if (field < 0 || (seen & (1U << field))) {
            return DECLINED;
        }
        seen |= 1U << field;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            return DECLINED;
        }
        ps->p++;
        skip_ws(ps);
        at[field] = ps->out_len;
        int rc = parse_value(ps, 1);
        if (rc == NOMEM) {
            return PyErr_NoMemory();
        }
        if (rc != OK) {
            return DECLINED;
        }
        size[field] = ps->out_len - at[field];
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            break;
        }
        return DECLINED;
    }
    skip_ws(ps);
    if (ps->p != ps->end) {
        return DECLINED;
    }
    const unsigned required = (1U << F_SALT) - 1;
    if ((seen & required) != required) {
        return DECLINED;
    }
    const unsigned char *out = ps->out;
    for (int f = 0; f < F_COUNT; f++) {
        if ((seen & (1U << f)) && f != F_PAYLOAD && out[at[f]] != '"') {
            return DECLINED; /* every field but the payload is a string */
        }
    }
    if (out[at[F_PAYLOAD]] != '{') {
        return DECLINED;
    }
    /* The strings' contents, without their quotes. */
    const unsigned char *id = out + at[F_ID] + 1, *kind = out + at[F_KIND] + 1;
    const unsigned char *actor = out + at[F_ACTOR] + 1, *stamp = out + at[F_TIMESTAMP] + 1;
    size_t id_len = size[F_ID] - 2, kind_len = size[F_KIND] - 2;
    size_t actor_len = size[F_ACTOR] - 2, stamp_len = size[F_TIMESTAMP] - 2;
    int salted = (seen & (1U << F_SALT)) != 0;
    int64_t millis;
    if (!valid_id(id, id_len) || !valid_actor(actor, actor_len) ||
        !parse_timestamp(stamp, stamp_len, &millis) ||
        (salted && !valid_salt(out + at[F_SALT] + 1, size[F_SALT] - 2))) {
        return DECLINED;
    }
    for (size_t r = 0; r < cx->reserved_count; r++) {
        size_t n = cx->reserved_len[r];
        if (id_len >= n && memcmp(id, cx->reserved[r], n) == 0) {
            return DECLINED; /* a reserved id: the Python path refuses it */
        }
    }

    /* The kind: a member of `kinds`. */
    PyObject *kind_str;
    if (cx->last_kind != NULL && PyUnicode_GET_LENGTH(cx->last_kind) == (Py_ssize_t)kind_len &&
        memcmp(PyUnicode_1BYTE_DATA(cx->last_kind), kind, kind_len) == 0) {
        kind_str = Py_NewRef(cx->last_kind);
    }
    else {
        kind_str = ascii_str(kind, kind_len);
        if (kind_str == NULL) {
            return NULL;
        }
        int known = PySet_Contains(cx->kinds, kind_str);
        if (known < 0) {
            Py_DECREF(kind_str);
            return NULL;
        }
        if (!known) {
            Py_DECREF(kind_str);
            return DECLINED;
        }
        Py_XSETREF(cx->last_kind, Py_NewRef(kind_str));
    }

    /* The body: {"actor":…,"id":…,"kind":…,"payload":…,"salt":"…"[,"submitter":"…"],
       "timestamp":…} (RFC 8785 key order: salt < submitter < timestamp). */
    size_t body_len = 58 + size[F_ACTOR] + size[F_ID] + size[F_KIND] + size[F_PAYLOAD] +
                      SALT_HEX + size[F_TIMESTAMP] +
                      (cx->submitter ? 15 + cx->submitter_len : 0);
    if (body_len > MAX_RECORD_BYTES) {
        Py_DECREF(kind_str);
        return DECLINED;
    }
    unsigned char salt_hex[SALT_HEX];
    if (salted) {
        memcpy(salt_hex, out + at[F_SALT] + 1, SALT_HEX);
    }
    else {
        if (cx->salts_len - cx->salts_used < SALT_BYTES) {
            Py_DECREF(kind_str);
            PyErr_SetString(PyExc_ValueError, "prepare_lines: ran out of salts");
            return NULL;
        }
        static const char hex[] = "0123456789abcdef";
        const unsigned char *salt = cx->salts + cx->salts_used;
        cx->salts_used += SALT_BYTES;
        for (int i = 0; i < SALT_BYTES; i++) {
            salt_hex[2 * i] = (unsigned char)hex[salt[i] >> 4];
            salt_hex[2 * i + 1] = (unsigned char)hex[salt[i] & 15];
        }
    }
    unsigned char *w = cx->leaf;
    *w++ = 0x00; /* RFC 9162: leaf hash prefix */
    put(&w, "{\"actor\":", 9);
    put(&w, (const char *)out + at[F_ACTOR], size[F_ACTOR]);
    put(&w, ",\"id\":", 6);
    put(&w, (const char *)out + at[F_ID], size[F_ID]);
    put(&w, ",\"kind\":", 8);
    put(&w, (const char *)out + at[F_KIND], size[F_KIND]);
    put(&w, ",\"payload\":", 11);
    put(&w, (const char *)out + at[F_PAYLOAD], size[F_PAYLOAD]);
    put(&w, ",\"salt\":\"", 9);
    put(&w, (const char *)salt_hex, SALT_HEX);
    if (cx->submitter) {
        put(&w, "\",\"submitter\":\"", 15);
        put(&w, cx->submitter, cx->submitter_len);
    }
    put(&w, "\",\"timestamp\":", 14);
    put(&w, (const char *)out + at[F_TIMESTAMP], size[F_TIMESTAMP]);
    *w++ = '}';
    assert((size_t)(w - cx->leaf) == body_len + 1);

    sha256_with(sha256_blocks, cx->leaf, body_len + 1, pr->digest);
    pr->body_len = body_len;
    pr->actor_at = 10;
    pr->actor_len = actor_len;
    pr->id_at = 9 + size[F_ACTOR] + 7;
    pr->id_len = id_len;
    pr->kind_at = pr->id_at + size[F_ID] + 8;
    pr->kind_len = kind_len;
    pr->millis = millis;
    pr->salted = salted;
    pr->kind = kind_str;
    return Py_True;
}

/*
 * Prepare one non-blank line. Returns a new reference to the record tuple, Py_None (a new
 * reference) to decline, or NULL with an exception set.
 */
static PyObject *
prepare_line(context_t *cx, const unsigned char *line, size_t len)
{
    prepared_t pr;
    PyObject *status = prepare_fields(cx, line, len, &pr);
    if (status == DECLINED) {
        Py_RETURN_NONE;
    }
    if (status == NULL) {
        return NULL;
    }
    const unsigned char *body = cx->leaf + 1;
    PyObject *record = cx->record_type ? cx->record_type->tp_alloc(cx->record_type, 7)
                                       : PyTuple_New(7);
    if (record == NULL) {
        Py_DECREF(pr.kind);
        return NULL;
    }
    PyTuple_SET_ITEM(record, 1, pr.kind);
    PyObject *items[7] = {
        ascii_str(body + pr.id_at, pr.id_len),
        NULL,
        ascii_str(body + pr.actor_at, pr.actor_len),
        PyLong_FromLongLong(pr.millis),
        PyBool_FromLong(pr.salted),
        PyBytes_FromStringAndSize((const char *)body, (Py_ssize_t)pr.body_len),
        PyBytes_FromStringAndSize((const char *)pr.digest, 32),
    };
    int failed = 0;
    for (int i = 0; i < 7; i++) {
        if (i == 1) {
            continue;
        }
        if (items[i] == NULL) {
            failed = 1;
            items[i] = Py_NewRef(Py_None);
        }
        PyTuple_SET_ITEM(record, i, items[i]);
    }
    if (failed) {
        Py_DECREF(record);
        return NULL;
    }
    /* Only strings, an int, a bool and bytes: no reference cycle can pass through the tuple,
       so spare the cyclic GC from scanning it (CPython would untrack it at its first pass). */
    PyObject_GC_UnTrack(record);
    return record;
}

static int
is_blank(const unsigned char *s, size_t n)
{
    /* bytes.strip() removes these: space, \t, \n, \v, \f, \r */
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && (s[i] < '\t' || s[i] > '\r')) {
            return 0;
        }
    }
    return 1;
}

/* Whether `s` (n bytes) is a valid submitter: (key|local|service):[A-Za-z0-9._@-]{1,64}. */
static int
valid_submitter(const char *s, size_t n)
{
    static const char *const types[] = {"key:", "local:", "service:"};
    for (int t = 0; t < 3; t++) {
        size_t k = strlen(types[t]);
        if (n <= k || n - k > SUBMITTER_NAME_MAX || memcmp(s, types[t], k) != 0) {
            continue;
        }
        for (size_t i = k; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '@' || c == '-')) {
                return 0;
            }
        }
        return 1;
    }
    return 0;
}

/* Set up a context for `kinds` and `salts` (a set; 16 random bytes per unsalted record), the
   optional `submitter` (a str or None) and `reserved` id prefixes (a tuple of str, or NULL);
   0, or -1 with an exception set (`name` the calling function's). The strings are borrowed
   from the arguments, which outlive the context. */
static int
context_open(context_t *cx, PyObject *kinds, const Py_buffer *salts, PyObject *submitter,
             PyObject *reserved, const char *name)
{
    memset(cx, 0, sizeof *cx);
    if (!PyAnySet_Check(kinds)) {
        PyErr_Format(PyExc_TypeError, "%s: kinds must be a set or frozenset", name);
        return -1;
    }
    if (submitter != NULL && submitter != Py_None) {
        Py_ssize_t n;
        const char *text = PyUnicode_Check(submitter) ? PyUnicode_AsUTF8AndSize(submitter, &n)
                                                      : NULL;
        if (text == NULL || !valid_submitter(text, (size_t)n)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError,
                         "%s: submitter must be key:<id>, local:<user> or service:<name>", name);
            return -1;
        }
        cx->submitter = text;
        cx->submitter_len = (size_t)n;
    }
    if (reserved != NULL && reserved != Py_None) {
        if (!PyTuple_Check(reserved) || PyTuple_GET_SIZE(reserved) > MAX_RESERVED) {
            PyErr_Format(PyExc_TypeError, "%s: reserved must be a tuple of at most %d str",
                         name, MAX_RESERVED);
            return -1;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(reserved); i++) {
            PyObject *prefix = PyTuple_GET_ITEM(reserved, i);
            Py_ssize_t n;
            const char *text = PyUnicode_Check(prefix) ? PyUnicode_AsUTF8AndSize(prefix, &n)
                                                       : NULL;
            if (text == NULL || n < 1) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError, "%s: reserved prefixes must be non-empty str",
                             name);
                return -1;
            }
            cx->reserved[cx->reserved_count] = text;
            cx->reserved_len[cx->reserved_count++] = (size_t)n;
        }
    }
    cx->kinds = kinds;
    cx->salts = salts->buf;
    cx->salts_len = (size_t)salts->len;
    cx->ps.out = PyMem_Malloc(MAX_RECORD_BYTES);
    cx->ps.scratch = PyMem_Malloc(MAX_RECORD_BYTES);
    cx->leaf = PyMem_Malloc(MAX_RECORD_BYTES + 1);
    if (cx->ps.out == NULL || cx->ps.scratch == NULL || cx->leaf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Free what context_open() took (also after it failed). */
static void
context_close(context_t *cx)
{
    Py_CLEAR(cx->last_kind);
    PyMem_Free(cx->ps.out);
    PyMem_Free(cx->ps.scratch);
    PyMem_Free(cx->ps.members);
    PyMem_Free(cx->leaf);
    memset(cx, 0, sizeof *cx);
}

PyDoc_STRVAR(prepare_lines_doc,
             "prepare_lines(raw, kinds, salts, record_type=None, submitter=None, reserved=None,\n"
             "              /)\n--\n\n"
             "Prepare the lines of a JSON Lines chunk.\n\n"
             "Returns one item per non-blank line of ``raw`` (split on b'\\n', numbered from 0):\n"
             "the tuple (record_id, kind, actor, timestamp_ms, salted, body, leaf_hash) when\n"
             "the line is a simple record this fast path is sure about, else the line's\n"
             "number, for the caller to parse with records.parse_json_line. ``kinds`` is the\n"
             "set of allowed kinds; ``salts`` supplies 16 random bytes, in order, for each\n"
             "accepted record without a salt (ValueError if it runs out). ``record_type``, a\n"
             "tuple subclass with no fields of its own (a NamedTuple), is the type of the\n"
             "returned tuples. ``submitter`` (key:..., local:..., service:...) is stamped into\n"
             "every body; a line with its own submitter field is declined, and so is a line\n"
             "whose id starts with one of the ``reserved`` prefixes (a tuple of str).");

static PyObject *
prepare_lines(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer raw, salts;
    PyObject *kinds;
    PyObject *record_type = Py_None, *submitter = Py_None, *reserved = Py_None;
    if (!PyArg_ParseTuple(args, "y*Oy*|OOO:prepare_lines", &raw, &kinds, &salts, &record_type,
                          &submitter, &reserved)) {
        return NULL;
    }
    PyObject *result = NULL;
    context_t cx;
    if (context_open(&cx, kinds, &salts, submitter, reserved, "prepare_lines") < 0) {
        goto done;
    }
    if (record_type != Py_None) {
        if (!PyType_Check(record_type) ||
            !PyType_IsSubtype((PyTypeObject *)record_type, &PyTuple_Type) ||
            ((PyTypeObject *)record_type)->tp_basicsize != PyTuple_Type.tp_basicsize ||
            ((PyTypeObject *)record_type)->tp_dictoffset != 0) {
            PyErr_SetString(PyExc_TypeError,
                            "prepare_lines: record_type must be a tuple subclass without fields "
                            "of its own");
            goto done;
        }
        cx.record_type = (PyTypeObject *)record_type;
    }
    result = PyList_New(0);
    if (result == NULL) {
        goto done;
    }
    const unsigned char *p = raw.buf;
    const unsigned char *end = p + raw.len;
    for (Py_ssize_t number = 0;; number++) {
        const unsigned char *newline = memchr(p, '\n', (size_t)(end - p));
        const unsigned char *stop = newline ? newline : end;
        size_t len = (size_t)(stop - p);
        if (!is_blank(p, len)) {
            PyObject *item = prepare_line(&cx, p, len);
            if (item == Py_None) {
                Py_DECREF(item);
                item = PyLong_FromSsize_t(number);
            }
            if (item == NULL || PyList_Append(result, item) < 0) {
                Py_XDECREF(item);
                Py_CLEAR(result);
                goto done;
            }
            Py_DECREF(item);
        }
        if (newline == NULL) {
            break;
        }
        p = newline + 1;
    }
done:
    context_close(&cx);
    PyBuffer_Release(&raw);
    PyBuffer_Release(&salts);
    return result;
}

/* ---- prepare_batch: a chunk's records as columns (bytes), for bulk appends ---------- */

typedef struct {
    char *data;
    size_t len, cap;
} growbuf;

static int
grow_reserve(growbuf *b, size_t more)
{
    if (b->len + more <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) {
        cap *= 2;
    }
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int
grow_put(growbuf *b, const void *data, size_t len)
{
    if (grow_reserve(b, len) < 0) {
        return -1;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

/* The decimal digits of `value`, without snprintf (this runs a few times per record). */
static int
grow_int(growbuf *b, long long value)
{
    char digits[24];
    char *end = digits + sizeof digits, *p = end;
    unsigned long long magnitude = value < 0 ? 0ULL - (unsigned long long)value
                                             : (unsigned long long)value;
    do {
        *--p = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0) {
        *--p = '-';
    }
    return grow_put(b, p, (size_t)(end - p));
}

static PyObject *
grow_bytes(growbuf *b)
{
    return PyBytes_FromStringAndSize(b->data ? b->data : "", (Py_ssize_t)b->len);
}

/* One record of a batch, as `meta` holds it (native byte order; see native.py, BATCH_META). */
typedef struct {
    uint32_t body_at, body_len, id_at, id_len, kind_at, kind_len, actor_at, actor_len;
    int64_t millis;
    uint32_t salted, unused;
} batch_meta_t;

PyDoc_STRVAR(prepare_batch_doc,
             "prepare_batch(raw, kinds, salts, submitter=None, reserved=None, /)\n--\n\n"
             "Prepare every line of a JSON Lines chunk as prepare_lines does, into columns:\n"
             "(count, ids_json, meta, bodies, leaves). ``ids_json`` is the JSON array of the\n"
             "record ids, ``meta`` one 48-byte entry per record (offsets into ``bodies``, the\n"
             "timestamp, the salted flag), ``bodies`` the canonical bodies back to back and\n"
             "``leaves`` the 32-byte leaf hashes. Returns None as soon as one non-blank line\n"
             "is declined (the caller then uses prepare_lines).");

static PyObject *
prepare_batch(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer raw, salts;
    PyObject *kinds, *submitter = Py_None, *reserved = Py_None;
    if (!PyArg_ParseTuple(args, "y*Oy*|OO:prepare_batch", &raw, &kinds, &salts, &submitter,
                          &reserved)) {
        return NULL;
    }
    PyObject *result = NULL;
    growbuf ids = {NULL, 0, 0}, meta = {NULL, 0, 0}, bodies = {NULL, 0, 0}, leaves = {NULL, 0, 0};
    context_t cx;
    if (context_open(&cx, kinds, &salts, submitter, reserved, "prepare_batch") < 0) {
        goto done;
    }
    if (grow_reserve(&bodies, (size_t)raw.len + (size_t)raw.len / 4 + 64) < 0 ||
        grow_put(&ids, "[", 1) < 0) {
        goto done;
    }
    Py_ssize_t count = 0;
    const unsigned char *p = raw.buf;
    const unsigned char *end = p + raw.len;
    for (;;) {
        const unsigned char *newline = memchr(p, '\n', (size_t)(end - p));
        const unsigned char *stop = newline ? newline : end;
        size_t len = (size_t)(stop - p);
        if (!is_blank(p, len)) {
            prepared_t pr;
            PyObject *status = prepare_fields(&cx, p, len, &pr);
            if (status == NULL) {
                goto done;
            }
            if (status == DECLINED) {
                result = Py_NewRef(Py_None);
                goto done;
            }
            Py_DECREF(pr.kind);
            const unsigned char *body = cx.leaf + 1;
            batch_meta_t entry = {
                .body_at = (uint32_t)bodies.len,
                .body_len = (uint32_t)pr.body_len,
                .id_at = (uint32_t)(bodies.len + pr.id_at),
                .id_len = (uint32_t)pr.id_len,
                .kind_at = (uint32_t)(bodies.len + pr.kind_at),
                .kind_len = (uint32_t)pr.kind_len,
                .actor_at = (uint32_t)(bodies.len + pr.actor_at),
                .actor_len = (uint32_t)pr.actor_len,
                .millis = pr.millis,
                .salted = (uint32_t)pr.salted,
                .unused = 0,
            };
            if (bodies.len + pr.body_len > UINT32_MAX) {
                PyErr_SetString(PyExc_ValueError, "prepare_batch: the chunk is over 4 GiB");
                goto done;
            }
            if ((count && grow_put(&ids, ",", 1) < 0) || grow_put(&ids, "\"", 1) < 0 ||
                grow_put(&ids, body + pr.id_at, pr.id_len) < 0 || grow_put(&ids, "\"", 1) < 0 ||
                grow_put(&meta, &entry, sizeof entry) < 0 ||
                grow_put(&bodies, body, pr.body_len) < 0 ||
                grow_put(&leaves, pr.digest, 32) < 0) {
                goto done;
            }
            count++;
        }
        if (newline == NULL) {
            break;
        }
        p = newline + 1;
    }
    if (grow_put(&ids, "]", 1) < 0) {
        goto done;
    }
    result = Py_BuildValue("(nNNNN)", count, grow_bytes(&ids), grow_bytes(&meta),
                           grow_bytes(&bodies), grow_bytes(&leaves));
done:
    context_close(&cx);
    PyMem_Free(ids.data);
    PyMem_Free(meta.data);
    PyMem_Free(bodies.data);
    PyMem_Free(leaves.data);
    PyBuffer_Release(&raw);
    PyBuffer_Release(&salts);
    return result;
}

PyDoc_STRVAR(sha256_doc,
             "sha256(data, /, portable=False)\n--\n\n"
             "Return the SHA-256 digest of ``data`` with this module's implementation (the\n"
             "portable one when ``portable`` is true, else the one prepare_lines uses).");

static PyObject *
sha256(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"", "portable", NULL};
    Py_buffer data;
    int portable = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|$p:sha256", keywords, &data, &portable)) {
        return NULL;
    }
    unsigned char digest[32];
    sha256_blocks_fn blocks = portable ? sha256_blocks_portable : sha256_blocks;
    Py_BEGIN_ALLOW_THREADS
    sha256_with(blocks, data.buf, (size_t)data.len, digest);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return PyBytes_FromStringAndSize((const char *)digest, 32);
}

PyDoc_STRVAR(hash_pairs_doc,
             "hash_pairs(pairs, /)\n--\n\n"
             "Return the RFC 9162 interior-node hashes SHA-256(0x01 || left || right) of\n"
             "``pairs``, a sequence of 64-byte left||right pairs, concatenated (32 bytes each).\n"
             "ValueError if the length of ``pairs`` is not a multiple of 64.");

static PyObject *
hash_pairs(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer pairs;
    if (PyObject_GetBuffer(arg, &pairs, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (pairs.len % 64) {
        PyBuffer_Release(&pairs);
        PyErr_SetString(PyExc_ValueError, "hash_pairs: the length is not a multiple of 64");
        return NULL;
    }
    Py_ssize_t count = pairs.len / 64;
    PyObject *result = PyBytes_FromStringAndSize(NULL, count * 32);
    if (result == NULL) {
        PyBuffer_Release(&pairs);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *in = pairs.buf;
    Py_BEGIN_ALLOW_THREADS
    unsigned char node[65];
    node[0] = 0x01; /* RFC 9162 2.1.1: the interior node prefix */
    for (Py_ssize_t i = 0; i < count; i++) {
        memcpy(node + 1, in + 64 * i, 64);
        sha256_with(sha256_blocks, node, sizeof node, out + 32 * i);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&pairs);
    return result;
}

/* ---- bundle parts: the plain form of a record bundle (chainaudit/bundles.py) -------- */

/* A JSON string exactly as Python's json.dumps(..., ensure_ascii=False) writes it. */
static int
grow_json_string(growbuf *b, PyObject *value)
{
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(value, &len);
    if (text == NULL || grow_reserve(b, 6 * (size_t)len + 2) < 0) {
        return -1;
    }
    char *out = b->data + b->len;
    *out++ = '"';
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = (char)c;
        } else if (c < 0x20) {
            const char *brief = c == '\b' ? "b" : c == '\f' ? "f" : c == '\n' ? "n"
                              : c == '\r' ? "r" : c == '\t' ? "t" : NULL;
            out += brief ? sprintf(out, "\\%s", brief) : sprintf(out, "\\u%04x", c);
        } else {
            *out++ = (char)c;
        }
    }
    *out++ = '"';
    b->len = (size_t)(out - b->data);
    return 0;
}

/* One header entry: [index,"record_id","kind","actor",timestamp_ms,body_length] (with a
   leading comma unless it is the first). */
static int
put_entry(growbuf *items, long long index, PyObject *const texts[3], long long millis,
          long long length)
{
    if (grow_put(items, items->len ? ",[" : "[", items->len ? 2 : 1) < 0 ||
        grow_int(items, index) < 0) {
        return -1;
    }
    for (int f = 0; f < 3; f++) {
        if (grow_put(items, ",", 1) < 0 || grow_json_string(items, texts[f]) < 0) {
            return -1;
        }
    }
    return grow_put(items, ",", 1) < 0 || grow_int(items, millis) < 0 ||
                   grow_put(items, ",", 1) < 0 || grow_int(items, length) < 0 ||
                   grow_put(items, "]", 1) < 0
               ? -1
               : 0;
}

PyDoc_STRVAR(bundle_parts_doc,
             "bundle_parts(first, records, fields, /)\n--\n\n"
             "Return (items, bodies) of a record bundle's plain form: the header entries\n"
             "``[index,record_id,kind,actor,timestamp_ms,body_length]`` joined by commas, and\n"
             "the bodies back to back. ``records`` is a list of tuples; ``fields`` gives the\n"
             "positions in each of record_id, kind, actor (str), timestamp_ms (int) and body\n"
             "(bytes, or None for an erased record, length -1); record i is leaf ``first + i``.\n"
             "TypeError for a field of another type.");

static PyObject *
bundle_parts(PyObject *Py_UNUSED(module), PyObject *args)
{
    long long first;
    PyObject *records;
    int at[5];
    if (!PyArg_ParseTuple(args, "LO!(iiiii):bundle_parts", &first, &PyList_Type, &records,
                          &at[0], &at[1], &at[2], &at[3], &at[4])) {
        return NULL;
    }
    growbuf items = {NULL, 0, 0}, bodies = {NULL, 0, 0};
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        PyObject *record = PyList_GET_ITEM(records, i);
        if (!PyTuple_Check(record)) {
            PyErr_SetString(PyExc_TypeError, "bundle_parts: records must be tuples");
            goto done;
        }
        for (int f = 0; f < 5; f++) {
            if (at[f] < 0 || at[f] >= PyTuple_GET_SIZE(record)) {
                PyErr_SetString(PyExc_IndexError, "bundle_parts: a field position is out of range");
                goto done;
            }
        }
        PyObject *texts[3] = {PyTuple_GET_ITEM(record, at[0]), PyTuple_GET_ITEM(record, at[1]),
                              PyTuple_GET_ITEM(record, at[2])};
        PyObject *stamp = PyTuple_GET_ITEM(record, at[3]);
        PyObject *body = PyTuple_GET_ITEM(record, at[4]);
        if (!PyUnicode_Check(texts[0]) || !PyUnicode_Check(texts[1]) ||
            !PyUnicode_Check(texts[2]) || !PyLong_Check(stamp) ||
            (body != Py_None && !PyBytes_Check(body))) {
            PyErr_SetString(PyExc_TypeError,
                            "bundle_parts: record_id, kind and actor must be str, timestamp_ms "
                            "an int and body bytes or None");
            goto done;
        }
        long long millis = PyLong_AsLongLong(stamp);
        if (millis == -1 && PyErr_Occurred()) {
            goto done;
        }
        long long length = body == Py_None ? -1 : (long long)PyBytes_GET_SIZE(body);
        if (put_entry(&items, first + i, texts, millis, length) < 0 ||
            (length > 0 && grow_put(&bodies, PyBytes_AS_STRING(body), (size_t)length) < 0)) {
            goto done;
        }
    }
    result = Py_BuildValue("(NN)", grow_bytes(&items), grow_bytes(&bodies));
done:
    PyMem_Free(items.data);
    PyMem_Free(bodies.data);
    return result;
}

PyDoc_STRVAR(batch_bundle_parts_doc,
             "batch_bundle_parts(first, meta, bodies, start, stop, /)\n--\n\n"
             "bundle_parts() for records start..stop-1 of a prepare_batch() result (``meta`` and\n"
             "``bodies``), record start being leaf ``first``. ValueError if the range or an\n"
             "offset lies outside the columns.");

static PyObject *
batch_bundle_parts(PyObject *Py_UNUSED(module), PyObject *args)
{
    long long first;
    Py_buffer meta, bodies;
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "Ly*y*nn:batch_bundle_parts", &first, &meta, &bodies, &start,
                          &stop)) {
        return NULL;
    }
    growbuf items = {NULL, 0, 0}, plain = {NULL, 0, 0};
    PyObject *result = NULL;
    Py_ssize_t count = meta.len / (Py_ssize_t)sizeof(batch_meta_t);
    if (meta.len % (Py_ssize_t)sizeof(batch_meta_t) || start < 0 || stop < start || stop > count) {
        PyErr_SetString(PyExc_ValueError, "batch_bundle_parts: no such records in the batch");
        goto done;
    }
    const batch_meta_t *entries = meta.buf;
    const unsigned char *text = bodies.buf;
    for (Py_ssize_t i = start; i < stop; i++) {
        batch_meta_t e;
        memcpy(&e, entries + i, sizeof e);
        if ((Py_ssize_t)e.body_at + e.body_len > bodies.len ||
            (Py_ssize_t)e.id_at + e.id_len > bodies.len ||
            (Py_ssize_t)e.kind_at + e.kind_len > bodies.len ||
            (Py_ssize_t)e.actor_at + e.actor_len > bodies.len) {
            PyErr_SetString(PyExc_ValueError, "batch_bundle_parts: an offset is out of range");
            goto done;
        }
        /* Batch strings are ASCII without escapes (prepare_batch takes no others). */
        if (grow_put(&items, items.len ? ",[" : "[", items.len ? 2 : 1) < 0 ||
            grow_int(&items, first + (i - start)) < 0 || grow_put(&items, ",\"", 2) < 0 ||
            grow_put(&items, text + e.id_at, e.id_len) < 0 ||
            grow_put(&items, "\",\"", 3) < 0 || grow_put(&items, text + e.kind_at, e.kind_len) < 0 ||
            grow_put(&items, "\",\"", 3) < 0 ||
            grow_put(&items, text + e.actor_at, e.actor_len) < 0 ||
            grow_put(&items, "\",", 2) < 0 || grow_int(&items, e.millis) < 0 ||
            grow_put(&items, ",", 1) < 0 || grow_int(&items, e.body_len) < 0 ||
            grow_put(&items, "]", 1) < 0 ||
            grow_put(&plain, text + e.body_at, e.body_len) < 0) {
            goto done;
        }
    }
    result = Py_BuildValue("(NN)", grow_bytes(&items), grow_bytes(&plain));
done:
    PyMem_Free(items.data);
    PyMem_Free(plain.data);
    PyBuffer_Release(&meta);
    PyBuffer_Release(&bodies);
    return result;
}

static PyMethodDef native_methods[] = {
    {"batch_bundle_parts", batch_bundle_parts, METH_VARARGS, batch_bundle_parts_doc},
    {"bundle_parts", bundle_parts, METH_VARARGS, bundle_parts_doc},
    {"prepare_batch", prepare_batch, METH_VARARGS, prepare_batch_doc},
    {"hash_pairs", hash_pairs, METH_O, hash_pairs_doc},
    {"prepare_lines", prepare_lines, METH_VARARGS, prepare_lines_doc},
    {"sha256", (PyCFunction)(void (*)(void))sha256, METH_VARARGS | METH_KEYWORDS, sha256_doc},
    {NULL, NULL, 0, NULL},
};

static int
native_exec(PyObject *module)
{
    init_tables();
    int hardware = 0;
#if CHAINAUDIT_SHA_NI
    if (cpu_has_sha_extensions()) {
        sha256_blocks = sha256_blocks_shani;
        hardware = 1;
    }
#endif
    if (PyModule_AddIntConstant(module, "MAX_RECORD_BYTES", MAX_RECORD_BYTES) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "SHA256_HARDWARE", hardware ? Py_True : Py_False);
}

static PyModuleDef_Slot native_slots[] = {
    {Py_mod_exec, (void *)native_exec},
    {0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "chainaudit._native",
    .m_doc = "Native fast path of bulk ingest: see chainaudit.native.",
    .m_size = 0,
    .m_methods = native_methods,
    .m_slots = native_slots,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
