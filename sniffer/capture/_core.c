/* The per-packet path in C: pcap/pcapng frame splitting, fixed-offset decode, TLS record-header walking.
 *
 * Every function here is an accelerator for a pure-Python reference (capture/files.py,
 * capture/decode.py, parsers/records.py) and must give exactly its results. Whenever the input is not
 * one of the common shapes, the C side stops (splitters) or answers NOT_MINE (decode) and the Python
 * code takes over, so damage reporting and the rare cases stay in one place.
 *
 * All input is attacker-controlled capture content: every read is preceded by a length check, all
 * offset arithmetic is done on values already bounded by the buffer length.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* Bound at import from the pure-Python modules, so that both paths build the very same objects. */
static PyTypeObject *Segment;   /* helloscope.sniffer.capture.decode.Segment */
#define SEGMENT_FIELDS 12
static PyTypeObject *Record;    /* helloscope.parsers.records.Record */
static PyObject *ParseError;    /* helloscope.parsers.errors.ParseError */
static PyObject *NotMine;       /* the "ask decode.py" answer of decode() */
static PyObject *Skimmed;       /* FlowSkimmer.decode's "taken whole" answer */
static Py_ssize_t record_offset[4];  /* slot offsets of Record's content_type, version, payload, offset */
static Py_ssize_t max_ciphertext;    /* records.MAX_CIPHERTEXT, RecordReader's default limit */

static inline uint32_t
be16(const unsigned char *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static inline uint32_t
be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint32_t
rd32(const unsigned char *p, int little)
{
    return little ? (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0] : be32(p);
}

static inline uint32_t
rd16(const unsigned char *p, int little)
{
    return little ? (uint32_t)p[1] << 8 | p[0] : be16(p);
}

/* ----- fixed-offset decode --------------------------------------------------------------------- */

#define NONE() Py_NewRef(Py_None)
#define NOT_MINE() Py_NewRef(NotMine)

static PyObject *
new_segment(unsigned proto, const unsigned char *src, const unsigned char *dst, Py_ssize_t addr_len, uint32_t sport,
            uint32_t dport, uint32_t seq, uint32_t ack, uint32_t flags, PyObject *frame, Py_ssize_t transport,
            Py_ssize_t start, Py_ssize_t end)
{
    const Py_ssize_t size = PyBytes_GET_SIZE(frame);
    /* frame[start:end] as Python slices it: clipped to the frame, empty past its end */
    Py_ssize_t payload_len = start < size ? (end < size ? end : size) - start : 0;
    PyObject *items[SEGMENT_FIELDS] = {
        PyLong_FromUnsignedLong(proto),
        PyBytes_FromStringAndSize((const char *)src, addr_len),
        PyBytes_FromStringAndSize((const char *)dst, addr_len),
        PyLong_FromUnsignedLong(sport),
        PyLong_FromUnsignedLong(dport),
        PyLong_FromUnsignedLong(seq),
        PyLong_FromUnsignedLong(ack),
        PyLong_FromUnsignedLong(flags),
        PyBytes_FromStringAndSize(PyBytes_AS_STRING(frame) + (payload_len ? start : 0), payload_len),
        PyLong_FromSsize_t(end - start - payload_len),
        Py_NewRef(frame), /* packet: what a TCP checksum check reads, by reference (decode.py) */
        PyLong_FromSsize_t(transport),
    };
    PyObject *segment = NULL;
    for (int i = 0; i < SEGMENT_FIELDS; i++)
        if (items[i] == NULL)
            goto fail;
    /* what tuple.__new__(Segment, items) builds, without the intermediate tuple */
    segment = Segment->tp_alloc(Segment, SEGMENT_FIELDS);
    if (segment == NULL)
        goto fail;
    for (int i = 0; i < SEGMENT_FIELDS; i++)
        PyTuple_SET_ITEM(segment, i, items[i]);
    return segment;
fail:
    for (int i = 0; i < SEGMENT_FIELDS; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

/* What the fixed-offset decode finds in a frame, before any Python object is made of it. */
typedef struct {
    unsigned proto; /* 6 or 17 */
    const unsigned char *src, *dst;
    Py_ssize_t addr_len;
    uint32_t sport, dport, seq, ack, flags;
    Py_ssize_t transport, start, end; /* transport header; payload from start to end (unclipped) */
} Headers;

enum shape { SHAPE_NONE, SHAPE_NOT_MINE, SHAPE_FOUND };

/* decode.py's _network at depth 0, for untunnelled, unfragmented IPv4 and extension-free IPv6 carrying
   TCP or UDP. Only a frame too short or inconsistent for that shape is SHAPE_NONE (decode.py answers
   None); any other EtherType or protocol goes back to decode.py (SHAPE_NOT_MINE), so what it learns later
   (PPPoE, say) needs no C change. */
static enum shape
network(const unsigned char *f, Py_ssize_t n, uint32_t ethertype, Py_ssize_t off, Headers *h)
{
    for (;;) {
        Py_ssize_t shim;
        switch (ethertype) {
        case 0x8100:
        case 0x88A8:
        case 0x9100:
            shim = 4;
            break;
        case 0x8909:
            shim = 8;
            break;
        default:
            shim = 0;
        }
        if (!shim)
            break;
        off += shim;
        if (off > n) /* the next EtherType would be read past the frame: IndexError */
            return SHAPE_NONE;
        ethertype = be16(f + off - 2);
    }
    Py_ssize_t end;
    if (ethertype == 0x0800) {
        if (off > n || n - off < 20)
            return SHAPE_NONE;
        const unsigned char *ip = f + off;
        unsigned ihl = (ip[0] & 0x0F) * 4u;
        uint32_t total = be16(ip + 2);
        if (ip[0] >> 4 != 4 || ihl < 20)
            return SHAPE_NONE;
        if (be16(ip + 6) & 0x3FFF) /* a fragment */
            return SHAPE_NOT_MINE;
        h->proto = ip[9];
        h->src = ip + 12;
        h->dst = ip + 16;
        h->addr_len = 4;
        h->transport = off + ihl;
        if (total == 0)
            end = n; /* segmentation offload: the length is not filled in */
        else if (total < ihl)
            return SHAPE_NONE;
        else
            end = off + (Py_ssize_t)total;
    }
    else if (ethertype == 0x86DD) {
        if (off > n || n - off < 40)
            return SHAPE_NONE;
        const unsigned char *ip = f + off;
        if (ip[0] >> 4 != 6)
            return SHAPE_NONE;
        uint32_t payload_length = be16(ip + 4);
        h->proto = ip[6];
        h->src = ip + 8;
        h->dst = ip + 24;
        h->addr_len = 16;
        h->transport = off + 40;
        end = payload_length ? h->transport + (Py_ssize_t)payload_length : n;
    }
    else {
        return SHAPE_NOT_MINE;
    }
    /* extension headers, tunnels, and whatever else decode.py may learn to open */
    if (h->proto != 6 && h->proto != 17)
        return SHAPE_NOT_MINE;

    /* struct.unpack_from on the frame (not the IP length) decides whether the header is there */
    const Py_ssize_t transport = h->transport;
    if (h->proto == 6) {
        if (transport > n || n - transport < 14)
            return SHAPE_NONE;
        const unsigned char *tcp = f + transport;
        Py_ssize_t header_length = (tcp[12] >> 4) * 4;
        Py_ssize_t start = transport + header_length;
        if (header_length < 20 || start > end)
            return SHAPE_NONE;
        h->sport = be16(tcp);
        h->dport = be16(tcp + 2);
        h->seq = be32(tcp + 4);
        h->ack = be32(tcp + 8);
        h->flags = tcp[13];
        h->start = start;
        h->end = end;
        return SHAPE_FOUND;
    }
    if (transport > n || n - transport < 6)
        return SHAPE_NONE;
    const unsigned char *udp = f + transport;
    uint32_t sport = be16(udp), dport = be16(udp + 2), udp_length = be16(udp + 4);
    Py_ssize_t start = transport + 8;
    if (udp_length >= 8 && transport + (Py_ssize_t)udp_length < end)
        end = transport + (Py_ssize_t)udp_length;
    if (start > end)
        return SHAPE_NONE;
    switch (sport) {
    case 2152: case 4789: case 6081: case 5247: /* GTP-U, VXLAN, Geneve, CAPWAP: decode.py opens them */
        return SHAPE_NOT_MINE;
    }
    switch (dport) {
    case 2152: case 4789: case 6081: case 5247:
        return SHAPE_NOT_MINE;
    }
    h->sport = sport;
    h->dport = dport;
    h->seq = h->ack = h->flags = 0;
    h->start = start;
    h->end = end;
    return SHAPE_FOUND;
}

/* The link layer of the n bytes of a frame at f, then network(): what decode() and its companions share. */
static enum shape
decode_raw(long linktype, const unsigned char *f, Py_ssize_t n, Headers *h)
{
    switch (linktype) {
    case 1: /* Ethernet */
        return n < 14 ? SHAPE_NONE : network(f, n, be16(f + 12), 14, h);
    case 113: /* Linux cooked */
        return n < 16 ? SHAPE_NONE : network(f, n, be16(f + 14), 16, h);
    case 276: /* Linux cooked v2 */
        return n < 2 ? SHAPE_NONE : network(f, n, be16(f), 20, h);
    case 101: case 12: case 14: /* raw IP: the version nibble says which */
        if (n < 1)
            return SHAPE_NONE;
        return network(f, n, f[0] >> 4 == 4 ? 0x0800 : f[0] >> 4 == 6 ? 0x86DD : 0, 0, h);
    case 228:
        return network(f, n, 0x0800, 0, h);
    case 229:
        return network(f, n, 0x86DD, 0, h);
    case 0: case 108: { /* BSD / OpenBSD loopback: a 4-byte address family */
        if (n < 4 || f[1] || f[2])
            return SHAPE_NONE;
        unsigned family;
        if (linktype == 108 || !f[0])
            family = f[3];
        else if (!f[3])
            family = f[0];
        else
            return SHAPE_NONE;
        if (family == 2)
            return network(f, n, 0x0800, 4, h);
        if (family == 24 || family == 28 || family == 30)
            return network(f, n, 0x86DD, 4, h);
        return SHAPE_NONE;
    }
    default: /* PPP, and link types decode.py may add */
        return SHAPE_NOT_MINE;
    }
}

/* The link type as decode_raw takes it; 0 when it is not an int decode.py could treat as one of its own. */
static int
link_number(PyObject *linktype, long *number)
{
    if (!PyLong_CheckExact(linktype))
        return 0;
    int overflow;
    *number = PyLong_AsLongAndOverflow(linktype, &overflow);
    return !overflow && !(*number == -1 && PyErr_Occurred());
}

static enum shape
decode_frame(PyObject *linktype, PyObject *frame, Headers *h)
{
    long number;
    if (!PyBytes_CheckExact(frame) || !link_number(linktype, &number))
        return SHAPE_NOT_MINE;
    return decode_raw(number, (const unsigned char *)PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), h);
}

/* decode()'s answer for what decode_frame found. */
static PyObject *
segment_of(enum shape shape, PyObject *frame, const Headers *h)
{
    if (shape == SHAPE_NONE)
        return NONE();
    if (shape == SHAPE_NOT_MINE)
        return NOT_MINE();
    return new_segment(h->proto, h->src, h->dst, h->addr_len, h->sport, h->dport, h->seq, h->ack, h->flags, frame,
                       h->transport, h->start, h->end);
}

PyDoc_STRVAR(decode_doc,
"decode(linktype, frame) -> Segment | None | NOT_MINE\n\n"
"What capture.decode.decode(linktype, frame) returns, for Ethernet (802.1Q/802.1ad/QinQ/Cisco\n"
"MetaData tags), Linux SLL and SLL2, raw IP and BSD loopback frames holding untunnelled, unfragmented\n"
"IPv4 or extension-free IPv6 TCP/UDP; NOT_MINE for every other shape (other EtherTypes such as PPPoE,\n"
"PPP, fragments, tunnels, IPv6 extension headers, frames that are not bytes): decode.py decides those.");

static PyObject *
decode(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode() takes exactly 2 arguments (linktype, frame)");
        return NULL;
    }
    Headers h;
    return segment_of(decode_frame(args[0], args[1], &h), args[1], &h);
}

/* ----- which worker owns a frame ------------------------------------------------------------------ */

PyDoc_STRVAR(flow_owner_doc,
"flow_owner(linktype, frame, workers) -> int | NOT_MINE\n\n"
"run.parallel's flow hash, ((((src ^ dst) << 16 | sport ^ dport) * 0x9E3779B97F4A7C15) >> 40) % workers\n"
"over the frame's addresses and ports as big integers, for the frames decode() takes; 0 for a frame it\n"
"answers None; NOT_MINE for the rest.");

/* run.parallel's owner_of over the addresses and ports of h: (src ^ dst) << 16 | sport ^ dport as a big
   integer, times the mixing constant, shifted right by 40, modulo workers. */
static unsigned long
owner_hash(const Headers *h, unsigned long workers)
{
    /* src ^ dst (4 or 16 bytes, big-endian) shifted left by 16 with the ports below: three 64-bit limbs,
       least significant first */
    const unsigned char *a = h->src, *b = h->dst;
    Py_ssize_t length = h->addr_len;
    uint32_t ports = h->sport ^ h->dport;
    uint64_t addresses[2] = {0, 0}; /* low, high */
    for (Py_ssize_t i = 0; i < length; i++) {
        Py_ssize_t bit = 8 * (length - 1 - i);
        addresses[bit / 64] |= (uint64_t)(a[i] ^ b[i]) << (bit % 64);
    }
    uint64_t value[3] = {
        addresses[0] << 16 | (ports & 0xFFFF),
        addresses[1] << 16 | addresses[0] >> 48,
        addresses[1] >> 48,
    };
    const uint64_t mix = 0x9E3779B97F4A7C15u;
    uint64_t product[4];
    unsigned __int128 carry = 0;
    for (int i = 0; i < 3; i++) {
        carry += (unsigned __int128)value[i] * mix;
        product[i] = (uint64_t)carry;
        carry >>= 64;
    }
    product[3] = (uint64_t)carry;
    unsigned __int128 remainder = 0;
    for (int i = 3; i >= 0; i--) { /* (product >> 40) % workers, most significant limb first */
        uint64_t limb = product[i] >> 40 | (i < 3 ? product[i + 1] << 24 : 0);
        remainder = ((remainder << 64) | limb) % workers;
    }
    return (unsigned long)remainder;
}

static PyObject *
flow_owner(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "flow_owner() takes exactly 3 arguments (linktype, frame, workers)");
        return NULL;
    }
    unsigned long workers = PyLong_AsUnsignedLong(args[2]);
    if (workers == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (workers == 0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "flow_owner() with no workers");
        return NULL;
    }
    Headers h;
    enum shape shape = decode_frame(args[0], args[1], &h);
    if (shape == SHAPE_NOT_MINE)
        return NOT_MINE();
    return PyLong_FromUnsignedLong(shape == SHAPE_NONE ? 0 : owner_hash(&h, workers));
}

/* ----- TLS record framing ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    unsigned char *tail; /* a partial record carried to the next feed */
    Py_ssize_t tail_len, tail_cap;
    uint64_t base;       /* stream offset of tail[0] */
    Py_ssize_t max_fragment;
    PyObject *error;     /* the ParseError that poisoned the reader */
    int busy;            /* inside feed(): a re-entrant call would see the tail being rewritten */
} RecordReaderObject;

static int
tail_reserve(RecordReaderObject *self, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX - self->tail_len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = self->tail_len + extra;
    if (need <= self->tail_cap)
        return 0;
    Py_ssize_t cap = self->tail_cap > PY_SSIZE_T_MAX / 2 ? need : self->tail_cap * 2;
    if (cap < need)
        cap = need;
    unsigned char *grown = PyMem_Realloc(self->tail, (size_t)cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->tail = grown;
    self->tail_cap = cap;
    return 0;
}

/* After the front was consumed: give memory back as bytearray does, so idle flows stay small. */
static void
tail_trim(RecordReaderObject *self)
{
    if (self->tail_len == 0) {
        PyMem_Free(self->tail);
        self->tail = NULL;
        self->tail_cap = 0;
    }
    else if (self->tail_cap > 2 * self->tail_len) {
        unsigned char *smaller = PyMem_Realloc(self->tail, (size_t)self->tail_len);
        if (smaller != NULL) { /* keeping the larger block is harmless */
            self->tail = smaller;
            self->tail_cap = self->tail_len;
        }
    }
}

static PyObject *
new_record(unsigned content_type, unsigned version, const unsigned char *payload, Py_ssize_t length,
           uint64_t offset)
{
    PyObject *values[4] = {
        PyLong_FromUnsignedLong(content_type),
        PyLong_FromUnsignedLong(version),
        PyBytes_FromStringAndSize((const char *)payload, length),
        PyLong_FromUnsignedLongLong(offset),
    };
    PyObject *record = NULL;
    if (values[0] && values[1] && values[2] && values[3])
        record = Record->tp_alloc(Record, 0);
    if (record == NULL) {
        for (int i = 0; i < 4; i++)
            Py_XDECREF(values[i]);
        return NULL;
    }
    /* The frozen dataclass's __init__ does only these four object.__setattr__ calls. */
    for (int i = 0; i < 4; i++)
        *(PyObject **)((char *)record + record_offset[i]) = values[i];
    return record;
}

/* Stores ParseError(what, offset) as the reader's error; what is stolen. -1 if it could not be built. */
static int
poison(RecordReaderObject *self, PyObject *what, uint64_t offset)
{
    if (what == NULL)
        return -1;
    PyObject *error = PyObject_CallFunction(ParseError, "NK", what, (unsigned long long)offset);
    if (error == NULL)
        return -1;
    Py_XSETREF(self->error, error);
    return 0;
}

/* What a walk hands each complete record to: its header, its body's length and its stream offset;
   -1 with an exception set ends the walk. */
typedef int (*RecordSink)(void *context, const unsigned char *header, Py_ssize_t length, uint64_t offset);

/* feed()'s sink: a Record appended to the list context. */
static int
append_record(void *records, const unsigned char *h, Py_ssize_t length, uint64_t offset)
{
    PyObject *record = new_record(h[0], be16(h + 1), h + 5, length, offset);
    if (record == NULL)
        return -1;
    int appended = PyList_Append((PyObject *)records, record);
    Py_DECREF(record);
    return appended;
}

/* The records complete in v[0:end], handed to sink; returns where the first incomplete one starts, or
   -1 with an exception set. A bad header poisons the reader and ends the walk. */
static Py_ssize_t
walk(RecordReaderObject *self, const unsigned char *v, Py_ssize_t end, RecordSink sink, void *context)
{
    Py_ssize_t pos = 0;
    while (end - pos >= 5) {
        const unsigned char *h = v + pos;
        uint64_t offset = self->base + (uint64_t)pos;
        uint32_t length = be16(h + 3);
        if (h[0] < 20 || h[0] > 24)  /* change_cipher_spec .. heartbeat */
            return poison(self, PyUnicode_FromFormat("record content type %u is not TLS", (unsigned)h[0]), offset)
                   < 0 ? -1 : pos;
        if (h[1] != 3)
            return poison(self, PyUnicode_FromFormat("record major version %u is not 3", (unsigned)h[1]), offset)
                   < 0 ? -1 : pos;
        if ((Py_ssize_t)length > self->max_fragment)
            return poison(self,
                          PyUnicode_FromFormat("record_overflow: %u bytes > %zd", (unsigned)length, self->max_fragment),
                          offset) < 0 ? -1 : pos;
        if (end - pos - 5 < (Py_ssize_t)length)
            break;
        if (sink(context, h, (Py_ssize_t)length, offset) < 0)
            return -1;
        pos += 5 + (Py_ssize_t)length;
    }
    return pos;
}

/* A fresh ParseError like the one that poisoned the reader, raised; always NULL. */
static PyObject *
raise_poison(PyObject *error)
{
    PyObject *what = PyObject_GetAttrString(error, "what");
    PyObject *offset = what ? PyObject_GetAttrString(error, "offset") : NULL;
    PyObject *again = offset ? PyObject_CallFunctionObjArgs(ParseError, what, offset, NULL) : NULL;
    if (again != NULL)
        PyErr_SetObject(ParseError, again);
    Py_XDECREF(what);
    Py_XDECREF(offset);
    Py_XDECREF(again);
    return NULL;
}

/* The n bytes at data appended to the stream: complete records to sink, the rest kept as the tail.
   Returns how far the stream advanced, or -1 with an exception set. */
static Py_ssize_t
advance(RecordReaderObject *self, const unsigned char *data, Py_ssize_t n, RecordSink sink, void *context)
{
    self->busy = 1;
    Py_ssize_t pos;
    if (self->tail_len) {
        if (tail_reserve(self, n) < 0) {
            pos = -1;
        }
        else {
            memcpy(self->tail + self->tail_len, data, (size_t)n);
            self->tail_len += n;
            pos = walk(self, self->tail, self->tail_len, sink, context);
            if (pos > 0) {
                memmove(self->tail, self->tail + pos, (size_t)(self->tail_len - pos));
                self->tail_len -= pos;
                tail_trim(self);
            }
        }
    }
    else {
        /* Nothing pending (the usual case): records come straight out of the caller's bytes. */
        pos = walk(self, data, n, sink, context);
        if (pos >= 0 && pos < n) {
            if (tail_reserve(self, n - pos) < 0) {
                pos = -1;
            }
            else {
                memcpy(self->tail, data + pos, (size_t)(n - pos));
                self->tail_len = n - pos;
            }
        }
    }
    self->busy = 0;
    if (pos >= 0)
        self->base += (uint64_t)pos;
    return pos;
}

static PyObject *
reader_feed(RecordReaderObject *self, PyObject *data)
{
    if (self->error != NULL)
        return raise_poison(self->error);
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "RecordReader.feed() called re-entrantly");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *records = PyList_New(0);
    if (records == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t pos = advance(self, view.buf, view.len, append_record, records);
    PyBuffer_Release(&view);
    if (pos < 0) {
        Py_DECREF(records);
        return NULL;
    }
    if (self->error != NULL && PyList_GET_SIZE(records) == 0) {
        Py_DECREF(records);
        return raise_poison(self->error);
    }
    return records;
}

static int
reader_init(RecordReaderObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"max_fragment", NULL};
    Py_ssize_t max_fragment = max_ciphertext;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|n:RecordReader", keywords, &max_fragment))
        return -1;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "RecordReader re-initialised inside feed()");
        return -1;
    }
    PyMem_Free(self->tail);
    self->tail = NULL;
    self->tail_len = self->tail_cap = 0;
    self->base = 0;
    self->max_fragment = max_fragment;
    Py_CLEAR(self->error);
    return 0;
}

static void
reader_dealloc(RecordReaderObject *self)
{
    PyMem_Free(self->tail);
    Py_XDECREF(self->error);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
reader_error(RecordReaderObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->error ? self->error : Py_None);
}

static PyObject *
reader_buffered(RecordReaderObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->tail_len);
}

static PyMethodDef reader_methods[] = {
    {"feed", (PyCFunction)reader_feed, METH_O, "Every record completed by data; a partial record stays buffered."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef reader_getset[] = {
    {"error", (getter)reader_error, NULL, "The framing error that poisoned this reader, if any.", NULL},
    {"buffered", (getter)reader_buffered, NULL, "Bytes held while waiting for the rest of a record.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RecordReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "helloscope.sniffer.capture._core.RecordReader",
    .tp_doc = PyDoc_STR("parsers.records.RecordReader in C: split a byte stream into TLS records."),
    .tp_basicsize = sizeof(RecordReaderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)reader_init,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_methods = reader_methods,
    .tp_getset = reader_getset,
};

/* ----- skimming reported TCP connections ----------------------------------------------------------
 *
 * Most packets of a long capture belong to TCP connections already reported (settled): for each, the
 * flow table only looks the flow up, finds it alive and moves its last-seen time (transport/tcp.py,
 * TcpTable.packet). The skimmer does exactly that here, without building the segment, for the packets
 * where nothing else can happen: no SYN, FIN or RST, no payload that may start a new TLS connection
 * (a handshake record), the flow not idle past the timeout, and the table within its memory bound (it
 * sheds connections before the look-up otherwise). Anything else gets the segment, and the Python
 * table decides as it always did.
 *
 * Given a trace configuration, it also takes the most common packet of a connection not yet reported:
 * the next in-order bytes of a keyless TLS 1.3 connection past its ServerHello, which only lengthen the
 * record trace the inference reads. TcpTable.packet, the stream reassembler, the record reader and
 * ConnectionTracker.record_all would deliver the bytes, frame the records and append one RecordTrace
 * each; trace_tcp does the same on their objects' slots, and only where every condition under which
 * they would do anything else is known to be false (listed in trace_tcp). The layouts of those objects
 * are read by slot name; an object of another layout is left to Python.
 */

/* Slot offsets of one class, by the names a layout lists; type is NULL until resolved. */
#define MAX_SLOTS 10
#define MAX_TRACED 256 /* the most traced records a trace configuration may ask for */
typedef struct {
    PyTypeObject *type;
    Py_ssize_t at[MAX_SLOTS];
} Layout;

enum { F_KEYS, F_SIDES, F_TRACKER, F_CLIENT, F_COST, F_TRACKED, F_SLOTS };
static const char *const flow_slots[F_SLOTS] = {"keys", "sides", "tracker", "client", "cost", "tracked"};
enum { D_BROKEN, D_SUSPECT, D_FIN, D_BASE, D_VERIFIED, D_RECORDS, D_STREAM, D_PENDING, D_SLOTS };
static const char *const direction_slots[D_SLOTS] = {"broken", "suspect", "fin", "base", "verified", "records",
                                                     "stream", "pending"};
enum { S_CAPPED, S_PENDING, S_BASE, S_DELIVERED, S_MAX_BYTES, S_RECENT, S_HELD_COST, S_SLOTS };
static const char *const stream_slots[S_SLOTS] = {"capped", "_pending", "_base", "delivered", "max_bytes", "_recent",
                                                  "_held_cost"};
enum { T_TLS13, T_KEEP_PROTECTED, T_SETTLED, T_HANDSHAKE_OVER, T_BROKEN, T_RECORDS, T_PROTECTED_SEEN,
       T_PROTECTED_BYTES, T_SLOTS };
static const char *const tracker_slots[T_SLOTS] = {"tls13", "keep_protected", "_settled", "handshake_over",
                                                   "_broken", "records", "protected_seen", "_protected_bytes"};

typedef struct {
    PyObject_HEAD
    PyObject *flows;      /* the table's dict: (src, sport, dst, dport) -> flow */
    PyObject *table;      /* the TcpTable: its _memory and _max_memory */
    PyTypeObject *flow_type;
    Py_ssize_t done_offset, last_seen_offset;  /* slots of lifecycle.Connection */
    double idle;
    /* the trace configuration: NULL trace_type when none was given */
    PyObject *trace_type;              /* RecordTrace */
    PyObject *client, *server;         /* Sender.CLIENT, Sender.SERVER */
    PyObject *application_data;        /* the int 23 every trace of this path carries */
    Py_ssize_t max_traces, flow_cost;  /* settlement.MAX_TRACED_RECORDS, tcp.FLOW_COST */
    Py_ssize_t recent_window;          /* reassembly.RECENT_WINDOW */
    Layout flow, direction, stream, tracker;
    Py_ssize_t traced;                 /* packets taken by trace_tcp */
} FlowSkimmerObject;

static PyObject *memory_name, *max_memory_name;

#define SLOT(object, offset) (*(PyObject **)((char *)(object) + (offset)))

/* (src, sport, dst, dport) as TcpTable keys its flows */
static PyObject *
flow_key(const unsigned char *src, const unsigned char *dst, Py_ssize_t addr_len, uint32_t sport, uint32_t dport)
{
    PyObject *items[4] = {
        PyBytes_FromStringAndSize((const char *)src, addr_len),
        PyLong_FromUnsignedLong(sport),
        PyBytes_FromStringAndSize((const char *)dst, addr_len),
        PyLong_FromUnsignedLong(dport),
    };
    PyObject *key = NULL;
    if (items[0] && items[1] && items[2] && items[3])
        key = PyTuple_New(4);
    if (key == NULL) {
        for (int i = 0; i < 4; i++)
            Py_XDECREF(items[i]);
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        PyTuple_SET_ITEM(key, i, items[i]);
    return key;
}

/* The table's accounted memory when it is within its bound (over it, the table sheds connections
   before it looks a packet's flow up): 1 with *memory a new reference, 0 when over, -1 on error. */
static int
memory_within_bound(FlowSkimmerObject *skim, PyObject **memory)
{
    if ((*memory = PyObject_GetAttr(skim->table, memory_name)) == NULL)
        return -1;
    PyObject *max_memory = PyObject_GetAttr(skim->table, max_memory_name);
    int over = max_memory == NULL ? -1 : PyObject_RichCompareBool(*memory, max_memory, Py_GT);
    Py_XDECREF(max_memory);
    if (over != 0) {
        Py_CLEAR(*memory);
        return over < 0 ? -1 : 0;
    }
    return 1;
}

/* A packet of a reported flow: 1 when it only keeps the flow alive (its last-seen time moved to
   timestamp), 0 when the flow table must see it, -1 on error. */
static int
skim_reported(FlowSkimmerObject *skim, PyObject *flow, double timestamp, const unsigned char *f, Py_ssize_t n,
              const Headers *h)
{
    if (h->start < n && h->end > h->start && f[h->start] == 0x16)
        return 0; /* a handshake record: maybe a new ClientHello on the same ports */
    PyObject *last_seen = SLOT(flow, skim->last_seen_offset);
    if (last_seen == NULL || !PyFloat_CheckExact(last_seen) || timestamp - PyFloat_AS_DOUBLE(last_seen) > skim->idle)
        return 0;
    PyObject *memory;
    int within = memory_within_bound(skim, &memory);
    if (within <= 0)
        return within;
    Py_DECREF(memory);
    PyObject *seen = PyFloat_FromDouble(timestamp);
    if (seen == NULL)
        return -1;
    Py_XSETREF(SLOT(flow, skim->last_seen_offset), seen);
    return 1;
}

static int trace_tcp(FlowSkimmerObject *skim, PyObject *flow, PyObject *key, double timestamp,
                     const unsigned char *f, Py_ssize_t n, const Headers *h);

/* 1 when the TCP segment h of the n-byte frame f was taken whole (a reported flow kept alive, or the
   trace of a followed one lengthened), 0 when the flow table must see it, -1 on error. */
static int
skim_tcp(FlowSkimmerObject *skim, double timestamp, const unsigned char *f, Py_ssize_t n, const Headers *h)
{
    if (h->flags & 0x07) /* FIN, SYN, RST */
        return 0;
    PyObject *key = flow_key(h->src, h->dst, h->addr_len, h->sport, h->dport);
    if (key == NULL)
        return -1;
    PyObject *flow = PyDict_GetItemWithError(skim->flows, key); /* borrowed */
    if (flow == NULL || !PyObject_TypeCheck(flow, skim->flow_type)) {
        Py_DECREF(key);
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_INCREF(flow); /* the look-ups below could run Python code that drops it from the table */
    PyObject *done = SLOT(flow, skim->done_offset);
    int result = 0;
    if (done == Py_True)
        result = skim_reported(skim, flow, timestamp, f, n, h);
    else if (done == Py_False && skim->trace_type != NULL)
        result = trace_tcp(skim, flow, key, timestamp, f, n, h);
    Py_DECREF(flow);
    Py_DECREF(key);
    return result;
}

/* The offset of a slot (a T_OBJECT_EX member) of type, or -1 with TypeError set. */
static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s has no slot %s", type->tp_name, name);
        }
        return -1;
    }
    Py_ssize_t offset = -1;
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type) && ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX)
        offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    else
        PyErr_Format(PyExc_TypeError, "FlowSkimmer: %s.%s is not a slot", type->tp_name, name);
    Py_DECREF(descr);
    return offset;
}

/* The offsets of the slots listed, in type: 0, or -1 with TypeError set when one is not a slot. */
static int
layout_for(Layout *layout, PyTypeObject *type, const char *const *names, int count)
{
    Py_ssize_t at[MAX_SLOTS];
    for (int i = 0; i < count; i++)
        if ((at[i] = slot_offset(type, names[i])) < 0)
            return -1;
    Py_XSETREF(layout->type, (PyTypeObject *)Py_NewRef(type));
    memcpy(layout->at, at, sizeof(Py_ssize_t) * (size_t)count);
    return 0;
}

/* The layout of object's class: 1 when it has every slot listed (resolved once per class), 0 when not. */
static int
layout_of(Layout *layout, PyObject *object, const char *const *names, int count)
{
    if (layout->type == Py_TYPE(object))
        return 1;
    if (layout_for(layout, Py_TYPE(object), names, count) < 0) {
        PyErr_Clear(); /* another layout: Python handles its packets */
        return 0;
    }
    return 1;
}

/* The value of an int slot; 0 when the slot holds something else. */
static int
size_slot(PyObject *value, Py_ssize_t *size)
{
    if (value == NULL || !PyLong_CheckExact(value))
        return 0;
    *size = PyLong_AsSsize_t(value);
    if (*size == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* How many records the n bytes at data complete in reader, all application_data with sound headers,
   their body lengths in lengths[0 .. room - 1]; -1 when a header would be anything else or more than
   room records would complete. Nothing is changed. */
static Py_ssize_t
application_records(const RecordReaderObject *reader, const unsigned char *data, Py_ssize_t n, Py_ssize_t *lengths,
                    Py_ssize_t room)
{
    const unsigned char *tail = reader->tail;
    const Py_ssize_t held = reader->tail_len, total = held + n;
#define BYTE_AT(i) ((i) < held ? tail[(i)] : data[(i) - held])
    Py_ssize_t pos = 0, count = 0;
    while (total - pos >= 5) {
        Py_ssize_t length = (Py_ssize_t)BYTE_AT(pos + 3) << 8 | BYTE_AT(pos + 4);
        if (BYTE_AT(pos) != 23 || BYTE_AT(pos + 1) != 3 || length > reader->max_fragment)
            return -1;
        if (total - pos - 5 < length)
            break;
        if (count == room)
            return -1;
        lengths[count++] = length;
        pos += 5 + length;
    }
#undef BYTE_AT
    return count;
}

/* advance()'s sink when the records were counted beforehand (application_records) */
static int
ignore_record(void *Py_UNUSED(context), const unsigned char *Py_UNUSED(header), Py_ssize_t Py_UNUSED(length),
              uint64_t Py_UNUSED(offset))
{
    return 0;
}

/* The stream's window of recently delivered bytes after n more at data (reassembly._deliver): a new
   object for slot to hold, or the bytearray it holds grown in place (then a new reference to it). */
static PyObject *
recent_after(PyObject *recent, const unsigned char *data, Py_ssize_t n, Py_ssize_t window)
{
    Py_ssize_t held = PyBytes_CheckExact(recent) ? PyBytes_GET_SIZE(recent) : PyByteArray_GET_SIZE(recent);
    if (held == 0) /* the first delivery is kept as it is, up to the window */
        return PyBytes_FromStringAndSize((const char *)data + (n > window ? n - window : 0), n > window ? window : n);
    Py_ssize_t total = held + n, keep = total < window ? total : window, drop = total - keep;
    if (PyBytes_CheckExact(recent)) { /* the second grows a bytearray */
        PyObject *grown = PyByteArray_FromStringAndSize(NULL, keep);
        if (grown == NULL)
            return NULL;
        char *out = PyByteArray_AS_STRING(grown);
        Py_ssize_t old = drop < held ? held - drop : 0;
        memcpy(out, PyBytes_AS_STRING(recent) + held - old, (size_t)old);
        memcpy(out + old, data + (n - (keep - old)), (size_t)(keep - old));
        return grown;
    }
    if (PyByteArray_Resize(recent, keep > held ? keep : held) < 0)
        return NULL;
    char *buf = PyByteArray_AS_STRING(recent);
    Py_ssize_t old = drop < held ? held - drop : 0;
    memmove(buf, buf + held - old, (size_t)old);
    memcpy(buf + old, data + (n - (keep - old)), (size_t)(keep - old));
    if (PyByteArray_Resize(recent, keep) < 0)
        return NULL;
    return Py_NewRef(recent);
}

/* What a direction's buffers hold (tcp._cost's terms for one direction); -1 when not readable here. */
static Py_ssize_t
direction_cost(FlowSkimmerObject *skim, PyObject *direction)
{
    const Py_ssize_t *d = skim->direction.at, *s = skim->stream.at;
    PyObject *stream = SLOT(direction, d[D_STREAM]), *pending = SLOT(direction, d[D_PENDING]);
    PyObject *records = SLOT(direction, d[D_RECORDS]);
    if (stream == NULL || pending == NULL || records == NULL || !PyByteArray_CheckExact(pending) ||
        !layout_of(&skim->stream, stream, stream_slots, S_SLOTS))
        return -1;
    PyObject *recent = SLOT(stream, s[S_RECENT]);
    Py_ssize_t held_cost;
    if (recent == NULL || !(PyBytes_CheckExact(recent) || PyByteArray_CheckExact(recent)) ||
        !size_slot(SLOT(stream, s[S_HELD_COST]), &held_cost))
        return -1;
    Py_ssize_t buffered;
    if (records == Py_None)
        buffered = 0;
    else if (Py_IS_TYPE(records, &RecordReaderType))
        buffered = ((RecordReaderObject *)records)->tail_len;
    else
        return -1;
    return held_cost + Py_SIZE(recent) + PyByteArray_GET_SIZE(pending) + buffered;
}

/* 1 when the TCP segment h (no SYN, FIN or RST) of the n-byte frame f, on flow (keyed key, not reported)
   was taken as TcpTable.packet would take it, 0 when the flow table must see it, -1 on error.

   Taken only when every one of these holds, each a branch of TcpTable.packet and what it calls that
   would otherwise do more than deliver the bytes and trace their records:
   - the table is within its memory bound and the flow is not idle past the timeout, admitted, with
     stream state and a tracker; the whole payload was captured;
   - no FIN waits in either direction and no segment with a wrong checksum is held; the sending
     direction is framing records (with the C reader, not poisoned) and past the bytes whose TCP
     checksums are verified;
   - the segment starts exactly where the stream is delivered up to, nothing is held beyond a hole,
     and the stream stays below its byte cap;
   - the tracker follows keyless TLS 1.3 past the ServerHello (not kept for keys, not settled, the
     sender's direction not broken) and every record the bytes complete is application_data with a
     sound header, fewer than the trace still has room for before it settles. */
static int
trace_tcp(FlowSkimmerObject *skim, PyObject *flow, PyObject *key, double timestamp, const unsigned char *f,
          Py_ssize_t n, const Headers *h)
{
    if (h->end > n || h->end <= h->start)
        return 0;
    const unsigned char *payload = f + h->start;
    const Py_ssize_t length = h->end - h->start;
    PyObject *last_seen = SLOT(flow, skim->last_seen_offset);
    if (last_seen == NULL || !PyFloat_CheckExact(last_seen) || timestamp - PyFloat_AS_DOUBLE(last_seen) > skim->idle)
        return 0;
    const Py_ssize_t *fl = skim->flow.at;
    PyObject *keys = SLOT(flow, fl[F_KEYS]), *sides = SLOT(flow, fl[F_SIDES]), *tracker = SLOT(flow, fl[F_TRACKER]);
    PyObject *client = SLOT(flow, fl[F_CLIENT]);
    Py_ssize_t old_cost;
    if (keys == NULL || sides == NULL || tracker == NULL || client == NULL || SLOT(flow, fl[F_TRACKED]) != Py_True ||
        !PyTuple_CheckExact(keys) || PyTuple_GET_SIZE(keys) != 2 || !PyTuple_CheckExact(sides) ||
        PyTuple_GET_SIZE(sides) != 2 || !size_slot(SLOT(flow, fl[F_COST]), &old_cost))
        return 0;
    int first = PyObject_RichCompareBool(key, PyTuple_GET_ITEM(keys, 0), Py_EQ);
    if (first < 0)
        return -1;
    const int side = first ? 0 : 1;
    PyObject *direction = PyTuple_GET_ITEM(sides, side), *other = PyTuple_GET_ITEM(sides, 1 - side);
    if (!layout_of(&skim->direction, direction, direction_slots, D_SLOTS) || Py_TYPE(other) != Py_TYPE(direction))
        return 0;
    const Py_ssize_t *d = skim->direction.at;
    if (SLOT(direction, d[D_BROKEN]) != Py_False || SLOT(direction, d[D_SUSPECT]) != Py_None ||
        SLOT(direction, d[D_FIN]) != Py_None || SLOT(other, d[D_FIN]) != Py_None ||
        SLOT(other, d[D_SUSPECT]) != Py_None)
        return 0;
    PyObject *reader_object = SLOT(direction, d[D_RECORDS]);
    Py_ssize_t base, verified;
    if (reader_object == NULL || !Py_IS_TYPE(reader_object, &RecordReaderType) ||
        !size_slot(SLOT(direction, d[D_BASE]), &base) || !size_slot(SLOT(direction, d[D_VERIFIED]), &verified) ||
        (Py_ssize_t)((h->seq - (uint32_t)base) & 0xFFFFFFFFu) < verified)
        return 0;
    RecordReaderObject *reader = (RecordReaderObject *)reader_object;
    if (reader->error != NULL || reader->busy)
        return 0;
    PyObject *stream = SLOT(direction, d[D_STREAM]);
    if (stream == NULL || !layout_of(&skim->stream, stream, stream_slots, S_SLOTS))
        return 0;
    const Py_ssize_t *s = skim->stream.at;
    PyObject *held = SLOT(stream, s[S_PENDING]), *recent = SLOT(stream, s[S_RECENT]);
    Py_ssize_t stream_base, delivered, max_bytes;
    if (SLOT(stream, s[S_CAPPED]) != Py_False || held == NULL || !PyDict_CheckExact(held) || PyDict_GET_SIZE(held) ||
        recent == NULL || !(PyBytes_CheckExact(recent) || PyByteArray_CheckExact(recent)) ||
        !size_slot(SLOT(stream, s[S_BASE]), &stream_base) || !size_slot(SLOT(stream, s[S_DELIVERED]), &delivered) ||
        !size_slot(SLOT(stream, s[S_MAX_BYTES]), &max_bytes) ||
        (Py_ssize_t)((h->seq - (uint32_t)stream_base) & 0xFFFFFFFFu) != delivered || length >= max_bytes - delivered)
        return 0;
    if (!layout_of(&skim->tracker, tracker, tracker_slots, T_SLOTS))
        return 0;
    const Py_ssize_t *t = skim->tracker.at;
    PyObject *broken = SLOT(tracker, t[T_BROKEN]), *traces = SLOT(tracker, t[T_RECORDS]);
    Py_ssize_t protected_bytes;
    if (SLOT(tracker, t[T_TLS13]) != Py_True || SLOT(tracker, t[T_KEEP_PROTECTED]) != Py_False ||
        SLOT(tracker, t[T_SETTLED]) != Py_False || SLOT(tracker, t[T_HANDSHAKE_OVER]) != Py_False ||
        broken == NULL || !PyDict_CheckExact(broken) || traces == NULL || !PyList_CheckExact(traces) ||
        !size_slot(SLOT(tracker, t[T_PROTECTED_BYTES]), &protected_bytes))
        return 0;
    PyObject *role = PyLong_CheckExact(client) && PyLong_AsLong(client) == side ? skim->client : skim->server;
    PyObject *sender_broken = PyDict_GetItemWithError(broken, role);
    if (sender_broken != Py_False)
        return PyErr_Occurred() ? -1 : 0;
    Py_ssize_t lengths[MAX_TRACED];
    Py_ssize_t room = skim->max_traces - PyList_GET_SIZE(traces) - 1; /* the record that settles goes to Python */
    if (room < 0)
        return 0;
    Py_ssize_t count = application_records(reader, payload, length, lengths, room);
    if (count < 0)
        return 0;
    Py_ssize_t other_cost = direction_cost(skim, other);
    if (other_cost < 0 || direction_cost(skim, direction) < 0)
        return 0;
    PyObject *memory;
    int within = memory_within_bound(skim, &memory);
    if (within <= 0)
        return within;
    /* Every condition holds: what Python would have done, in its order of effect. */
    int result = -1;
    PyObject *added = PyList_New(count), *seen = PyFloat_FromDouble(timestamp), *now_delivered = NULL;
    PyObject *window = NULL, *cost = NULL, *now_memory = NULL;
    if (added == NULL || seen == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *size = PyLong_FromSsize_t(lengths[i]);
        if (size == NULL)
            goto done;
        PyObject *args[4] = {role, skim->application_data, size, seen};
        PyObject *trace = PyObject_Vectorcall(skim->trace_type, args, 4, NULL);
        Py_DECREF(size);
        if (trace == NULL)
            goto done;
        PyList_SET_ITEM(added, i, trace);
    }
    if ((now_delivered = PyLong_FromSsize_t(delivered + length)) == NULL ||
        (window = recent_after(recent, payload, length, skim->recent_window)) == NULL)
        goto done;
    if (advance(reader, payload, length, ignore_record, NULL) < 0)
        goto done;
    Py_XSETREF(SLOT(stream, s[S_DELIVERED]), Py_NewRef(now_delivered));
    Py_XSETREF(SLOT(stream, s[S_RECENT]), Py_NewRef(window));
    if (count) {
        if (PyList_SetSlice(traces, PyList_GET_SIZE(traces), PyList_GET_SIZE(traces), added) < 0)
            goto done;
        Py_XSETREF(SLOT(tracker, t[T_PROTECTED_SEEN]), Py_NewRef(Py_True));
    }
    Py_XSETREF(SLOT(flow, skim->last_seen_offset), Py_NewRef(seen));
    Py_ssize_t mine = direction_cost(skim, direction);
    if (mine < 0) {
        PyErr_SetString(PyExc_RuntimeError, "FlowSkimmer: a direction changed layout while traced");
        goto done;
    }
    Py_ssize_t flow_cost = skim->flow_cost + mine + other_cost + protected_bytes;
    if ((cost = PyLong_FromSsize_t(flow_cost)) == NULL)
        goto done;
    PyObject *change = PyLong_FromSsize_t(flow_cost - old_cost);
    now_memory = change == NULL ? NULL : PyNumber_Add(memory, change);
    Py_XDECREF(change);
    if (now_memory == NULL || PyObject_SetAttr(skim->table, memory_name, now_memory) < 0)
        goto done;
    Py_XSETREF(SLOT(flow, fl[F_COST]), Py_NewRef(cost));
    skim->traced++;
    result = 1;
done:
    Py_XDECREF(memory);
    Py_XDECREF(added);
    Py_XDECREF(seen);
    Py_XDECREF(now_delivered);
    Py_XDECREF(window);
    Py_XDECREF(cost);
    Py_XDECREF(now_memory);
    return result;
}

static int
skimmer_init(FlowSkimmerObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"flows", "table", "flow_type", "idle", "trace", NULL};
    PyObject *flows, *table, *flow_type, *trace = Py_None;
    double idle;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OO!d|O", keywords, &PyDict_Type, &flows, &table, &PyType_Type,
                                     &flow_type, &idle, &trace))
        return -1;
    PyObject *trace_type = NULL, *client = NULL, *server = NULL;
    Py_ssize_t max_traces = 0, flow_cost = 0, recent_window = 0;
    if (trace != Py_None) {
        if (!PyArg_ParseTuple(trace, "OOOnnn:FlowSkimmer trace (RecordTrace, CLIENT, SERVER, max traces, flow cost, "
                                     "recent window)", &trace_type, &client, &server, &max_traces, &flow_cost,
                              &recent_window))
            return -1;
        if (max_traces < 1 || max_traces > MAX_TRACED || recent_window < 1) {
            PyErr_SetString(PyExc_ValueError, "FlowSkimmer: trace limits out of range");
            return -1;
        }
        if (layout_for(&self->flow, (PyTypeObject *)flow_type, flow_slots, F_SLOTS) < 0)
            return -1;
    }
    Py_ssize_t done = slot_offset((PyTypeObject *)flow_type, "done");
    if (done < 0)
        return -1;
    Py_ssize_t last_seen = slot_offset((PyTypeObject *)flow_type, "last_seen");
    if (last_seen < 0)
        return -1;
    Py_XSETREF(self->flows, Py_NewRef(flows));
    Py_XSETREF(self->table, Py_NewRef(table));
    Py_XSETREF(self->flow_type, (PyTypeObject *)Py_NewRef(flow_type));
    self->done_offset = done;
    self->last_seen_offset = last_seen;
    self->idle = idle;
    Py_XSETREF(self->trace_type, Py_XNewRef(trace_type));
    Py_XSETREF(self->client, Py_XNewRef(client));
    Py_XSETREF(self->server, Py_XNewRef(server));
    self->max_traces = max_traces;
    self->flow_cost = flow_cost;
    self->recent_window = recent_window;
    if (trace_type != NULL && self->application_data == NULL &&
        (self->application_data = PyLong_FromLong(23)) == NULL)
        return -1;
    return 0;
}

static int
skimmer_traverse(FlowSkimmerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->flows);
    Py_VISIT(self->table);
    Py_VISIT(self->flow_type);
    Py_VISIT(self->trace_type);
    Py_VISIT(self->client);
    Py_VISIT(self->server);
    Py_VISIT(self->flow.type);
    Py_VISIT(self->direction.type);
    Py_VISIT(self->stream.type);
    Py_VISIT(self->tracker.type);
    return 0;
}

static int
skimmer_clear(FlowSkimmerObject *self)
{
    Py_CLEAR(self->flows);
    Py_CLEAR(self->table);
    Py_CLEAR(self->flow_type);
    Py_CLEAR(self->trace_type);
    Py_CLEAR(self->client);
    Py_CLEAR(self->server);
    Py_CLEAR(self->application_data);
    Py_CLEAR(self->flow.type);
    Py_CLEAR(self->direction.type);
    Py_CLEAR(self->stream.type);
    Py_CLEAR(self->tracker.type);
    return 0;
}

static void
skimmer_dealloc(FlowSkimmerObject *self)
{
    PyObject_GC_UnTrack(self);
    skimmer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
skimmer_decode(FlowSkimmerObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "decode() takes exactly 3 arguments (linktype, frame, timestamp)");
        return NULL;
    }
    if (self->flows == NULL) {
        PyErr_SetString(PyExc_ValueError, "FlowSkimmer was not initialised");
        return NULL;
    }
    Headers h;
    enum shape shape = decode_frame(args[0], args[1], &h);
    if (shape == SHAPE_FOUND && h.proto == 6 && PyFloat_CheckExact(args[2])) {
        int skimmed = skim_tcp(self, PyFloat_AS_DOUBLE(args[2]), (const unsigned char *)PyBytes_AS_STRING(args[1]),
                               PyBytes_GET_SIZE(args[1]), &h);
        if (skimmed < 0)
            return NULL;
        if (skimmed)
            return Py_NewRef(Skimmed);
    }
    return segment_of(shape, args[1], &h);
}

static PyMemberDef skimmer_members[] = {
    {"traced", T_PYSSIZET, offsetof(FlowSkimmerObject, traced), READONLY,
     "packets of followed connections whose records only lengthened the trace, taken"},
    {NULL},
};

static PyMethodDef skimmer_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))skimmer_decode, METH_FASTCALL,
     "decode(linktype, frame, timestamp) -> SKIMMED | Segment | None | NOT_MINE\n\n"
     "core.decode's answer, or SKIMMED for a packet of a reported TCP connection that only keeps it alive\n"
     "(its last-seen time moved to timestamp, as TcpTable.packet would)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FlowSkimmerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "helloscope.sniffer.capture._core.FlowSkimmer",
    .tp_doc = PyDoc_STR("FlowSkimmer(flows, table, flow_type, idle): the flow look-up of packets of reported TCP "
                        "connections, in C."),
    .tp_basicsize = sizeof(FlowSkimmerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)skimmer_init,
    .tp_traverse = (traverseproc)skimmer_traverse,
    .tp_clear = (inquiry)skimmer_clear,
    .tp_dealloc = (destructor)skimmer_dealloc,
    .tp_methods = skimmer_methods,
    .tp_members = skimmer_members,
};

/* ----- reading frames, through a sieve ------------------------------------------------------------
 *
 * split_pcap and split_pcapng give CaptureReader an iterator over the records wholly inside its buffer,
 * read one at a time as the caller asks for the next frame. A sieve, when given, sees each frame first
 * and takes the ones the Python side would only drop or skim: a worker's foreign frames that do not
 * move its sweep clock, and packets that only keep a reported TCP connection alive (the skimmer's test)
 * and do not move the tables' sweep clock. A taken frame is never made into Python objects. Because a
 * frame is judged only when the previous one has been handled, the sieve sees the flow table exactly as
 * the Python loop would.
 */

typedef struct {
    PyObject_HEAD
    FlowSkimmerObject *skimmer; /* NULL: no own frame is taken */
    PyObject *clock;            /* the tables' Sweeper: an own frame at or past its _next is not taken */
    Py_ssize_t clock_offset;
    PyObject *share;            /* with workers: a foreign frame at or past its tick is not taken */
    Py_ssize_t share_offset;
    unsigned long worker, workers;
    Py_ssize_t skimmed, skimmed_bytes, foreign;
} SieveObject;

static PyTypeObject SieveType;

/* timestamp < the float in owner's slot; 0 when the slot holds anything else (Python then decides) */
static inline int
before(PyObject *owner, Py_ssize_t offset, double timestamp)
{
    PyObject *deadline = SLOT(owner, offset);
    return deadline != NULL && PyFloat_CheckExact(deadline) && timestamp < PyFloat_AS_DOUBLE(deadline);
}

/* 1 when the sieve takes the n-byte frame f, 0 when it goes to Python, -1 on error. */
static int
sieve_take(SieveObject *sieve, double timestamp, int link_ok, long link, const unsigned char *f, Py_ssize_t n)
{
    if (!link_ok)
        return 0;
    Headers h;
    enum shape shape = decode_raw(link, f, n, &h);
    if (shape == SHAPE_NOT_MINE)
        return 0;
    if (sieve->workers > 1 && (shape == SHAPE_NONE ? 0 : owner_hash(&h, sieve->workers)) != sieve->worker) {
        if (!before(sieve->share, sieve->share_offset, timestamp))
            return 0;
        sieve->foreign++;
        return 1;
    }
    if (shape != SHAPE_FOUND || h.proto != 6 || sieve->skimmer == NULL ||
        !before(sieve->clock, sieve->clock_offset, timestamp))
        return 0;
    int taken = skim_tcp(sieve->skimmer, timestamp, f, n, &h);
    if (taken > 0) {
        sieve->skimmed++;
        sieve->skimmed_bytes += n;
    }
    return taken;
}

/* The offset of the slot called name of object's type, or -1 with TypeError set. */
static Py_ssize_t
object_slot(PyObject *object, const char *name)
{
    return slot_offset(Py_TYPE(object), name);
}

static int
sieve_init(SieveObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"skimmer", "clock", "share", "worker", "workers", NULL};
    PyObject *skimmer, *clock, *share = Py_None;
    unsigned long worker = 0, workers = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|Okk", keywords, &skimmer, &clock, &share, &worker, &workers))
        return -1;
    if (skimmer != Py_None && !PyObject_TypeCheck(skimmer, &FlowSkimmerType)) {
        PyErr_SetString(PyExc_TypeError, "Sieve: skimmer must be a FlowSkimmer or None");
        return -1;
    }
    if (skimmer != Py_None && ((FlowSkimmerObject *)skimmer)->flows == NULL) {
        PyErr_SetString(PyExc_ValueError, "Sieve: the FlowSkimmer was not initialised");
        return -1;
    }
    if (workers == 0 || worker >= workers) {
        PyErr_SetString(PyExc_ValueError, "Sieve: worker must be below workers");
        return -1;
    }
    Py_ssize_t clock_offset = object_slot(clock, "_next");
    if (clock_offset < 0)
        return -1;
    Py_ssize_t share_offset = 0;
    if (workers > 1 && (share_offset = object_slot(share, "tick")) < 0)
        return -1;
    Py_XSETREF(self->skimmer, skimmer == Py_None ? NULL : (FlowSkimmerObject *)Py_NewRef(skimmer));
    Py_XSETREF(self->clock, Py_NewRef(clock));
    Py_XSETREF(self->share, Py_NewRef(share));
    self->clock_offset = clock_offset;
    self->share_offset = share_offset;
    self->worker = worker;
    self->workers = workers;
    return 0;
}

static int
sieve_traverse(SieveObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->skimmer);
    Py_VISIT(self->clock);
    Py_VISIT(self->share);
    return 0;
}

static int
sieve_clear(SieveObject *self)
{
    Py_CLEAR(self->skimmer);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->share);
    return 0;
}

static void
sieve_dealloc(SieveObject *self)
{
    PyObject_GC_UnTrack(self);
    sieve_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef sieve_members[] = {
    {"skimmed", T_PYSSIZET, offsetof(SieveObject, skimmed), READONLY, "own TCP packets taken whole (skimmed)"},
    {"skimmed_bytes", T_PYSSIZET, offsetof(SieveObject, skimmed_bytes), READONLY, "their frames' bytes"},
    {"foreign", T_PYSSIZET, offsetof(SieveObject, foreign), READONLY, "other workers' frames passed over"},
    {NULL},
};

static PyTypeObject SieveType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "helloscope.sniffer.capture._core.Sieve",
    .tp_doc = PyDoc_STR("Sieve(skimmer, clock, share=None, worker=0, workers=1): what split_pcap and split_pcapng "
                        "take before Python sees it (see the module's reading section)."),
    .tp_basicsize = sizeof(SieveObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)sieve_init,
    .tp_traverse = (traverseproc)sieve_traverse,
    .tp_clear = (inquiry)sieve_clear,
    .tp_dealloc = (destructor)sieve_dealloc,
    .tp_members = sieve_members,
};

#define SHB 0x0A0D0D0Au
#define IDB 1u
#define PB 2u
#define SPB 3u
#define EPB 6u
#define DSB 0x0Au
#define MAX_RECORD (16u << 20)

typedef struct {
    PyObject *linktype; /* borrowed: the iterator's private tuple of interfaces keeps it alive */
    long link;          /* the link type as decode_raw takes it, when link_ok */
    int link_ok;
    uint32_t snaplen;
    double units;
    double offset;
    int usable;
} Interface;

typedef struct {
    PyObject_HEAD
    Py_buffer view; /* the reader's buffer, held while its frames are read */
    int pcapng, little;
    Py_ssize_t pos, count;
    double timestamp; /* the last frame's; pcapng: what a Simple Packet Block inherits */
    /* classic pcap */
    double units;
    Py_ssize_t limit;
    PyObject *linktype;
    long link;
    int link_ok;
    /* pcapng */
    PyObject *described;
    Interface *interfaces;
    Py_ssize_t ninterfaces;
    SieveObject *sieve;
} FramesObject;

static PyTypeObject FramesType;

static FramesObject *
new_frames(PyObject *sieve)
{
    if (sieve != Py_None && !PyObject_TypeCheck(sieve, &SieveType)) {
        PyErr_SetString(PyExc_TypeError, "split: sieve must be a Sieve or None");
        return NULL;
    }
    if (sieve != Py_None && ((SieveObject *)sieve)->clock == NULL) {
        PyErr_SetString(PyExc_ValueError, "split: the Sieve was not initialised");
        return NULL;
    }
    FramesObject *self = PyObject_GC_New(FramesObject, &FramesType);
    if (self == NULL)
        return NULL;
    memset((char *)self + sizeof(PyObject), 0, sizeof(FramesObject) - sizeof(PyObject));
    self->sieve = sieve == Py_None ? NULL : (SieveObject *)Py_NewRef(sieve);
    PyObject_GC_Track(self);
    return self;
}

/* The next classic pcap record wholly inside the buffer: 1 with its frame, 0 at anything else. */
static int
next_pcap(FramesObject *self, const unsigned char **data, Py_ssize_t *length, PyObject **linktype)
{
    const unsigned char *buf = self->view.buf;
    const Py_ssize_t end = self->view.len, pos = self->pos;
    if (end - pos < 16)
        return 0;
    const unsigned char *header = buf + pos;
    const int little = self->little;
    uint32_t sec = rd32(header, little), frac = rd32(header + 4, little), caplen = rd32(header + 8, little);
    if ((uint64_t)caplen > (uint64_t)self->limit || (uint64_t)caplen > (uint64_t)(end - pos - 16))
        return 0;
    /* sec + frac / units in Python: int true division of values below 2**53 is one correctly rounded
       double division, and the int + float addition converts sec exactly. */
    self->timestamp = (double)sec + (double)frac / self->units;
    *data = header + 16;
    *length = (Py_ssize_t)caplen;
    *linktype = self->linktype;
    self->pos = pos + 16 + (Py_ssize_t)caplen;
    return 1;
}

/* The next pcapng packet block (EPB, PB, SPB) wholly inside the buffer, passing over the blocks the
   reader ignores: 1 with its frame, 0 at anything the reader must see itself (a section header, an
   interface or secrets block, a packet of an undeclared interface, an incomplete block, any
   inconsistent length). */
static int
next_pcapng(FramesObject *self, const unsigned char **data, Py_ssize_t *length, const Interface **interface)
{
    const unsigned char *buf = self->view.buf;
    const Py_ssize_t end = self->view.len;
    const int little = self->little;
    const Py_ssize_t count = self->ninterfaces;
    const Interface *interfaces = self->interfaces;
    for (;;) {
        const Py_ssize_t pos = self->pos;
        if (end - pos < 12)
            return 0;
        const unsigned char *block = buf + pos;
        uint32_t btype = rd32(block, little), blen = rd32(block + 4, little);
        if (btype == SHB || btype == IDB || btype == DSB)
            return 0;
        if (blen < 12 || blen & 3 || blen > MAX_RECORD || (uint64_t)blen > (uint64_t)(end - pos))
            return 0;
        Py_ssize_t stop = pos + (Py_ssize_t)blen;
        if (rd32(buf + stop - 4, little) != blen)
            return 0;
        if (btype == EPB || btype == PB) {
            if (blen < 32)
                return 0;
            /* the obsolete Packet Block has a 16-bit interface id and a 16-bit drop count */
            uint32_t ifid = btype == EPB ? rd32(block + 8, little) : rd16(block + 8, little);
            uint32_t high = rd32(block + 12, little), low = rd32(block + 16, little);
            uint32_t caplen = rd32(block + 20, little);
            if (caplen > blen - 32 || (uint64_t)ifid >= (uint64_t)count || !interfaces[ifid].usable)
                return 0;
            const Interface *it = &interfaces[ifid];
            /* (high * 4294967296.0 + low) / units + offset, each step a double operation as in
               Python; the build disables contraction into fused multiply-add, which would round once
               where Python rounds twice. */
            double ticks = (double)high * 4294967296.0 + (double)low;
            self->timestamp = ticks / it->units + it->offset;
            *data = block + 28;
            *length = (Py_ssize_t)caplen;
            *interface = it;
            self->pos = stop;
            return 1;
        }
        if (btype == SPB) {
            if (count == 0 || blen < 16 || !interfaces[0].usable)
                return 0;
            uint32_t caplen = rd32(block + 8, little);
            if (caplen > blen - 16)
                caplen = blen - 16;
            if (interfaces[0].snaplen && caplen > interfaces[0].snaplen)
                caplen = interfaces[0].snaplen;
            *data = block + 12;
            *length = (Py_ssize_t)caplen;
            *interface = &interfaces[0];
            self->pos = stop;
            return 1;
        }
        self->pos = stop;
    }
}

static PyObject *
frames_next(FramesObject *self)
{
    for (;;) {
        const unsigned char *data;
        Py_ssize_t length;
        PyObject *linktype;
        long link;
        int link_ok;
        if (self->pcapng) {
            const Interface *it;
            if (!next_pcapng(self, &data, &length, &it))
                return NULL;
            linktype = it->linktype;
            link = it->link;
            link_ok = it->link_ok;
        }
        else {
            if (!next_pcap(self, &data, &length, &linktype))
                return NULL;
            link = self->link;
            link_ok = self->link_ok;
        }
        self->count++;
        if (self->sieve != NULL) {
            int taken = sieve_take(self->sieve, self->timestamp, link_ok, link, data, length);
            if (taken < 0)
                return NULL;
            if (taken)
                continue;
        }
        PyObject *ts = PyFloat_FromDouble(self->timestamp);
        PyObject *frame = PyBytes_FromStringAndSize((const char *)data, length);
        PyObject *item = ts != NULL && frame != NULL ? PyTuple_New(3) : NULL;
        if (item == NULL) {
            Py_XDECREF(ts);
            Py_XDECREF(frame);
            return NULL;
        }
        PyTuple_SET_ITEM(item, 0, ts);
        PyTuple_SET_ITEM(item, 1, Py_NewRef(linktype));
        PyTuple_SET_ITEM(item, 2, frame);
        return item;
    }
}

static int
frames_traverse(FramesObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->sieve);
    Py_VISIT(self->described);
    Py_VISIT(self->linktype);
    return 0;
}

static int
frames_clear(FramesObject *self)
{
    Py_CLEAR(self->sieve);
    Py_CLEAR(self->described);
    Py_CLEAR(self->linktype);
    return 0;
}

static void
frames_dealloc(FramesObject *self)
{
    PyObject_GC_UnTrack(self);
    frames_clear(self);
    PyMem_Free(self->interfaces);
    PyBuffer_Release(&self->view); /* does nothing when no buffer was taken */
    PyObject_GC_Del(self);
}

static PyMemberDef frames_members[] = {
    {"pos", T_PYSSIZET, offsetof(FramesObject, pos), READONLY, "where the next record starts"},
    {"count", T_PYSSIZET, offsetof(FramesObject, count), READONLY, "records read: yielded or taken by the sieve"},
    {"timestamp", T_DOUBLE, offsetof(FramesObject, timestamp), READONLY,
     "the last frame's timestamp (the one given when none was read)"},
    {NULL},
};

static PyTypeObject FramesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "helloscope.sniffer.capture._core.Frames",
    .tp_doc = PyDoc_STR("The frames of a capture buffer, as split_pcap or split_pcapng reads them."),
    .tp_basicsize = sizeof(FramesObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)frames_traverse,
    .tp_clear = (inquiry)frames_clear,
    .tp_dealloc = (destructor)frames_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)frames_next,
    .tp_members = frames_members,
};

PyDoc_STRVAR(split_pcap_doc,
"split_pcap(buf, pos, little, units, linktype, limit, sieve=None) -> Frames\n\n"
"An iterator of (timestamp, linktype, frame) for the classic pcap records wholly inside buf from pos on,\n"
"as CaptureReader yields them; it stops before an incomplete record or one longer than limit (the reader\n"
"reports those). Its pos, count and timestamp say how far it read. Frames the sieve takes are read but\n"
"not yielded.");

static PyObject *
split_pcap(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, limit;
    int little;
    long long units;
    PyObject *linktype, *sieve = Py_None;
    if (!PyArg_ParseTuple(args, "y*npLO!n|O:split_pcap", &view, &pos, &little, &units, &PyLong_Type, &linktype,
                          &limit, &sieve))
        return NULL;
    if (pos < 0 || pos > view.len || units <= 0) {
        PyErr_SetString(PyExc_ValueError, "split_pcap: position or timestamp units out of range");
        PyBuffer_Release(&view);
        return NULL;
    }
    FramesObject *self = new_frames(sieve);
    if (self == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    self->view = view;
    self->little = little;
    self->pos = pos;
    self->units = (double)units;
    self->limit = limit;
    self->linktype = Py_NewRef(linktype);
    self->link_ok = link_number(linktype, &self->link);
    return (PyObject *)self;
}

PyDoc_STRVAR(split_pcapng_doc,
"split_pcapng(buf, pos, little, interfaces, timestamp, sieve=None) -> Frames\n\n"
"An iterator of (timestamp, linktype, frame) for the pcapng packet blocks (EPB, PB, SPB) wholly inside\n"
"buf from pos on, as CaptureReader yields them; blocks the reader ignores are passed over. It stops at\n"
"anything the reader must see itself: a section header, an interface or secrets block, a packet of an\n"
"undeclared interface, an incomplete block or any inconsistent length. interfaces are the reader's\n"
"(linktype, snaplen, units, offset) tuples; timestamp is the last packet's, which a Simple Packet Block\n"
"inherits. Its pos, count and timestamp say how far it read. Frames the sieve takes are read but not\n"
"yielded.");

static PyObject *
split_pcapng(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos;
    int little;
    PyObject *interface_list, *sieve = Py_None;
    double timestamp;
    if (!PyArg_ParseTuple(args, "y*npOd|O:split_pcapng", &view, &pos, &little, &interface_list, &timestamp, &sieve))
        return NULL;
    if (pos < 0 || pos > view.len) {
        PyErr_SetString(PyExc_ValueError, "split_pcapng: position out of range");
        PyBuffer_Release(&view);
        return NULL;
    }
    FramesObject *self = new_frames(sieve);
    if (self == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    self->view = view;
    self->pcapng = 1;
    self->little = little;
    self->pos = pos;
    self->timestamp = timestamp;
    /* A private tuple: the reader's list cannot change under us while frames are read. */
    PyObject *described = self->described = PySequence_Tuple(interface_list);
    if (described == NULL)
        goto fail;
    Py_ssize_t count = self->ninterfaces = PyTuple_GET_SIZE(described);
    Interface *interfaces = self->interfaces = PyMem_New(Interface, count ? count : 1);
    if (interfaces == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *entry = PyTuple_GET_ITEM(described, i);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) < 4 || !PyLong_Check(PyTuple_GET_ITEM(entry, 0))) {
            PyErr_SetString(PyExc_TypeError, "split_pcapng: interfaces must be (linktype, snaplen, units, offset)");
            goto fail;
        }
        Interface *it = &interfaces[i];
        it->linktype = PyTuple_GET_ITEM(entry, 0);
        it->link_ok = link_number(it->linktype, &it->link);
        unsigned long snaplen = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(entry, 1));
        it->units = PyFloat_AsDouble(PyTuple_GET_ITEM(entry, 2));
        it->offset = PyFloat_AsDouble(PyTuple_GET_ITEM(entry, 3));
        if (PyErr_Occurred())
            goto fail;
        if (snaplen > UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "split_pcapng: snaplen out of range");
            goto fail;
        }
        it->snaplen = (uint32_t)snaplen;
        /* Python would raise ZeroDivisionError on such an interface's packets: leave them to it. */
        it->usable = it->units != 0.0;
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

/* ----- module ---------------------------------------------------------------------------------- */

static PyObject *
import_attr(const char *module, const char *name)
{
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL)
        return NULL;
    PyObject *attr = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return attr;
}

/* The C side writes these objects' memory directly: refuse to load (the pure path then runs) unless
   their layout is exactly the one assumed. */
static int
check_fields(PyObject *type, const char *attr, const char *const *names, Py_ssize_t count)
{
    PyObject *fields = PyObject_GetAttrString(type, attr);
    if (fields == NULL)
        return -1;
    int ok = PyTuple_Check(fields) && PyTuple_GET_SIZE(fields) == count;
    for (Py_ssize_t i = 0; ok && i < count; i++) {
        PyObject *name = PyTuple_GET_ITEM(fields, i);
        ok = PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, names[i]) == 0;
    }
    Py_DECREF(fields);
    if (!ok)
        PyErr_Format(PyExc_ImportError, "_core: %s.%s is not the layout this build expects",
                     ((PyTypeObject *)type)->tp_name, attr);
    return ok ? 0 : -1;
}

static int
bind_segment(void)
{
    static const char *const fields[SEGMENT_FIELDS] = {"proto", "src", "dst", "sport", "dport", "seq",
                                                       "ack", "flags", "payload", "snapped", "packet", "transport"};
    PyObject *segment = import_attr("helloscope.sniffer.capture.decode", "Segment");
    if (segment == NULL)
        return -1;
    PyTypeObject *type = (PyTypeObject *)segment;
    if (!PyType_Check(segment) || !PyType_IsSubtype(type, &PyTuple_Type) ||
        type->tp_basicsize != PyTuple_Type.tp_basicsize || type->tp_itemsize != PyTuple_Type.tp_itemsize ||
        type->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_ImportError, "_core: Segment is not a plain tuple subclass");
        Py_DECREF(segment);
        return -1;
    }
    if (check_fields(segment, "_fields", fields, SEGMENT_FIELDS) < 0) {
        Py_DECREF(segment);
        return -1;
    }
    Segment = type;
    return 0;
}

static int
bind_record(void)
{
    static const char *const fields[] = {"content_type", "version", "payload", "offset"};
    PyObject *record = import_attr("helloscope.parsers.records", "Record");
    if (record == NULL)
        return -1;
    if (!PyType_Check(record) || check_fields(record, "__match_args__", fields, 4) < 0)
        goto fail;
    for (int i = 0; i < 4; i++) {
        PyObject *descr = PyObject_GetAttrString(record, fields[i]);
        if (descr == NULL)
            goto fail;
        int slot = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                   ((PyDescrObject *)descr)->d_type == (PyTypeObject *)record &&
                   ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX;
        if (slot)
            record_offset[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!slot) {
            PyErr_SetString(PyExc_ImportError, "_core: Record is not a slotted dataclass");
            goto fail;
        }
    }
    Record = (PyTypeObject *)record;
    return 0;
fail:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ImportError, "_core: Record is not a type");
    Py_DECREF(record);
    return -1;
}

static PyMethodDef core_methods[] = {
    {"split_pcap", split_pcap, METH_VARARGS, split_pcap_doc},
    {"split_pcapng", split_pcapng, METH_VARARGS, split_pcapng_doc},
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL, decode_doc},
    {"flow_owner", (PyCFunction)(void (*)(void))flow_owner, METH_FASTCALL, flow_owner_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "helloscope.sniffer.capture._core",
    .m_doc = "The per-packet path in C; helloscope.sniffer.capture.fast decides whether it runs.",
    .m_size = -1,
    .m_methods = core_methods,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    if (Segment == NULL && bind_segment() < 0)
        return NULL;
    if (Record == NULL && bind_record() < 0)
        return NULL;
    if (ParseError == NULL && (ParseError = import_attr("helloscope.parsers.errors", "ParseError")) == NULL)
        return NULL;
    if (max_ciphertext == 0) {
        PyObject *limit = import_attr("helloscope.parsers.records", "MAX_CIPHERTEXT");
        if (limit == NULL)
            return NULL;
        max_ciphertext = PyLong_AsSsize_t(limit);
        Py_DECREF(limit);
        if (max_ciphertext <= 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ImportError, "_core: MAX_CIPHERTEXT out of range");
            max_ciphertext = 0;
            return NULL;
        }
    }
    if (NotMine == NULL && (NotMine = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type)) == NULL)
        return NULL;
    if (Skimmed == NULL && (Skimmed = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type)) == NULL)
        return NULL;
    if (memory_name == NULL && (memory_name = PyUnicode_InternFromString("_memory")) == NULL)
        return NULL;
    if (max_memory_name == NULL && (max_memory_name = PyUnicode_InternFromString("_max_memory")) == NULL)
        return NULL;
    if (PyType_Ready(&RecordReaderType) < 0 || PyType_Ready(&FlowSkimmerType) < 0 || PyType_Ready(&SieveType) < 0 ||
        PyType_Ready(&FramesType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&core_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "NOT_MINE", NotMine) < 0 || PyModule_AddObjectRef(module, "SKIMMED", Skimmed) < 0 ||
        PyModule_AddObjectRef(module, "RecordReader", (PyObject *)&RecordReaderType) < 0 ||
        PyModule_AddObjectRef(module, "FlowSkimmer", (PyObject *)&FlowSkimmerType) < 0 ||
        PyModule_AddObjectRef(module, "Sieve", (PyObject *)&SieveType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
