/* Kraken spot v2 order books in C: the same books, verdicts and checksums as the pure-Python
 * reference (kraken_book_reference.py), at a small fraction of its cost per frame.
 *
 * Why C: a connector verifies every book frame before it publishes it, and in Python reading the
 * frame, placing its levels and truncating cost about three quarters of the connector's CPU.
 *
 * Semantics kept exactly (kraken_book.py's module docstring is the specification):
 *   - prices and quantities stay decimal text, never floats; a level keeps its texts;
 *   - a price is ordered by its exact value, compared as a normalised decimal (sign, position of the
 *     point, significant digits), so any precision or digit count compares exactly, with no integer
 *     that could overflow; exponent forms (which only the JSON reader lets through) are normalised
 *     the same way, and an exponent beyond MAX_PRICE_EXPONENT is InvalidOperation as in the reference;
 *   - an update's levels apply in order (a price may repeat), a quantity whose digits are all zero
 *     deletes, each side is truncated to the depth after each update;
 *   - checksum: CRC32 over the top 10 asks low to high, then the top 10 bids high to low, each level
 *     as price text and qty text with '.' removed and leading zeros stripped.
 * A frame in Kraken's compact layout is read here, byte for byte the language of the reference's
 * regular expression; any other frame goes to the Python reader given to configure(), and its levels
 * are then applied here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define CHECKSUM_LEVELS 10
#define MAX_PRICE_EXPONENT 100
/* An exponent is read saturated at this magnitude: far beyond any usable price and any Decimal. */
#define EXPONENT_CAP 4000000000000000000LL

/* ---- CRC32 (the zlib polynomial; zlib.crc32 gives the same values) ---------------------------- */

/* Slicing by 8: eight bytes per step through eight tables, about a quarter of the instructions of a
 * byte at a time on the 100-300 bytes of a book's top 10 (hashed whenever a change lands there). */
static uint32_t crc_tables[8][256];

static void
crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_tables[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_tables[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc_tables[0][c & 0xFF] ^ (c >> 8);
            crc_tables[t][n] = c;
        }
    }
}

static inline uint32_t
load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint32_t
crc_update(uint32_t crc, const char *data, Py_ssize_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    crc = ~crc;
    while (n >= 8) {
        uint32_t one = load_le32(p) ^ crc, two = load_le32(p + 4);
        crc = crc_tables[7][one & 0xFF] ^ crc_tables[6][(one >> 8) & 0xFF] ^ crc_tables[5][(one >> 16) & 0xFF] ^
              crc_tables[4][one >> 24] ^ crc_tables[3][two & 0xFF] ^ crc_tables[2][(two >> 8) & 0xFF] ^
              crc_tables[1][(two >> 16) & 0xFF] ^ crc_tables[0][two >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        crc = crc_tables[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- Objects handed over by kraken_book.py (configure) -------------------------------------- */

static PyObject *verdict_type;   /* BookVerdict, a tuple subclass */
static PyObject *status_ok, *status_mismatch, *status_no_snapshot, *status_malformed;
static PyObject *unreadable;     /* BookVerdict(MALFORMED, None, False) */
static PyObject *slow_reader;    /* parse_book_frame: bytes -> BookFrame | None */
static PyObject *invalid_operation; /* decimal.InvalidOperation */

/* ---- Numbers ---------------------------------------------------------------------------------- */

/* A JSON number's exact value: 0 if sign is 0, else sign * 0.DIGITS * 10**point, DIGITS without
 * leading or trailing zeros. Two texts have the same value exactly when their Keys are equal. */
typedef struct {
    int sign;
    int64_t point;
    Py_ssize_t ndigits;
    uint64_t head; /* the first 8 digits as bytes, zero-padded: one integer comparison settles most pairs */
} Key;

/* Reads a JSON number (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?) into *key, its significant
 * digits into digits (room for n bytes). Returns 0, or -1 if the text is not a JSON number.
 * *has_exponent and *tuple_exponent (Decimal(text).as_tuple().exponent) say what the reference checks. */
static int
read_number(const char *s, Py_ssize_t n, Key *key, char *digits, int *has_exponent, int64_t *tuple_exponent)
{
    Py_ssize_t i = 0;
    int negative = 0;
    if (i < n && s[i] == '-') {
        negative = 1;
        i++;
    }
    Py_ssize_t int_start = i;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return -1;
    Py_ssize_t int_end = i, frac_start = i, frac_end = i;
    if (i < n && s[i] == '.') {
        i++;
        frac_start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == frac_start)
            return -1;
        frac_end = i;
    }
    int64_t e = 0;
    *has_exponent = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        *has_exponent = 1;
        i++;
        int e_negative = 0;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            e_negative = s[i] == '-';
            i++;
        }
        Py_ssize_t e_start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (e < EXPONENT_CAP)
                e = e * 10 + (s[i] - '0');
            i++;
        }
        if (i == e_start)
            return -1;
        if (e > EXPONENT_CAP)
            e = EXPONENT_CAP;
        if (e_negative)
            e = -e;
    }
    if (i != n)
        return -1;
    Py_ssize_t int_len = int_end - int_start, frac_len = frac_end - frac_start;
    *tuple_exponent = e - frac_len;
    /* The mantissa's digits are the integer part then the fraction: copy them, then trim. */
    Py_ssize_t m = 0;
    memcpy(digits, s + int_start, int_len);
    m += int_len;
    memcpy(digits + m, s + frac_start, frac_len);
    m += frac_len;
    int64_t point = int_len + e;
    Py_ssize_t lead = 0;
    while (lead < m && digits[lead] == '0')
        lead++;
    if (lead == m) {
        key->sign = 0;
        key->point = 0;
        key->ndigits = 0;
        key->head = 0;
        return 0;
    }
    Py_ssize_t end = m;
    while (digits[end - 1] == '0')
        end--;
    if (lead)
        memmove(digits, digits + lead, end - lead);
    key->sign = negative ? -1 : 1;
    key->point = point - lead;
    key->ndigits = end - lead;
    uint64_t head = 0;
    for (Py_ssize_t j = 0; j < 8; j++)
        head = (head << 8) | (j < key->ndigits ? (unsigned char)digits[j] : 0);
    key->head = head;
    return 0;
}

static int
compare_values(const Key *a, const char *da, const Key *b, const char *db)
{
    if (a->sign != b->sign)
        return a->sign < b->sign ? -1 : 1;
    if (a->sign == 0)
        return 0;
    int mag;
    if (a->point != b->point) {
        mag = a->point < b->point ? -1 : 1;
    }
    else if (a->head != b->head) {
        /* A zero pad byte sorts below every digit: a shorter digit string that is a prefix is smaller. */
        mag = a->head < b->head ? -1 : 1;
    }
    else if (a->ndigits <= 8 || b->ndigits <= 8) {
        /* The same first digits and one of them has no more: the longer one is larger. */
        mag = a->ndigits < b->ndigits ? -1 : (a->ndigits > b->ndigits ? 1 : 0);
    }
    else {
        Py_ssize_t common = a->ndigits < b->ndigits ? a->ndigits : b->ndigits;
        int r = memcmp(da + 8, db + 8, common - 8);
        if (r != 0)
            mag = r < 0 ? -1 : 1;
        else
            mag = a->ndigits < b->ndigits ? -1 : (a->ndigits > b->ndigits ? 1 : 0);
    }
    return a->sign > 0 ? mag : -mag;
}

/* '.' removed, leading zeros stripped: one number's part of the checksum text. Returns its length. */
static Py_ssize_t
write_token(char *out, const char *s, Py_ssize_t n)
{
    Py_ssize_t w = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.' || (c == '0' && w == 0))
            continue;
        out[w++] = c;
    }
    return w;
}

/* A quantity is zero when every digit of its mantissa is (0, 0.00000000, -0, 0e5, 0.0E-3). */
static int
qty_is_zero(const char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == 'e' || c == 'E')
            break;
        if (c >= '1' && c <= '9')
            return 0;
    }
    return 1;
}

/* The checks the reference makes of a quantity: a JSON number, and within Decimal's exponent range
 * when it has an exponent (Decimal(qty) raises InvalidOperation beyond it). */
static int
qty_is_readable(const char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return 0;
    if (i < n && s[i] == '.') {
        Py_ssize_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        Py_ssize_t start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return 0;
    }
    return i == n;
}

/* ---- One side ------------------------------------------------------------------------------- */

/* A level's texts and key in one allocation: price text, qty text, checksum token, key digits. */
typedef struct {
    char *buf;
    Key key;
    Py_ssize_t plen, qlen, tlen;
} Level;

#define LEVEL_PRICE(l) ((l)->buf)
#define LEVEL_QTY(l) ((l)->buf + (l)->plen)
#define LEVEL_TOKEN(l) ((l)->buf + (l)->plen + (l)->qlen)
#define LEVEL_DIGITS(l) ((l)->buf + (l)->plen + (l)->qlen + (l)->tlen)

typedef struct {
    PyObject_HEAD
    Level *levels;
    Py_ssize_t n, cap;
    Py_ssize_t depth; /* -1: no depth */
    int descending;
    int crc_valid;
    uint32_t crc;
    uint64_t top_version; /* moves on every change among the top 10 */
} SideObject;

static PyTypeObject SideType;

static void
side_truncate(SideObject *self, Py_ssize_t keep)
{
    for (Py_ssize_t i = keep; i < self->n; i++)
        PyMem_Free(self->levels[i].buf);
    if (keep < self->n)
        self->n = keep;
}

static void
side_touch_top(SideObject *self)
{
    self->crc_valid = 0;
    self->top_version++;
}

static SideObject *
side_create(PyTypeObject *type, int descending, Py_ssize_t depth)
{
    SideObject *self = (SideObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->levels = NULL;
    self->n = self->cap = 0;
    self->depth = depth;
    self->descending = descending;
    self->crc_valid = 1;
    self->crc = 0;
    self->top_version = 0;
    return self;
}

static void
side_dealloc(SideObject *self)
{
    side_truncate(self, 0);
    PyMem_Free(self->levels);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void
side_clear_levels(SideObject *self)
{
    side_truncate(self, 0);
    side_touch_top(self);
}

static int
raise_unusable_price(const char *price, Py_ssize_t plen)
{
    PyObject *text = PyUnicode_DecodeUTF8(price, plen, "replace");
    if (text != NULL) {
        PyErr_Format(invalid_operation, "not a usable price: %R", text);
        Py_DECREF(text);
    }
    return -1;
}

/* Writes one level (a zero qty deletes). 0, or -1 with an exception set. */
static int
side_write(SideObject *self, const char *price, Py_ssize_t plen, const char *qty, Py_ssize_t qlen)
{
    char stack_digits[64];
    char *digits = plen <= (Py_ssize_t)sizeof(stack_digits) ? stack_digits : PyMem_Malloc(plen);
    if (digits == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Key key;
    int has_exponent;
    int64_t tuple_exponent;
    int result = -1;
    if (read_number(price, plen, &key, digits, &has_exponent, &tuple_exponent) < 0 ||
        (has_exponent && (tuple_exponent > MAX_PRICE_EXPONENT || tuple_exponent < -MAX_PRICE_EXPONENT))) {
        raise_unusable_price(price, plen);
        goto done;
    }
    if (!qty_is_readable(qty, qlen)) {
        PyObject *text = PyUnicode_DecodeUTF8(qty, qlen, "replace");
        if (text != NULL) {
            PyErr_Format(invalid_operation, "not a quantity: %R", text);
            Py_DECREF(text);
        }
        goto done;
    }
    /* bisect_left in book order (asks ascending, bids descending) */
    Py_ssize_t lo = 0, hi = self->n;
    int desc = self->descending;
    int found = 0;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        Level *l = &self->levels[mid];
        int c = compare_values(&l->key, LEVEL_DIGITS(l), &key, digits);
        if (desc)
            c = -c;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    Py_ssize_t i = lo;
    if (i < self->n) {
        Level *l = &self->levels[i];
        found = compare_values(&l->key, LEVEL_DIGITS(l), &key, digits) == 0;
    }
    if (qty_is_zero(qty, qlen)) {
        if (found) {
            PyMem_Free(self->levels[i].buf);
            memmove(&self->levels[i], &self->levels[i + 1], (self->n - i - 1) * sizeof(Level));
            self->n--;
            if (i < CHECKSUM_LEVELS)
                side_touch_top(self);
        }
        result = 0;
        goto done;
    }
    char *buf = PyMem_Malloc(2 * (plen + qlen) + key.ndigits + 1);
    if (buf == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(buf, price, plen);
    memcpy(buf + plen, qty, qlen);
    Py_ssize_t tlen = write_token(buf + plen + qlen, price, plen);
    tlen += write_token(buf + plen + qlen + tlen, qty, qlen);
    memcpy(buf + plen + qlen + tlen, digits, key.ndigits);
    if (found) {
        PyMem_Free(self->levels[i].buf);
    }
    else {
        if (self->n == self->cap) {
            Py_ssize_t cap = self->cap ? 2 * self->cap : 32;
            Level *grown = PyMem_Realloc(self->levels, cap * sizeof(Level));
            if (grown == NULL) {
                PyMem_Free(buf);
                PyErr_NoMemory();
                goto done;
            }
            self->levels = grown;
            self->cap = cap;
        }
        memmove(&self->levels[i + 1], &self->levels[i], (self->n - i) * sizeof(Level));
        self->n++;
    }
    Level *l = &self->levels[i];
    l->buf = buf;
    l->key = key;
    l->plen = plen;
    l->qlen = qlen;
    l->tlen = tlen;
    if (i < CHECKSUM_LEVELS)
        side_touch_top(self);
    result = 0;
done:
    if (digits != stack_digits)
        PyMem_Free(digits);
    return result;
}

static void
side_finish_update(SideObject *self)
{
    if (self->depth >= 0 && self->n > self->depth) {
        if (self->depth < CHECKSUM_LEVELS)
            side_touch_top(self);
        side_truncate(self, self->depth);
    }
}

/* CRC32 of the top 10 tokens continuing from crc: the tokens are gathered first, so the whole runs
 * through the eight-byte loop rather than each short token through the tail. */
static uint32_t
side_top_crc_from(SideObject *self, uint32_t crc)
{
    Py_ssize_t top = self->n < CHECKSUM_LEVELS ? self->n : CHECKSUM_LEVELS, size = 0;
    for (Py_ssize_t i = 0; i < top; i++)
        size += self->levels[i].tlen;
    if (size == 0)
        return crc;
    char stack[1024];
    char *text = size <= (Py_ssize_t)sizeof(stack) ? stack : PyMem_Malloc(size);
    if (text == NULL) { /* no room to gather: token by token gives the same value */
        for (Py_ssize_t i = 0; i < top; i++)
            crc = crc_update(crc, LEVEL_TOKEN(&self->levels[i]), self->levels[i].tlen);
        return crc;
    }
    Py_ssize_t w = 0;
    for (Py_ssize_t i = 0; i < top; i++) {
        memcpy(text + w, LEVEL_TOKEN(&self->levels[i]), self->levels[i].tlen);
        w += self->levels[i].tlen;
    }
    crc = crc_update(crc, text, size);
    if (text != stack)
        PyMem_Free(text);
    return crc;
}

static uint32_t
side_top_crc(SideObject *self)
{
    if (!self->crc_valid) {
        self->crc = side_top_crc_from(self, 0);
        self->crc_valid = 1;
    }
    return self->crc;
}

/* Applies a Python iterable of (price text, qty text), then truncates. */
static int
side_update_from(SideObject *self, PyObject *levels)
{
    PyObject *seq = PySequence_Fast(levels, "levels must be iterable");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *pair = PySequence_Fast(items[k], "a level must be (price, qty)");
        if (pair == NULL)
            goto fail;
        if (PySequence_Fast_GET_SIZE(pair) != 2) {
            Py_DECREF(pair);
            PyErr_SetString(PyExc_ValueError, "a level must be (price, qty)");
            goto fail;
        }
        PyObject *p = PySequence_Fast_GET_ITEM(pair, 0), *q = PySequence_Fast_GET_ITEM(pair, 1);
        Py_ssize_t plen, qlen;
        const char *ps = PyUnicode_Check(p) ? PyUnicode_AsUTF8AndSize(p, &plen) : NULL;
        const char *qs = ps != NULL && PyUnicode_Check(q) ? PyUnicode_AsUTF8AndSize(q, &qlen) : NULL;
        if (qs == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "a level's price and qty must be str");
            Py_DECREF(pair);
            goto fail;
        }
        int r = side_write(self, ps, plen, qs, qlen);
        Py_DECREF(pair);
        if (r < 0)
            goto fail;
    }
    Py_DECREF(seq);
    side_finish_update(self);
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

static int
side_copy_into(SideObject *dst, SideObject *src)
{
    if (src->n) {
        dst->levels = PyMem_Malloc(src->n * sizeof(Level));
        if (dst->levels == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        dst->cap = src->n;
    }
    for (Py_ssize_t i = 0; i < src->n; i++) {
        Level *s = &src->levels[i];
        Py_ssize_t size = s->plen + s->qlen + s->tlen + s->key.ndigits;
        char *buf = PyMem_Malloc(size + 1);
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(buf, s->buf, size);
        dst->levels[i] = *s;
        dst->levels[i].buf = buf;
        dst->n = i + 1;
    }
    dst->depth = src->depth;
    dst->descending = src->descending;
    dst->crc_valid = 0;
    return 0;
}

static PyObject *
side_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"descending", "depth", NULL};
    int descending;
    PyObject *depth_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "p|O:BookSide", kwlist, &descending, &depth_obj))
        return NULL;
    Py_ssize_t depth = -1;
    if (depth_obj != Py_None) {
        depth = PyLong_AsSsize_t(depth_obj);
        if (depth == -1 && PyErr_Occurred())
            return NULL;
        if (depth < 0) {
            PyErr_SetString(PyExc_ValueError, "depth must not be negative");
            return NULL;
        }
    }
    return (PyObject *)side_create(type, descending, depth);
}

static PyObject *
side_py_clear(SideObject *self, PyObject *Py_UNUSED(ignored))
{
    side_clear_levels(self);
    Py_RETURN_NONE;
}

static PyObject *
side_py_update(SideObject *self, PyObject *levels)
{
    if (side_update_from(self, levels) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
side_py_apply(SideObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply(price, qty)");
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, args[0], args[1]);
    if (pair == NULL)
        return NULL;
    PyObject *one = PyTuple_Pack(1, pair);
    Py_DECREF(pair);
    if (one == NULL)
        return NULL;
    int r = side_update_from(self, one);
    Py_DECREF(one);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
side_py_set_depth(SideObject *self, PyObject *arg)
{
    Py_ssize_t depth = PyLong_AsSsize_t(arg);
    if (depth == -1 && PyErr_Occurred())
        return NULL;
    if (depth < 0) {
        PyErr_SetString(PyExc_ValueError, "depth must not be negative");
        return NULL;
    }
    self->depth = depth;
    side_finish_update(self);
    Py_RETURN_NONE;
}

static PyObject *
side_py_top_bytes(SideObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t top = self->n < CHECKSUM_LEVELS ? self->n : CHECKSUM_LEVELS, size = 0;
    for (Py_ssize_t i = 0; i < top; i++)
        size += self->levels[i].tlen;
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        return NULL;
    char *w = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < top; i++) {
        memcpy(w, LEVEL_TOKEN(&self->levels[i]), self->levels[i].tlen);
        w += self->levels[i].tlen;
    }
    return out;
}

static PyObject *
side_py_top_crc(SideObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLong(side_top_crc(self));
}

static PyObject *
side_py_levels(SideObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(self->n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Level *l = &self->levels[i];
        PyObject *pair = Py_BuildValue("(s#s#)", LEVEL_PRICE(l), l->plen, LEVEL_QTY(l), l->qlen);
        if (pair == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, pair);
    }
    return out;
}

static Py_ssize_t
side_len(SideObject *self)
{
    return self->n;
}

static PyObject *
side_py_deepcopy(SideObject *self, PyObject *Py_UNUSED(memo))
{
    SideObject *copy = side_create(Py_TYPE(self), self->descending, self->depth);
    if (copy == NULL)
        return NULL;
    if (side_copy_into(copy, self) < 0) {
        Py_DECREF(copy);
        return NULL;
    }
    return (PyObject *)copy;
}

static PyMethodDef side_methods[] = {
    {"clear", (PyCFunction)side_py_clear, METH_NOARGS, "Remove every level."},
    {"apply", (PyCFunction)(void (*)(void))side_py_apply, METH_FASTCALL, "Write one level, then truncate."},
    {"update", (PyCFunction)side_py_update, METH_O,
     "Write levels in order (JSON number texts); a zero qty deletes; then truncate to the depth."},
    {"set_depth", (PyCFunction)side_py_set_depth, METH_O, "Truncate to depth from now on, and now."},
    {"top_bytes", (PyCFunction)side_py_top_bytes, METH_NOARGS, "The checksum text of the top 10 levels."},
    {"top_crc", (PyCFunction)side_py_top_crc, METH_NOARGS, "CRC32 of top_bytes(), cached."},
    {"levels", (PyCFunction)side_py_levels, METH_NOARGS, "(price text, qty text), best first."},
    {"__deepcopy__", (PyCFunction)side_py_deepcopy, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods side_as_sequence = {
    .sq_length = (lenfunc)side_len,
};

static PyTypeObject SideType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ingest_daemons.adapters._kraken_book.BookSide",
    .tp_doc = "One side of a book, best first; levels ordered by their exact decimal value.",
    .tp_basicsize = sizeof(SideObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = side_new,
    .tp_dealloc = (destructor)side_dealloc,
    .tp_methods = side_methods,
    .tp_as_sequence = &side_as_sequence,
};

/* ---- One symbol's book ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    SideObject *bids, *asks;
    Py_ssize_t depth;
    int crc_valid;
    uint64_t bids_version, asks_version;
    uint32_t crc;
} BookObject;

static PyTypeObject BookType;

static BookObject *
book_create(PyTypeObject *type, Py_ssize_t depth)
{
    BookObject *self = (BookObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->depth = depth;
    self->crc_valid = 0;
    self->bids = side_create(&SideType, 1, depth);
    self->asks = side_create(&SideType, 0, depth);
    if (self->bids == NULL || self->asks == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return self;
}

static void
book_dealloc(BookObject *self)
{
    Py_XDECREF(self->bids);
    Py_XDECREF(self->asks);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
book_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"depth", NULL};
    Py_ssize_t depth = 25;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:SpotBook", kwlist, &depth))
        return NULL;
    if (depth < 0) {
        PyErr_SetString(PyExc_ValueError, "depth must not be negative");
        return NULL;
    }
    return (PyObject *)book_create(type, depth);
}

/* The asks' cached CRC is the start value for the bids' bytes; the whole is cached until either
 * side's top 10 changes (most updates touch deeper levels). */
static uint32_t
book_checksum(BookObject *self)
{
    if (self->crc_valid && self->bids_version == self->bids->top_version &&
        self->asks_version == self->asks->top_version)
        return self->crc;
    self->crc = side_top_crc_from(self->bids, side_top_crc(self->asks));
    self->bids_version = self->bids->top_version;
    self->asks_version = self->asks->top_version;
    self->crc_valid = 1;
    return self->crc;
}

static int
book_apply_py(BookObject *self, int snapshot, PyObject *bids, PyObject *asks)
{
    if (snapshot) {
        side_clear_levels(self->bids);
        side_clear_levels(self->asks);
    }
    int truth = PyObject_IsTrue(bids);
    if (truth < 0 || (truth && side_update_from(self->bids, bids) < 0))
        return -1;
    truth = PyObject_IsTrue(asks);
    if (truth < 0 || (truth && side_update_from(self->asks, asks) < 0))
        return -1;
    return 0;
}

static PyObject *
book_py_apply(BookObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "apply(snapshot, bids, asks)");
        return NULL;
    }
    int snapshot = PyObject_IsTrue(args[0]);
    if (snapshot < 0 || book_apply_py(self, snapshot, args[1], args[2]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
book_py_checksum(BookObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLong(book_checksum(self));
}

static BookObject *
book_copy(BookObject *self)
{
    BookObject *copy = book_create(Py_TYPE(self), self->depth);
    if (copy == NULL)
        return NULL;
    if (side_copy_into(copy->bids, self->bids) < 0 || side_copy_into(copy->asks, self->asks) < 0) {
        Py_DECREF(copy);
        return NULL;
    }
    return copy;
}

static PyObject *
book_py_deepcopy(BookObject *self, PyObject *Py_UNUSED(memo))
{
    return (PyObject *)book_copy(self);
}

static PyObject *
book_get_depth(BookObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->depth);
}

/* The sides truncate as they update, so a changed depth is theirs too. */
static int
book_set_depth(BookObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "depth cannot be deleted");
        return -1;
    }
    Py_ssize_t depth = PyLong_AsSsize_t(value);
    if (depth == -1 && PyErr_Occurred())
        return -1;
    if (depth < 0) {
        PyErr_SetString(PyExc_ValueError, "depth must not be negative");
        return -1;
    }
    self->depth = depth;
    self->bids->depth = self->asks->depth = depth;
    side_finish_update(self->bids);
    side_finish_update(self->asks);
    return 0;
}

static PyObject *
book_get_bids(BookObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->bids);
}

static PyObject *
book_get_asks(BookObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->asks);
}

static PyGetSetDef book_getset[] = {
    {"depth", (getter)book_get_depth, (setter)book_set_depth, "Subscribed depth; the sides truncate to it.", NULL},
    {"bids", (getter)book_get_bids, NULL, "Bids, best (highest) first.", NULL},
    {"asks", (getter)book_get_asks, NULL, "Asks, best (lowest) first.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef book_methods[] = {
    {"apply", (PyCFunction)(void (*)(void))book_py_apply, METH_FASTCALL,
     "apply(snapshot, bids, asks): a snapshot replaces the book; levels apply in order."},
    {"checksum", (PyCFunction)book_py_checksum, METH_NOARGS, "CRC32 of the top 10 asks then bids."},
    {"__deepcopy__", (PyCFunction)book_py_deepcopy, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ingest_daemons.adapters._kraken_book.SpotBook",
    .tp_doc = "One symbol's book at one subscribed depth.",
    .tp_basicsize = sizeof(BookObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = book_new,
    .tp_dealloc = (destructor)book_dealloc,
    .tp_methods = book_methods,
    .tp_getset = book_getset,
};

/* ---- Kraken's compact layout ---------------------------------------------------------------- */

static const char UPDATE_HEAD[] = "{\"channel\":\"book\",\"type\":\"update\",\"data\":[{\"symbol\":\"";
static const char SNAPSHOT_HEAD[] = "{\"channel\":\"book\",\"type\":\"snapshot\",\"data\":[{\"symbol\":\"";

typedef struct {
    int snapshot;
    const char *symbol, *timestamp, *bids, *asks, *checksum;
    Py_ssize_t symbol_len, timestamp_len, bids_len, asks_len, checksum_len;
    int high_bytes; /* a text holds a byte >= 0x80: UTF-8 to be checked */
} Compact;

static int
take(const char *s, Py_ssize_t n, Py_ssize_t *i, const char *lit, Py_ssize_t len)
{
    if (n - *i < len || memcmp(s + *i, lit, len) != 0)
        return 0;
    *i += len;
    return 1;
}
#define TAKE(lit) take(s, n, &i, (lit), (Py_ssize_t)sizeof(lit) - 1)

/* A JSON string's inside with no escape or control character: [^"\\\x00-\x1f]* */
static Py_ssize_t
scan_text(const char *s, Py_ssize_t n, Py_ssize_t i, int *high)
{
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c < 0x20)
            break;
        if (c >= 0x80)
            *high = 1;
        i++;
    }
    return i;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)? ; returns the end, or -1 */
static Py_ssize_t
scan_plain_number(const char *s, Py_ssize_t n, Py_ssize_t i)
{
    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return -1;
    if (i < n && s[i] == '.') {
        Py_ssize_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return -1;
    }
    return i;
}

/* The inside of a bids/asks array: empty, or levels {"price":N,"qty":N} joined by ','; ends at ']'. */
static Py_ssize_t
scan_levels(const char *s, Py_ssize_t n, Py_ssize_t i)
{
    if (i < n && s[i] == ']')
        return i;
    for (;;) {
        if (!TAKE("{\"price\":") || (i = scan_plain_number(s, n, i)) < 0 || !TAKE(",\"qty\":") ||
            (i = scan_plain_number(s, n, i)) < 0 || !TAKE("}"))
            return -1;
        if (i < n && s[i] == ',') {
            i++;
            continue;
        }
        return i;
    }
}

/* An array's inside from *i (see scan_levels): where it starts and how long; *i moves past it. 0 if malformed. */
static int
take_levels(const char *s, Py_ssize_t n, Py_ssize_t *i, const char **at, Py_ssize_t *len)
{
    Py_ssize_t end = scan_levels(s, n, *i);
    if (end < 0)
        return 0;
    *at = s + *i;
    *len = end - *i;
    *i = end;
    return 1;
}

/* The whole frame in Kraken's own layout, or 0: then it is the Python reader's. */
static int
read_compact(const char *s, Py_ssize_t n, Compact *c)
{
    Py_ssize_t i = 0;
    if (TAKE(UPDATE_HEAD))
        c->snapshot = 0;
    else if (TAKE(SNAPSHOT_HEAD))
        c->snapshot = 1;
    else
        return 0;
    c->high_bytes = 0;
    c->symbol = s + i;
    Py_ssize_t end = scan_text(s, n, i, &c->high_bytes);
    c->symbol_len = end - i;
    i = end;
    if (!TAKE("\",\"bids\":[") || !take_levels(s, n, &i, &c->bids, &c->bids_len) || !TAKE("],\"asks\":[") ||
        !take_levels(s, n, &i, &c->asks, &c->asks_len))
        return 0;
    if (!TAKE("],\"checksum\":"))
        return 0;
    c->checksum = s + i;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return 0;
    c->checksum_len = s + i - c->checksum;
    if (!TAKE(",\"timestamp\":\""))
        return 0;
    c->timestamp = s + i;
    end = scan_text(s, n, i, &c->high_bytes);
    c->timestamp_len = end - i;
    i = end;
    return TAKE("\"}]}") && i == n;
}

/* Applies the levels of an array the frame check has accepted, then truncates. */
static int
side_write_compact(SideObject *side, const char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        i += sizeof("{\"price\":") - 1;
        Py_ssize_t p = i;
        i = scan_plain_number(s, n, i);
        Py_ssize_t plen = i - p;
        i += sizeof(",\"qty\":") - 1;
        Py_ssize_t q = i;
        i = scan_plain_number(s, n, i);
        if (side_write(side, s + p, plen, s + q, i - q) < 0)
            return -1;
        i += 2; /* "}," or the closing "}" */
    }
    side_finish_update(side);
    return 0;
}

/* ---- Every symbol's book on one connection -------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *books; /* dict: symbol -> SpotBook */
    Py_ssize_t depth;
} BooksObject;

static PyObject *
make_verdict(PyObject *status, PyObject *symbol, int snapshot, PyObject *expected, PyObject *computed)
{
    PyTypeObject *type = (PyTypeObject *)verdict_type;
    PyObject *v = type->tp_alloc(type, 5);
    if (v == NULL)
        return NULL;
    PyTuple_SET_ITEM(v, 0, Py_NewRef(status));
    PyTuple_SET_ITEM(v, 1, Py_NewRef(symbol));
    PyTuple_SET_ITEM(v, 2, Py_NewRef(snapshot ? Py_True : Py_False));
    PyTuple_SET_ITEM(v, 3, Py_NewRef(expected));
    PyTuple_SET_ITEM(v, 4, Py_NewRef(computed));
    return v;
}

static PyObject *
books_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    BooksObject *self = (BooksObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->depth = 25;
    self->books = PyDict_New();
    if (self->books == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
books_init(BooksObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"depth", NULL};
    Py_ssize_t depth = 25;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:SpotBooks", kwlist, &depth))
        return -1;
    self->depth = depth;
    return 0;
}

static void
books_dealloc(BooksObject *self)
{
    Py_XDECREF(self->books);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The book a frame is for: made by a snapshot, NULL without an error when an update has none. */
static BookObject *
books_target(BooksObject *self, PyObject *symbol, int snapshot)
{
    PyObject *book = PyDict_GetItemWithError(self->books, symbol);
    if (book != NULL)
        return (BookObject *)Py_NewRef(book);
    if (PyErr_Occurred() || !snapshot)
        return NULL;
    BookObject *made = book_create(&BookType, self->depth);
    if (made == NULL)
        return NULL;
    if (PyDict_SetItem(self->books, symbol, (PyObject *)made) < 0) {
        Py_DECREF(made);
        return NULL;
    }
    return made;
}

/* After the levels are applied (applied < 0: they raised): the verdict, dropping a failed book. */
static PyObject *
books_conclude(BooksObject *self, PyObject *symbol, int snapshot, BookObject *book, int applied,
               PyObject *expected)
{
    if (applied < 0) {
        if (!PyErr_ExceptionMatches(invalid_operation))
            return NULL;
        PyErr_Clear();
        if (PyDict_DelItem(self->books, symbol) < 0)
            PyErr_Clear();
        return make_verdict(status_malformed, symbol, snapshot, Py_None, Py_None);
    }
    PyObject *computed = PyLong_FromUnsignedLong(book_checksum(book));
    if (computed == NULL)
        return NULL;
    int equal = PyObject_RichCompareBool(computed, expected, Py_EQ);
    PyObject *out = NULL;
    if (equal > 0) {
        out = make_verdict(status_ok, symbol, snapshot, expected, computed);
    }
    else if (equal == 0) {
        if (PyDict_DelItem(self->books, symbol) == 0)
            out = make_verdict(status_mismatch, symbol, snapshot, expected, computed);
    }
    Py_DECREF(computed);
    return out;
}

static PyObject *
books_apply_compact(BooksObject *self, const Compact *c)
{
    if (c->high_bytes) {
        /* The reference decodes the whole frame first: invalid UTF-8 makes it unreadable. */
        PyObject *ts = PyUnicode_DecodeUTF8(c->timestamp, c->timestamp_len, NULL);
        if (ts == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                return NULL;
            PyErr_Clear();
            return Py_NewRef(unreadable);
        }
        Py_DECREF(ts);
    }
    PyObject *symbol = PyUnicode_DecodeUTF8(c->symbol, c->symbol_len, NULL);
    if (symbol == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            return NULL;
        PyErr_Clear();
        return Py_NewRef(unreadable);
    }
    PyObject *out = NULL;
    BookObject *book = books_target(self, symbol, c->snapshot);
    if (book == NULL) {
        if (!PyErr_Occurred())
            out = make_verdict(status_no_snapshot, symbol, 0, Py_None, Py_None);
        Py_DECREF(symbol);
        return out;
    }
    PyObject *expected = NULL;
    if (c->checksum_len <= 18) {
        unsigned long long value = 0;
        for (Py_ssize_t i = 0; i < c->checksum_len; i++)
            value = value * 10 + (unsigned long long)(c->checksum[i] - '0');
        expected = PyLong_FromUnsignedLongLong(value);
    }
    else {
        PyObject *text = PyUnicode_DecodeASCII(c->checksum, c->checksum_len, NULL);
        if (text != NULL) {
            expected = PyLong_FromUnicodeObject(text, 10);
            Py_DECREF(text);
        }
    }
    if (expected != NULL) {
        if (c->snapshot) {
            side_clear_levels(book->bids);
            side_clear_levels(book->asks);
        }
        int applied = 0;
        if (c->bids_len)
            applied = side_write_compact(book->bids, c->bids, c->bids_len);
        if (applied == 0 && c->asks_len)
            applied = side_write_compact(book->asks, c->asks, c->asks_len);
        out = books_conclude(self, symbol, c->snapshot, book, applied, expected);
        Py_DECREF(expected);
    }
    Py_DECREF(book);
    Py_DECREF(symbol);
    return out;
}

static PyObject *
books_apply_parsed_impl(BooksObject *self, PyObject *f)
{
    if (!PyTuple_Check(f) || PyTuple_GET_SIZE(f) != 5) {
        PyErr_SetString(PyExc_TypeError, "apply_parsed takes a BookFrame");
        return NULL;
    }
    int snapshot = PyObject_IsTrue(PyTuple_GET_ITEM(f, 0));
    if (snapshot < 0)
        return NULL;
    PyObject *symbol = PyTuple_GET_ITEM(f, 1);
    PyObject *expected = PyTuple_GET_ITEM(f, 4);
    BookObject *book = books_target(self, symbol, snapshot);
    if (book == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return make_verdict(status_no_snapshot, symbol, 0, Py_None, Py_None);
    }
    int applied = book_apply_py(book, snapshot, PyTuple_GET_ITEM(f, 2), PyTuple_GET_ITEM(f, 3));
    PyObject *out = books_conclude(self, symbol, snapshot, book, applied, expected);
    Py_DECREF(book);
    return out;
}

static PyObject *
books_py_apply(BooksObject *self, PyObject *frame)
{
    if (verdict_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_kraken_book.configure() was not called");
        return NULL;
    }
    if (PyBytes_Check(frame)) {
        Compact c;
        if (read_compact(PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), &c))
            return books_apply_compact(self, &c);
    }
    PyObject *parsed = PyObject_CallOneArg(slow_reader, frame);
    if (parsed == NULL)
        return NULL;
    PyObject *out = parsed == Py_None ? Py_NewRef(unreadable) : books_apply_parsed_impl(self, parsed);
    Py_DECREF(parsed);
    return out;
}

static PyObject *
books_py_apply_parsed(BooksObject *self, PyObject *f)
{
    if (verdict_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_kraken_book.configure() was not called");
        return NULL;
    }
    return books_apply_parsed_impl(self, f);
}

static PyObject *
books_py_reset(BooksObject *self, PyObject *Py_UNUSED(ignored))
{
    PyDict_Clear(self->books);
    Py_RETURN_NONE;
}

static PyObject *
books_py_drop(BooksObject *self, PyObject *symbol)
{
    PyObject *gone = PyObject_CallMethod(self->books, "pop", "OO", symbol, Py_None);
    if (gone == NULL)
        return NULL;
    Py_DECREF(gone);
    Py_RETURN_NONE;
}

static PyObject *
books_py_book(BooksObject *self, PyObject *symbol)
{
    PyObject *book = PyDict_GetItemWithError(self->books, symbol);
    if (book == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    return Py_NewRef(book);
}

static PyObject *
books_py_deepcopy(BooksObject *self, PyObject *Py_UNUSED(memo))
{
    PyTypeObject *type = Py_TYPE(self);
    BooksObject *copy = (BooksObject *)books_new(type, NULL, NULL);
    if (copy == NULL)
        return NULL;
    copy->depth = self->depth;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(self->books, &pos, &key, &value)) {
        BookObject *book = book_copy((BookObject *)value);
        if (book == NULL || PyDict_SetItem(copy->books, key, (PyObject *)book) < 0) {
            Py_XDECREF(book);
            Py_DECREF(copy);
            return NULL;
        }
        Py_DECREF(book);
    }
    return (PyObject *)copy;
}

static PyMethodDef books_methods[] = {
    {"apply", (PyCFunction)books_py_apply, METH_O,
     "The hot path: read (compact layout here, any other through the Python reader), apply, truncate, verify."},
    {"apply_parsed", (PyCFunction)books_py_apply_parsed, METH_O, "Apply and verify a BookFrame."},
    {"reset", (PyCFunction)books_py_reset, METH_NOARGS, "A new socket: no book survives a reconnect."},
    {"drop", (PyCFunction)books_py_drop, METH_O, "Forget one symbol's book."},
    {"book", (PyCFunction)books_py_book, METH_O, "The symbol's book, or None."},
    {"__deepcopy__", (PyCFunction)books_py_deepcopy, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef books_members[] = {
    {"depth", T_PYSSIZET, offsetof(BooksObject, depth), 0, "Depth of the books made from now on."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject BooksType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ingest_daemons.adapters._kraken_book.SpotBooks",
    .tp_doc = "Every subscribed symbol's book on one connection, verified after each frame.",
    .tp_basicsize = sizeof(BooksObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = books_new,
    .tp_init = (initproc)books_init,
    .tp_dealloc = (destructor)books_dealloc,
    .tp_methods = books_methods,
    .tp_members = books_members,
};

/* ---- Module --------------------------------------------------------------------------------- */

static PyObject *
configure(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *vt, *ok, *mismatch, *no_snapshot, *malformed, *unread, *reader;
    if (!PyArg_ParseTuple(args, "O!OOOOO!O:configure", &PyType_Type, &vt, &ok, &mismatch, &no_snapshot,
                          &malformed, &PyTuple_Type, &unread, &reader))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)vt, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the verdict type must be a tuple subclass");
        return NULL;
    }
    Py_XSETREF(verdict_type, Py_NewRef(vt));
    Py_XSETREF(status_ok, Py_NewRef(ok));
    Py_XSETREF(status_mismatch, Py_NewRef(mismatch));
    Py_XSETREF(status_no_snapshot, Py_NewRef(no_snapshot));
    Py_XSETREF(status_malformed, Py_NewRef(malformed));
    Py_XSETREF(unreadable, Py_NewRef(unread));
    Py_XSETREF(slow_reader, Py_NewRef(reader));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(BookVerdict, OK, MISMATCH, NO_SNAPSHOT, MALFORMED, unreadable verdict, reader)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ingest_daemons.adapters._kraken_book",
    .m_doc = "Kraken spot v2 books in C; see kraken_book.py for the semantics.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__kraken_book(void)
{
    crc_init();
    if (PyType_Ready(&SideType) < 0 || PyType_Ready(&BookType) < 0 || PyType_Ready(&BooksType) < 0)
        return NULL;
    PyObject *decimal = PyImport_ImportModule("decimal");
    if (decimal == NULL)
        return NULL;
    invalid_operation = PyObject_GetAttrString(decimal, "InvalidOperation");
    Py_DECREF(decimal);
    if (invalid_operation == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "BookSide", (PyObject *)&SideType) < 0 ||
        PyModule_AddObjectRef(m, "SpotBook", (PyObject *)&BookType) < 0 ||
        PyModule_AddObjectRef(m, "SpotBooks", (PyObject *)&BooksType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
