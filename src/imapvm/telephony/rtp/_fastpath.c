/* The per-packet part of an RTP call's receive path, in C: one recvmmsg(2) reads what arrived
 * on a call's socket, and the usual packets (plain RTP of the call's audio codec from the
 * latched host and source, the next in sequence, no gap) are accounted and joined here.
 * Everything else is handed back, in arrival order, for the Python code to handle.
 *
 * Why: at 500 calls a Python loop per received packet (recvmsg, the ancillary timestamp,
 * header checks, the reorder buffer and the RTCP arithmetic) was about a third of a core.
 * What stays in Python is every decision that is not the common case: latching, SRTP, DTMF,
 * another SSRC or codec, reordering, gaps, RTCP reports.
 *
 * The arithmetic is the same as session.py's and the Python versions it replaces
 * (reorder.ReorderBuffer.push when a packet is the next one; rtcp.RtcpState.on_rtp_run);
 * tests/telephony/test_rtp_fastpath.py checks the two agree on random streams.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_BATCH 64
#define BUF_SIZE 2048
#define TS_HALF 2147483648.0 /* 2**31: the RTP timestamp wraps at 2**32 */

static unsigned char buffers[MAX_BATCH][BUF_SIZE];
static char controls[MAX_BATCH][CMSG_SPACE(sizeof(struct timespec))];
static struct sockaddr_storage sources[MAX_BATCH];
static struct iovec iovecs[MAX_BATCH];
static struct mmsghdr messages[MAX_BATCH];

/* The source address as Python's socket module gives it: (host, port) or, for IPv6,
 * (host, port, flowinfo, scope_id). */
static PyObject *
address(const struct sockaddr_storage *sa, socklen_t len)
{
    char host[NI_MAXHOST];
    if (sa->ss_family != AF_INET && sa->ss_family != AF_INET6)
        return Py_BuildValue("(si)", "", 0);
    if (getnameinfo((const struct sockaddr *)sa, len, host, sizeof host, NULL, 0,
                    NI_NUMERICHOST) != 0)
        return PyErr_Format(PyExc_OSError, "unreadable source address");
    if (sa->ss_family == AF_INET)
        return Py_BuildValue("(si)", host, ntohs(((const struct sockaddr_in *)sa)->sin_port));
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    return Py_BuildValue("(siII)", host, ntohs(in6->sin6_port),
                         (unsigned int)ntohl(in6->sin6_flowinfo),
                         (unsigned int)in6->sin6_scope_id);
}

static int
same_host(const struct sockaddr_storage *sa, const char *host, Py_ssize_t host_len)
{
    if (sa->ss_family == AF_INET && host_len == 4)
        return memcmp(&((const struct sockaddr_in *)sa)->sin_addr, host, 4) == 0;
    if (sa->ss_family == AF_INET6 && host_len == 16)
        return memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr, host, 16) == 0;
    return 0;
}

/* The kernel's receive time (SO_TIMESTAMPNS, wall clock) moved onto the loop's clock, never
 * later than the loop's now; the loop's now when the kernel gave none. */
static double
arrival_of(struct msghdr *msg, double to_loop, double loop_now)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            double arrival = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + to_loop;
            return arrival > loop_now ? loop_now : arrival;
        }
    }
    return loop_now;
}

PyDoc_STRVAR(read_run_doc,
"read_run(fd, limit, host, audio_pt, ssrc, next_seq, next_ts, rtcp, to_loop, loop_now)\n"
"--\n\n"
"Read up to ``limit`` datagrams from the non-blocking socket ``fd`` with one recvmmsg.\n"
"The leading run of usual packets (``host``: the latched source's packed address, b'' for\n"
"none; ``audio_pt``: the audio payload type, -1 for none; ``ssrc``: the audio source;\n"
"``next_seq``/``next_ts``: what the reorder buffer expects, ``next_seq`` -1 when it holds\n"
"packets or knows nothing yet) is accounted here: its payloads joined, the expected sequence\n"
"and timestamp advanced and ``rtcp`` = (max_seq, cycles, jitter, transit or None, clock) or\n"
"None advanced as RTCP's sequence and jitter accounting does. Returns (payload, count,\n"
"next_seq, next_ts, rtcp, rest, read, error): ``rest`` the datagrams after the run as\n"
"(data, arrival, address) in arrival order, ``read`` the datagrams read, ``error`` the errno\n"
"of a failed read (0 for none; an empty socket is not an error).");

static PyObject *
read_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "read_run takes 10 arguments");
        return NULL;
    }
    int fd = (int)PyLong_AsLong(args[0]);
    long limit = PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "host must be bytes");
        return NULL;
    }
    const char *host = PyBytes_AS_STRING(args[2]);
    Py_ssize_t host_len = PyBytes_GET_SIZE(args[2]);
    long audio_pt = PyLong_AsLong(args[3]);
    long long ssrc = PyLong_AsLongLong(args[4]);
    long next_seq = PyLong_AsLong(args[5]);
    unsigned long long next_ts = PyLong_AsUnsignedLongLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *rtcp = args[7];
    long max_seq = 0, cycles = 0;
    double jitter = 0.0, transit = 0.0, clock = 8000.0;
    int have_transit = 0;
    if (rtcp != Py_None) {
        PyObject *transit_obj = NULL;
        if (!PyArg_ParseTuple(rtcp, "lldOd", &max_seq, &cycles, &jitter, &transit_obj, &clock))
            return NULL;
        if (transit_obj != Py_None) {
            transit = PyFloat_AsDouble(transit_obj);
            if (PyErr_Occurred())
                return NULL;
            have_transit = 1;
        }
    }
    double to_loop = PyFloat_AsDouble(args[8]);
    double loop_now = PyFloat_AsDouble(args[9]);
    if (PyErr_Occurred())
        return NULL;
    if (limit < 1)
        limit = 1;
    if (limit > MAX_BATCH)
        limit = MAX_BATCH;

    for (long i = 0; i < limit; i++) {
        iovecs[i].iov_base = buffers[i];
        iovecs[i].iov_len = BUF_SIZE;
        memset(&messages[i].msg_hdr, 0, sizeof(struct msghdr));
        messages[i].msg_hdr.msg_name = &sources[i];
        messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        messages[i].msg_hdr.msg_iov = &iovecs[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_control = controls[i];
        messages[i].msg_hdr.msg_controllen = sizeof controls[i];
        messages[i].msg_len = 0;
    }
    int error = 0;
    int got = recvmmsg(fd, messages, (unsigned int)limit, MSG_DONTWAIT, NULL);
    if (got < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            error = errno;
        got = 0;
    }

    /* the run: how many lead packets are usual, and their payload bytes */
    int fast = 0;
    Py_ssize_t joined = 0;
    int fast_ok = host_len > 0 && audio_pt >= 0 && ssrc >= 0 && next_seq >= 0;
    for (; fast_ok && fast < got; fast++) {
        const unsigned char *d = buffers[fast];
        unsigned int n = messages[fast].msg_len;
        if (n <= 12 || n > BUF_SIZE || d[0] != 0x80 || (d[1] & 0x7F) != audio_pt ||
            !same_host(&sources[fast], host, host_len))
            break;
        long seq = (d[2] << 8) | d[3];
        unsigned long long ts = ((unsigned long long)d[4] << 24) | (d[5] << 16) |
                                (d[6] << 8) | d[7];
        long long source = ((long long)d[8] << 24) | (d[9] << 16) | (d[10] << 8) | d[11];
        if (source != ssrc || seq != next_seq || ts != next_ts)
            break; /* another source, out of order, lost before it, or a gap: Python's */
        next_seq = (seq + 1) & 0xFFFF;
        next_ts = (ts + (n - 12)) & 0xFFFFFFFFULL;
        joined += n - 12;
        if (rtcp != Py_None) {
            long delta = ((seq - max_seq) % 65536 + 65536) % 65536;
            if (delta > 0 && delta < 3000) {
                if (seq < max_seq)
                    cycles += 65536;
                max_seq = seq;
            }
            double arrival = arrival_of(&messages[fast].msg_hdr, to_loop, loop_now);
            double now_transit = arrival * clock - (double)ts;
            if (have_transit) {
                double r = fmod(now_transit - transit + TS_HALF, 2 * TS_HALF);
                if (r != 0.0 && r < 0)
                    r += 2 * TS_HALF;
                double dd = fabs(r - TS_HALF);
                jitter += (dd - jitter) / 16;
            }
            transit = now_transit;
            have_transit = 1;
        }
    }

    PyObject *payload = PyBytes_FromStringAndSize(NULL, joined);
    if (payload == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(payload);
    for (int i = 0; i < fast; i++) {
        unsigned int n = messages[i].msg_len - 12;
        memcpy(out, buffers[i] + 12, n);
        out += n;
    }
    PyObject *rest = PyList_New(0);
    if (rest == NULL) {
        Py_DECREF(payload);
        return NULL;
    }
    for (int i = fast; i < got; i++) {
        unsigned int n = messages[i].msg_len;
        if (n > BUF_SIZE)
            n = BUF_SIZE; /* truncated, as recvmsg(2048) truncates */
        PyObject *addr = address(&sources[i], messages[i].msg_hdr.msg_namelen);
        if (addr == NULL)
            goto fail;
        PyObject *item = Py_BuildValue(
            "(y#dN)", (const char *)buffers[i], (Py_ssize_t)n,
            arrival_of(&messages[i].msg_hdr, to_loop, loop_now), addr);
        if (item == NULL)
            goto fail;
        int failed = PyList_Append(rest, item);
        Py_DECREF(item);
        if (failed)
            goto fail;
    }
    PyObject *rtcp_out;
    if (rtcp == Py_None) {
        rtcp_out = Py_NewRef(Py_None);
    } else if (have_transit) {
        rtcp_out = Py_BuildValue("(lldd)", max_seq, cycles, jitter, transit);
    } else {
        rtcp_out = Py_BuildValue("(lldO)", max_seq, cycles, jitter, Py_None);
    }
    if (rtcp_out == NULL)
        goto fail;
    return Py_BuildValue("(NilKNNii)", payload, fast, (long)next_seq, next_ts, rtcp_out, rest,
                         got, error);
fail:
    Py_DECREF(payload);
    Py_DECREF(rest);
    return NULL;
}

PyDoc_STRVAR(send_rtp_doc,
"send_rtp(fd, host, port, second_byte, seq, ts, ssrc, payload)\n"
"--\n\n"
"Send one plain RTP packet (version 2, no CSRC, extension or padding; ``second_byte`` the\n"
"marker and payload type) to ``host`` (packed, 4 or 16 bytes) and ``port`` from the\n"
"non-blocking socket ``fd``. Returns 0, or the errno of a failed send (EAGAIN: the socket's\n"
"buffer is full).");

static PyObject *
send_rtp(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "send_rtp takes 8 arguments");
        return NULL;
    }
    int fd = (int)PyLong_AsLong(args[0]);
    long port = PyLong_AsLong(args[2]);
    long second = PyLong_AsLong(args[3]);
    long seq = PyLong_AsLong(args[4]);
    unsigned long ts = PyLong_AsUnsignedLong(args[5]);
    unsigned long ssrc = PyLong_AsUnsignedLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyBytes_Check(args[1]) || !PyBytes_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "host and payload must be bytes");
        return NULL;
    }
    Py_ssize_t host_len = PyBytes_GET_SIZE(args[1]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[7]);
    if (n > BUF_SIZE - 12 || port < 0 || port > 65535 || second < 0 || second > 255 ||
        seq < 0 || seq > 65535 || ts > 0xFFFFFFFFUL || ssrc > 0xFFFFFFFFUL) {
        /* as struct.pack would: a field that does not fit is a bug, never a wrong packet */
        PyErr_SetString(PyExc_ValueError, "RTP header field or port out of range, or payload "
                        "too large");
        return NULL;
    }
    struct sockaddr_storage to;
    socklen_t to_len;
    memset(&to, 0, sizeof to);
    if (host_len == 4) {
        struct sockaddr_in *in = (struct sockaddr_in *)&to;
        in->sin_family = AF_INET;
        in->sin_port = htons((unsigned short)port);
        memcpy(&in->sin_addr, PyBytes_AS_STRING(args[1]), 4);
        to_len = sizeof *in;
    } else if (host_len == 16) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&to;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((unsigned short)port);
        memcpy(&in6->sin6_addr, PyBytes_AS_STRING(args[1]), 16);
        to_len = sizeof *in6;
    } else {
        PyErr_SetString(PyExc_ValueError, "host must be 4 or 16 bytes");
        return NULL;
    }
    unsigned char packet[BUF_SIZE];
    packet[0] = 0x80;
    packet[1] = (unsigned char)second;
    packet[2] = (unsigned char)(seq >> 8);
    packet[3] = (unsigned char)seq;
    packet[4] = (unsigned char)(ts >> 24);
    packet[5] = (unsigned char)(ts >> 16);
    packet[6] = (unsigned char)(ts >> 8);
    packet[7] = (unsigned char)ts;
    packet[8] = (unsigned char)(ssrc >> 24);
    packet[9] = (unsigned char)(ssrc >> 16);
    packet[10] = (unsigned char)(ssrc >> 8);
    packet[11] = (unsigned char)ssrc;
    memcpy(packet + 12, PyBytes_AS_STRING(args[7]), (size_t)n);
    int error = 0;
    if (sendto(fd, packet, (size_t)n + 12, MSG_DONTWAIT, (struct sockaddr *)&to, to_len) < 0)
        error = errno;
    return PyLong_FromLong(error);
}

static PyMethodDef methods[] = {
    {"read_run", (PyCFunction)(void (*)(void))read_run, METH_FASTCALL, read_run_doc},
    {"send_rtp", (PyCFunction)(void (*)(void))send_rtp, METH_FASTCALL, send_rtp_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath",
    "The usual RTP packet's receive path in C (see the comment at the top of _fastpath.c).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    return PyModule_Create(&module);
}
