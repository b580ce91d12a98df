/*
 * The archive reader's hot loop in C: plain JetStream deliveries -> records.
 *
 * WindowScan._raw_batch (reader.py) turns every HMSG a window scan receives into a record
 * (seq, ts, subject, recv, payload, msg_id); in Python that costs ~42,000 instructions per message,
 * more than the rest of the archive pipeline. plain_deliveries() does the same for the common case
 * only -- a complete data delivery on our subscription, with the consumer's known ack prefix, the
 * expected consumer sequence, inside the window, not the last one pending, not a chunk -- and stops
 * at the first frame that is anything else, before touching it. The Python loop then handles that
 * frame with its own code, which stays the specification: whatever is unusual (a number Python's
 * int() would read differently, a header without its CR) is a stop here, never a guess.
 *
 * Another subscription's complete HMSG is skipped, as the Python loop does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum {
    STOP_PARTIAL = 0,   /* no complete frame left: more to read */
    STOP_FRAME,         /* not "HMSG " with exactly five fields (PING, INFO, MSG, heartbeat...) */
    STOP_NUMBER,        /* a length or reply-subject number that is not plain ASCII digits */
    STOP_ODD,           /* a header length past the frame's end */
    STOP_CONTROL,       /* "NATS/1.0 100 ...": a flow-control request */
    STOP_REPLY,         /* reply subject without four dots, or an ack prefix other than the known one */
    STOP_SEQUENCE,      /* consumer sequence other than the expected one */
    STOP_WINDOW_END,    /* timestamp at or after the window's end */
    STOP_STREAM_END,    /* pending == 0: the last message the stream holds */
    STOP_CHUNK,         /* a chunk of a large frame (Ssmd-Chunk header first) */
    STOP_HEADER,        /* Nats-Msg-Id / Ssmd-Received-Ns value without a CR after it */
};

static const char HDR_MSG_ID[] = "\r\nNats-Msg-Id: ";            /* 15 bytes */
static const char HDR_RECEIVED[] = "\r\nSsmd-Received-Ns: ";    /* 20 bytes */
static const char CHUNK_PREFIX[] = "NATS/1.0\r\nSsmd-Chunk: ";   /* frame_chunks.HEADER_PREFIX */
#define MSG_ID_LEN ((Py_ssize_t)sizeof(HDR_MSG_ID) - 1)
#define RECEIVED_LEN ((Py_ssize_t)sizeof(HDR_RECEIVED) - 1)
#define CHUNK_LEN ((Py_ssize_t)sizeof(CHUNK_PREFIX) - 1)

/* Plain decimal digits, 1 to 19 of them (fits uint64); anything else is for Python's int(). */
static int
parse_digits(const char *p, const char *end, uint64_t *out)
{
    Py_ssize_t n = end - p;
    uint64_t value = 0;
    if (n < 1 || n > 19)
        return 0;
    for (; p < end; p++) {
        unsigned d = (unsigned char)*p - '0';
        if (d > 9)
            return 0;
        value = value * 10 + d;
    }
    *out = value;
    return 1;
}

/* First "\r\n" in [p, end), as bytes.find does. */
static const char *
find_crlf(const char *p, const char *end)
{
    while (p < end) {
        const char *cr = memchr(p, '\r', (size_t)(end - p));
        if (cr == NULL || cr + 1 >= end)
            return NULL;
        if (cr[1] == '\n')
            return cr;
        p = cr + 1;
    }
    return NULL;
}

/* First occurrence of needle in [p, end), as bytes.find does. */
static const char *
find_bytes(const char *p, const char *end, const char *needle, Py_ssize_t len)
{
    const char *last = end - len;
    while (p <= last) {
        const char *hit = memchr(p, needle[0], (size_t)(last - p + 1));
        if (hit == NULL)
            return NULL;
        if (memcmp(hit, needle, (size_t)len) == 0)
            return hit;
        p = hit + 1;
    }
    return NULL;
}

static PyObject *
bytes_or_none(const char *start, const char *end)
{
    if (start == NULL)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(start, end - start);
}

PyDoc_STRVAR(plain_deliveries_doc,
"plain_deliveries(data, pos, sid, ack_prefix, expected, end_ns, out)\n"
"--\n\n"
"Append the record of every plain delivery from data[pos:] on to the list out, up to the first\n"
"frame WindowScan._raw_batch must handle itself. Returns (pos, expected, last_seq, stop): where\n"
"that frame starts, the next expected consumer sequence, the last appended stream sequence (None\n"
"when nothing was appended) and why it stopped (one of the STOP_* constants).");

static PyObject *
plain_deliveries(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos;
    const char *sid;
    Py_ssize_t sid_len;
    PyObject *ack_prefix_obj, *expected_obj, *end_obj, *out;
    if (!PyArg_ParseTuple(args, "y*ny#OOOO!:plain_deliveries", &view, &pos, &sid, &sid_len,
                          &ack_prefix_obj, &expected_obj, &end_obj, &PyList_Type, &out))
        return NULL;

    PyObject *result = NULL, *last_seq = NULL;
    const char *ack_prefix = NULL;
    Py_ssize_t ack_len = 0;
    int stop = STOP_PARTIAL;
    uint64_t expected, end_ns;

    if (ack_prefix_obj != Py_None) {
        if (!PyBytes_Check(ack_prefix_obj)) {
            PyErr_SetString(PyExc_TypeError, "ack_prefix must be bytes or None");
            goto done;
        }
        ack_prefix = PyBytes_AS_STRING(ack_prefix_obj);
        ack_len = PyBytes_GET_SIZE(ack_prefix_obj);
    }
    expected = PyLong_AsUnsignedLongLong(expected_obj);
    if (expected == (uint64_t)-1 && PyErr_Occurred())
        goto done;
    {
        /* end_ns at or below 0 ends the window before any message; past uint64 never ends it (a
         * timestamp here has at most 19 digits, below UINT64_MAX). */
        int overflow = 0;
        long long end = PyLong_AsLongLongAndOverflow(end_obj, &overflow);
        if (end == -1 && PyErr_Occurred())
            goto done;
        if (overflow > 0) {
            end_ns = PyLong_AsUnsignedLongLong(end_obj);
            if (end_ns == (uint64_t)-1 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                    goto done;
                PyErr_Clear();
            }
        }
        else
            end_ns = (overflow < 0 || end <= 0) ? 0 : (uint64_t)end;
    }

    const char *buf = view.buf;
    const char *data_end = buf + view.len;
    if (pos < 0 || pos > view.len) {
        PyErr_SetString(PyExc_ValueError, "pos outside data");
        goto done;
    }
    last_seq = Py_NewRef(Py_None);

    for (;;) {
        const char *line = buf + pos;
        const char *eol = find_crlf(line, data_end);
        if (eol == NULL) {
            stop = STOP_PARTIAL;
            break;
        }
        if (eol - line < 5 || memcmp(line, "HMSG ", 5) != 0) {
            stop = STOP_FRAME;
            break;
        }
        /* subject sid reply hlen total: exactly four spaces, as bytes.split(b" ") gives five parts */
        const char *field[5], *field_end[5];
        const char *p = line + 5;
        int count = 0;
        while (count < 5) {
            const char *space = memchr(p, ' ', (size_t)(eol - p));
            field[count] = p;
            if (space == NULL) {
                field_end[count++] = eol;
                break;
            }
            field_end[count++] = space;
            p = space + 1;
        }
        if (count != 5 || field_end[4] != eol) {
            stop = STOP_FRAME;
            break;
        }
        uint64_t total, hlen;
        if (!parse_digits(field[4], field_end[4], &total)) {
            stop = STOP_NUMBER;
            break;
        }
        const char *body = eol + 2;
        if ((uint64_t)(data_end - body) < total + 2) {
            stop = STOP_PARTIAL;
            break;
        }
        const char *frame_end = body + total;
        Py_ssize_t next_pos = frame_end + 2 - buf;
        if (field_end[1] - field[1] != sid_len || memcmp(field[1], sid, (size_t)sid_len) != 0) {
            pos = next_pos;  /* another subscription's: skipped, as the Python loop does */
            continue;
        }
        if (!parse_digits(field[3], field_end[3], &hlen)) {
            stop = STOP_NUMBER;
            break;
        }
        if (hlen > total) {
            stop = STOP_ODD;
            break;
        }
        const char *headers_end = body + hlen;
        if (hlen >= 9 && body[8] == ' ') {
            stop = STOP_CONTROL;
            break;
        }
        /* $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>: the last four tokens */
        const char *dots[4];
        const char *reply = field[2], *q = field_end[2];
        int found = 0;
        while (found < 4 && q > reply) {
            q -= 1;
            if (*q == '.')
                dots[found++] = q;
        }
        if (found < 4 || ack_prefix == NULL || dots[3] - reply != ack_len
                || memcmp(reply, ack_prefix, (size_t)ack_len) != 0) {
            stop = STOP_REPLY;
            break;
        }
        uint64_t seq, cseq, ts, pending;
        if (!parse_digits(dots[3] + 1, dots[2], &seq) || !parse_digits(dots[2] + 1, dots[1], &cseq)
                || !parse_digits(dots[1] + 1, dots[0], &ts) || !parse_digits(dots[0] + 1, field_end[2], &pending)) {
            stop = STOP_NUMBER;
            break;
        }
        if (cseq != expected) {
            stop = STOP_SEQUENCE;
            break;
        }
        if (ts >= end_ns) {
            stop = STOP_WINDOW_END;
            break;
        }
        if (pending == 0) {
            stop = STOP_STREAM_END;
            break;
        }
        if (hlen >= (uint64_t)CHUNK_LEN && memcmp(body, CHUNK_PREFIX, (size_t)CHUNK_LEN) == 0) {
            stop = STOP_CHUNK;
            break;
        }
        /* reader._header_fields, byte for byte: the first Nats-Msg-Id; the Ssmd-Received-Ns right
         * after it, else the first one anywhere. */
        const char *id_start = NULL, *id_end = NULL, *recv_start = NULL, *recv_end = NULL;
        const char *hit = find_bytes(body, headers_end, HDR_MSG_ID, MSG_ID_LEN);
        if (hit != NULL) {
            id_start = hit + MSG_ID_LEN;
            id_end = memchr(id_start, '\r', (size_t)(headers_end - id_start));
            if (id_end == NULL) {
                stop = STOP_HEADER;
                break;
            }
            if (headers_end - id_end >= RECEIVED_LEN && memcmp(id_end, HDR_RECEIVED, (size_t)RECEIVED_LEN) == 0)
                recv_start = id_end + RECEIVED_LEN;
        }
        if (recv_start == NULL) {
            hit = find_bytes(body, headers_end, HDR_RECEIVED, RECEIVED_LEN);
            if (hit != NULL)
                recv_start = hit + RECEIVED_LEN;
        }
        if (recv_start != NULL) {
            recv_end = memchr(recv_start, '\r', (size_t)(headers_end - recv_start));
            if (recv_end == NULL) {
                stop = STOP_HEADER;
                break;
            }
        }
        PyObject *seq_obj = PyLong_FromUnsignedLongLong(seq);
        PyObject *record = PyTuple_New(6);
        if (seq_obj == NULL || record == NULL) {
            Py_XDECREF(seq_obj);
            Py_XDECREF(record);
            goto done;
        }
        PyTuple_SET_ITEM(record, 0, Py_NewRef(seq_obj));
        PyTuple_SET_ITEM(record, 1, PyLong_FromUnsignedLongLong(ts));
        PyTuple_SET_ITEM(record, 2, PyBytes_FromStringAndSize(field[0], field_end[0] - field[0]));
        PyTuple_SET_ITEM(record, 3, bytes_or_none(recv_start, recv_end));
        PyTuple_SET_ITEM(record, 4, PyBytes_FromStringAndSize(headers_end, frame_end - headers_end));
        PyTuple_SET_ITEM(record, 5, bytes_or_none(id_start, id_end));
        int failed = 0;
        for (int i = 1; i < 6; i++)
            failed |= PyTuple_GET_ITEM(record, i) == NULL;
        if (failed || PyList_Append(out, record) < 0) {
            Py_DECREF(seq_obj);
            Py_DECREF(record);
            goto done;
        }
        Py_DECREF(record);
        Py_SETREF(last_seq, seq_obj);
        expected += 1;
        pos = next_pos;
    }
    result = Py_BuildValue("(nKOi)", pos, (unsigned long long)expected, last_seq, stop);

done:
    Py_XDECREF(last_seq);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"plain_deliveries", plain_deliveries, METH_VARARGS, plain_deliveries_doc},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    static const struct { const char *name; int value; } stops[] = {
        {"STOP_PARTIAL", STOP_PARTIAL}, {"STOP_FRAME", STOP_FRAME}, {"STOP_NUMBER", STOP_NUMBER},
        {"STOP_ODD", STOP_ODD}, {"STOP_CONTROL", STOP_CONTROL}, {"STOP_REPLY", STOP_REPLY},
        {"STOP_SEQUENCE", STOP_SEQUENCE}, {"STOP_WINDOW_END", STOP_WINDOW_END},
        {"STOP_STREAM_END", STOP_STREAM_END}, {"STOP_CHUNK", STOP_CHUNK}, {"STOP_HEADER", STOP_HEADER},
    };
    for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
        if (PyModule_AddIntConstant(module, stops[i].name, stops[i].value) < 0)
            return -1;
    }
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ingest_daemons.archive._deliveries",
    .m_doc = "Plain JetStream deliveries parsed into archive records (the reader's hot loop).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__deliveries(void)
{
    return PyModuleDef_Init(&module_def);
}
