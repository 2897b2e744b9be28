/*
 * windivert_emu.c: a stand-in WinDivert.dll for end-to-end tests under Wine.
 *
 * It is WinDivert 2.2.2's own user-mode library (windivert-sys's vendored dll/windivert.c,
 * included below: filter compiler, evaluator, checksum and parse helpers unchanged) with the
 * device functions replaced. Instead of talking to WinDivert64.sys, a handle talks over TCP to
 * a relay on the Linux side (tests/windivert_emu/relay.rs), which hands over the packets that
 * NFQUEUE holds at three netfilter hooks and injects what the handles send.
 *
 *   relay -> DLL   PACKET  (id, layer, direction, interface index, bytes)
 *   DLL -> relay   VERDICT (id: passed, diverted or dropped)
 *   DLL -> relay   INJECT  (layer, direction, interface index, bytes)
 *   DLL -> relay   HELLO / OPEN (filter, layer, priority, flags) / CLOSE, for the relay's log
 *
 * Decisions follow the driver (vendor/sys/windivert.c, windivert_network_classify): the handles
 * of the packet's layer are offered the packet from the highest internal priority down (user
 * priority, then the most recently opened first, as the driver's (priority << 16 | counter)
 * weights do); WinDivertHelperEvalFilter decides; the first match gets it (stolen: the relay
 * drops the original), a SNIFF handle gets a copy and the packet goes on, a DROP handle drops
 * it. A packet injected by a handle is offered again, at the same layer and direction, only to
 * handles of lower internal priority (the driver: "if (packet_priority <= priority) skip").
 *
 * A handle is a real kernel object: the read end of a message-mode named pipe, opened
 * overlapped. WinDivertRecvEx issues a real ReadFile on it with the caller's OVERLAPPED into
 * the caller's packet buffer, and a batch is completed by writing the packets as one message
 * (the addresses are written to the caller's array first). So ResetEvent at the start,
 * GetOverlappedResult(Ex), CancelIoEx and waiting on the handle itself behave as Windows' own
 * I/O manager makes them behave for the driver.
 *
 * Without NETNAT_WINDIVERT_EMU in the environment every function is WinDivert's own (and
 * WinDivertOpen fails as it does without the driver). See README.md here for the differences
 * from the driver.
 */

#define WinDivertOpen     WinDivertDriverOpen
#define WinDivertRecv     WinDivertDriverRecv
#define WinDivertRecvEx   WinDivertDriverRecvEx
#define WinDivertSend     WinDivertDriverSend
#define WinDivertSendEx   WinDivertDriverSendEx
#define WinDivertShutdown WinDivertDriverShutdown
#define WinDivertClose    WinDivertDriverClose
#define WinDivertSetParam WinDivertDriverSetParam
#define WinDivertGetParam WinDivertDriverGetParam
#include "windivert.c"
#undef WinDivertOpen
#undef WinDivertRecv
#undef WinDivertRecvEx
#undef WinDivertSend
#undef WinDivertSendEx
#undef WinDivertShutdown
#undef WinDivertClose
#undef WinDivertSetParam
#undef WinDivertGetParam

#include <ws2tcpip.h>
#include <stdarg.h>

#define EMU_ENV            "NETNAT_WINDIVERT_EMU"
#define EMU_ENV_DEBUG      "NETNAT_WINDIVERT_EMU_DEBUG"
#define EMU_PROTOCOL       1
#define EMU_PIPE_BUFFER    (64u << 20)
#define EMU_MAX_FRAME      (WINDIVERT_MTU_MAX + 64)
#define EMU_MAX_HANDLES    64

enum
{
    MSG_PACKET = 1,
    MSG_HELLO = 0x10,
    MSG_VERDICT = 0x11,
    MSG_INJECT = 0x12,
    MSG_OPEN = 0x13,
    MSG_CLOSE = 0x14,
};

enum
{
    VERDICT_PASS = 0,
    VERDICT_DIVERT = 1,
    VERDICT_DROP = 2,
};

typedef struct emu_packet
{
    struct emu_packet *next;
    WINDIVERT_ADDRESS addr;
    UINT len;
    UINT8 data[];
} emu_packet;

typedef struct emu_handle
{
    struct emu_handle *next;
    HANDLE rd;                      /* what WinDivertOpen returns */
    HANDLE wr;
    UINT64 id;
    WINDIVERT_LAYER layer;
    INT16 priority;
    UINT32 order;                   /* the driver's internal priority */
    UINT64 flags;
    char *filter;
    emu_packet *head, *tail;
    UINT64 queued, queued_bytes;
    UINT64 queue_length, queue_time_ms, queue_size;
    BOOL shutdown_recv, shutdown_send;
    /* the receive in progress */
    BOOL pending;
    WINDIVERT_ADDRESS *p_addr;
    UINT *p_addr_len;
    UINT addr_cap;
    UINT buf_len;
    OVERLAPPED *ov;
    /* a batch written to the pipe after its receive was cancelled: the next receive reads it */
    UINT stranded;
    WINDIVERT_ADDRESS stranded_addrs[WINDIVERT_BATCH_MAX];
} emu_handle;

static CRITICAL_SECTION emu_lock;        /* the handles and their queues */
static CRITICAL_SECTION emu_send_lock;   /* writes to the relay socket */
static SOCKET emu_sock = INVALID_SOCKET;
static emu_handle *emu_handles = NULL;
static UINT32 emu_open_counter = 0;
static UINT64 emu_next_id = 0;
static BOOL emu_debug = FALSE;
static LARGE_INTEGER emu_qpf;

static void emu_log(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;
    DWORD written;
    HANDLE err = GetStdHandle(STD_ERROR_HANDLE);
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
    {
        return;
    }
    if (n > (int)sizeof(buf) - 2)
    {
        n = (int)sizeof(buf) - 2;
    }
    buf[n++] = '\n';
    if (err != NULL && err != INVALID_HANDLE_VALUE)
    {
        WriteFile(err, buf, (DWORD)n, &written, NULL);
    }
}

static BOOL emu_enabled(void)
{
    char value[8];
    return GetEnvironmentVariableA(EMU_ENV, value, sizeof(value)) != 0 ||
        GetLastError() != ERROR_ENVVAR_NOT_FOUND;
}

/* ---- frames ------------------------------------------------------------------------------ */

static void put16(UINT8 *p, UINT16 v) { p[0] = (UINT8)v; p[1] = (UINT8)(v >> 8); }
static void put32(UINT8 *p, UINT32 v) { put16(p, (UINT16)v); put16(p + 2, (UINT16)(v >> 16)); }
static void put64(UINT8 *p, UINT64 v) { put32(p, (UINT32)v); put32(p + 4, (UINT32)(v >> 32)); }
static UINT32 get32(const UINT8 *p)
{
    return (UINT32)p[0] | ((UINT32)p[1] << 8) | ((UINT32)p[2] << 16) | ((UINT32)p[3] << 24);
}

static BOOL emu_send_all(SOCKET s, const UINT8 *p, int len)
{
    while (len > 0)
    {
        int n = send(s, (const char *)p, len, 0);
        if (n <= 0)
        {
            return FALSE;
        }
        p += n;
        len -= n;
    }
    return TRUE;
}

/* Sends one frame: u32 length (of type + head + body), u8 type, head, body. */
static BOOL emu_send_frame(UINT8 type, const UINT8 *head, UINT head_len, const UINT8 *body,
    UINT body_len)
{
    UINT8 prefix[5];
    BOOL ok;
    put32(prefix, 1 + head_len + body_len);
    prefix[4] = type;
    EnterCriticalSection(&emu_send_lock);
    ok = emu_sock != INVALID_SOCKET &&
        emu_send_all(emu_sock, prefix, 5) &&
        (head_len == 0 || emu_send_all(emu_sock, head, (int)head_len)) &&
        (body_len == 0 || emu_send_all(emu_sock, body, (int)body_len));
    if (!ok)
    {
        SetLastError(emu_sock == INVALID_SOCKET? WSAENOTCONN: (DWORD)WSAGetLastError());
    }
    LeaveCriticalSection(&emu_send_lock);
    return ok;
}

static BOOL emu_recv_all(SOCKET s, UINT8 *p, int len)
{
    while (len > 0)
    {
        int n = recv(s, (char *)p, len, 0);
        if (n <= 0)
        {
            return FALSE;
        }
        p += n;
        len -= n;
    }
    return TRUE;
}

/* ---- handles ------------------------------------------------------------------------------ */

static emu_handle *emu_find(HANDLE handle)
{
    emu_handle *h;
    for (h = emu_handles; h != NULL; h = h->next)
    {
        if (h->rd == handle)
        {
            return h;
        }
    }
    return NULL;
}

static INT64 emu_now(void)
{
    LARGE_INTEGER now;
    QueryPerformanceCounter(&now);
    return now.QuadPart;
}

/* The status of an overlapped receive, as GetOverlappedResult reads it. */
static DWORD emu_status(OVERLAPPED *ov)
{
    DWORD status = (DWORD)*(volatile ULONG_PTR *)&ov->Internal;
    MemoryBarrier();
    return status;
}

static void emu_free_queue(emu_handle *h)
{
    emu_packet *p = h->head, *next;
    while (p != NULL)
    {
        next = p->next;
        HeapFree(GetProcessHeap(), 0, p);
        p = next;
    }
    h->head = h->tail = NULL;
    h->queued = h->queued_bytes = 0;
}

/* Queues a copy of a packet for h (emu_lock held). FALSE when the queue is full (the driver
 * loses the packet then too: it was diverted). */
static BOOL emu_enqueue(emu_handle *h, const WINDIVERT_ADDRESS *addr, const UINT8 *data,
    UINT len)
{
    emu_packet *p;
    if (h->queued >= h->queue_length || h->queued_bytes + len > h->queue_size)
    {
        if (emu_debug)
        {
            emu_log("windivert-emu: handle %llu: queue full, packet lost",
                (unsigned long long)h->id);
        }
        return FALSE;
    }
    p = HeapAlloc(GetProcessHeap(), 0, sizeof(emu_packet) + len);
    if (p == NULL)
    {
        return FALSE;
    }
    p->next = NULL;
    p->addr = *addr;
    p->len = len;
    memcpy(p->data, data, len);
    if (h->tail == NULL)
    {
        h->head = p;
    }
    else
    {
        h->tail->next = p;
    }
    h->tail = p;
    h->queued++;
    h->queued_bytes += len;
    return TRUE;
}

/* Completes h's pending receive with what is queued (emu_lock held). */
static void emu_deliver(emu_handle *h)
{
    UINT count = 0, total = 0, i;
    UINT8 *msg;
    emu_packet *p, *next;
    DWORD written = 0, avail = 0;
    INT64 now, max_age;

    if (!h->pending)
    {
        return;
    }
    if (emu_status(h->ov) != STATUS_PENDING)
    {
        /* Cancelled (CancelIoEx) or closed: nothing to complete. */
        h->pending = FALSE;
        return;
    }
    /* WINDIVERT_PARAM_QUEUE_TIME: older packets are lost. */
    now = emu_now();
    max_age = (INT64)(emu_qpf.QuadPart * (INT64)h->queue_time_ms / 1000);
    while (h->head != NULL && now - h->head->addr.Timestamp > max_age)
    {
        p = h->head;
        h->head = p->next;
        if (h->head == NULL)
        {
            h->tail = NULL;
        }
        h->queued--;
        h->queued_bytes -= p->len;
        HeapFree(GetProcessHeap(), 0, p);
    }
    if (h->head == NULL)
    {
        return;
    }
    for (p = h->head; p != NULL && count < h->addr_cap && total + p->len <= h->buf_len;
            p = p->next)
    {
        count++;
        total += p->len;
    }
    if (count == 0)
    {
        /* The first packet does not fit the caller's buffer. The driver would truncate it and
         * fail with ERROR_INSUFFICIENT_BUFFER; here it is lost, loudly. */
        p = h->head;
        emu_log("windivert-emu: handle %llu: a %u-byte packet does not fit the %u-byte receive "
            "buffer; dropped", (unsigned long long)h->id, p->len, h->buf_len);
        h->head = p->next;
        if (h->head == NULL)
        {
            h->tail = NULL;
        }
        h->queued--;
        h->queued_bytes -= p->len;
        HeapFree(GetProcessHeap(), 0, p);
        return;
    }
    msg = HeapAlloc(GetProcessHeap(), 0, total);
    if (msg == NULL)
    {
        return;
    }
    total = 0;
    p = h->head;
    for (i = 0; i < count; i++)
    {
        memcpy(msg + total, p->data, p->len);
        total += p->len;
        if (h->p_addr != NULL)
        {
            h->p_addr[i] = p->addr;
        }
        h->stranded_addrs[i] = p->addr;
        next = p->next;
        h->queued--;
        h->queued_bytes -= p->len;
        HeapFree(GetProcessHeap(), 0, p);
        p = next;
    }
    h->head = p;
    if (h->head == NULL)
    {
        h->tail = NULL;
    }
    if (h->p_addr_len != NULL)
    {
        *h->p_addr_len = count * sizeof(WINDIVERT_ADDRESS);
    }
    h->pending = FALSE;
    if (!WriteFile(h->wr, msg, total, &written, NULL))
    {
        emu_log("windivert-emu: handle %llu: cannot complete a receive (error %lu)",
            (unsigned long long)h->id, GetLastError());
    }
    HeapFree(GetProcessHeap(), 0, msg);
    /* If the receive was cancelled just before the write, the batch is still in the pipe: the
     * next receive reads it, with these addresses. */
    if (PeekNamedPipe(h->rd, NULL, 0, NULL, &avail, NULL) && avail > 0)
    {
        h->stranded = count;
    }
}

/* Offers a packet to the handles of its layer, highest internal priority first (emu_lock
 * held). `below` is the injecting handle's internal priority for an injected packet, or
 * UINT32_MAX for a packet from the relay. Returns the verdict. */
static int emu_classify(const WINDIVERT_ADDRESS *addr, const UINT8 *data, UINT len,
    UINT32 below, emu_handle **got)
{
    emu_handle *order[EMU_MAX_HANDLES], *h;
    UINT n = 0, i, j;
    WINDIVERT_ADDRESS copy;

    for (h = emu_handles; h != NULL && n < EMU_MAX_HANDLES; h = h->next)
    {
        if (h->layer == (WINDIVERT_LAYER)addr->Layer && h->order < below &&
                (h->flags & WINDIVERT_FLAG_SEND_ONLY) == 0 && !h->shutdown_recv)
        {
            order[n++] = h;
        }
    }
    for (i = 1; i < n; i++)
    {
        for (j = i; j > 0 && order[j - 1]->order < order[j]->order; j--)
        {
            h = order[j];
            order[j] = order[j - 1];
            order[j - 1] = h;
        }
    }
    for (i = 0; i < n; i++)
    {
        h = order[i];
        if (!WinDivertHelperEvalFilter(h->filter, data, len, addr))
        {
            continue;
        }
        if ((h->flags & WINDIVERT_FLAG_DROP) != 0)
        {
            return VERDICT_DROP;
        }
        if ((h->flags & WINDIVERT_FLAG_SNIFF) != 0)
        {
            copy = *addr;
            copy.Sniffed = 1;
            if (emu_enqueue(h, &copy, data, len))
            {
                emu_deliver(h);
            }
            continue;
        }
        emu_enqueue(h, addr, data, len);
        *got = h;
        return VERDICT_DIVERT;
    }
    return VERDICT_PASS;
}

/* ---- the relay connection ----------------------------------------------------------------- */

static void emu_on_packet(const UINT8 *body, UINT len)
{
    WINDIVERT_ADDRESS addr;
    UINT32 id;
    UINT8 reply[5];
    emu_handle *got = NULL;
    int verdict;

    if (len < 16)
    {
        return;
    }
    id = get32(body);
    memset(&addr, 0, sizeof(addr));
    addr.Timestamp = emu_now();
    addr.Layer = body[4];
    addr.Event = WINDIVERT_EVENT_NETWORK_PACKET;
    addr.Outbound = body[5] != 0;
    addr.Loopback = body[6] != 0;
    addr.IPChecksum = (body[7] & 1) != 0;
    addr.TCPChecksum = (body[7] & 2) != 0;
    addr.UDPChecksum = (body[7] & 4) != 0;
    addr.IPv6 = (len > 16 && (body[16] >> 4) == 6);
    addr.Network.IfIdx = get32(body + 8);
    addr.Network.SubIfIdx = get32(body + 12);

    EnterCriticalSection(&emu_lock);
    verdict = emu_classify(&addr, body + 16, len - 16, UINT32_MAX, &got);
    if (got != NULL)
    {
        emu_deliver(got);
    }
    LeaveCriticalSection(&emu_lock);
    if (emu_debug)
    {
        emu_log("windivert-emu: packet %u layer %u %s if %u: %s", id, addr.Layer,
            addr.Outbound? "out": "in", addr.Network.IfIdx,
            verdict == VERDICT_PASS? "passed": verdict == VERDICT_DIVERT? "diverted": "dropped");
    }
    put32(reply, id);
    reply[4] = (UINT8)verdict;
    emu_send_frame(MSG_VERDICT, reply, 5, NULL, 0);
}

static DWORD WINAPI emu_reader(LPVOID arg)
{
    SOCKET s = (SOCKET)(ULONG_PTR)arg;
    UINT8 prefix[4];
    UINT8 *frame = HeapAlloc(GetProcessHeap(), 0, EMU_MAX_FRAME);
    UINT32 len;

    if (frame == NULL)
    {
        return 1;
    }
    for (;;)
    {
        if (!emu_recv_all(s, prefix, 4))
        {
            break;
        }
        len = get32(prefix);
        if (len == 0 || len > EMU_MAX_FRAME || !emu_recv_all(s, frame, (int)len))
        {
            break;
        }
        if (frame[0] == MSG_PACKET)
        {
            emu_on_packet(frame + 1, len - 1);
        }
    }
    emu_log("windivert-emu: the relay closed the connection; no more packets");
    EnterCriticalSection(&emu_send_lock);
    if (emu_sock == s)
    {
        emu_sock = INVALID_SOCKET;
    }
    LeaveCriticalSection(&emu_send_lock);
    closesocket(s);
    HeapFree(GetProcessHeap(), 0, frame);
    return 0;
}

/* Connects to the relay named by NETNAT_WINDIVERT_EMU ("PORT" or "HOST:PORT", on 127.0.0.1 by
 * default) unless connected. emu_lock held. Returns 0 or a Winsock error. */
static DWORD emu_connect(void)
{
    char value[128], *colon;
    const char *host = "127.0.0.1", *port;
    WSADATA wsa;
    struct addrinfo hints, *res = NULL;
    SOCKET s;
    DWORD err;
    int one = 1;
    UINT8 hello[8];
    HANDLE thread;

    if (emu_sock != INVALID_SOCKET)
    {
        return 0;
    }
    if (GetEnvironmentVariableA(EMU_ENV, value, sizeof(value)) == 0)
    {
        return ERROR_ENVVAR_NOT_FOUND;
    }
    colon = strrchr(value, ':');
    if (colon != NULL)
    {
        *colon = '\0';
        host = value;
        port = colon + 1;
    }
    else
    {
        port = value;
    }
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
    {
        return (DWORD)WSAGetLastError();
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
    {
        err = (DWORD)WSAGetLastError();
        emu_log("windivert-emu: " EMU_ENV "=%s:%s is not an address (error %lu)", host, port,
            err);
        return err == 0? WSAEINVAL: err;
    }
    s = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (s == INVALID_SOCKET || connect(s, res->ai_addr, (int)res->ai_addrlen) != 0)
    {
        err = (DWORD)WSAGetLastError();
        emu_log("windivert-emu: cannot connect to the relay at %s:%s (" EMU_ENV "): Winsock "
            "error %lu; is the relay running in this network namespace?", host, port, err);
        if (s != INVALID_SOCKET)
        {
            closesocket(s);
        }
        freeaddrinfo(res);
        return err;
    }
    freeaddrinfo(res);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof(one));
    EnterCriticalSection(&emu_send_lock);
    emu_sock = s;
    LeaveCriticalSection(&emu_send_lock);
    put32(hello, EMU_PROTOCOL);
    put32(hello + 4, GetCurrentProcessId());
    if (!emu_send_frame(MSG_HELLO, hello, 8, NULL, 0))
    {
        err = GetLastError();
        EnterCriticalSection(&emu_send_lock);
        emu_sock = INVALID_SOCKET;
        LeaveCriticalSection(&emu_send_lock);
        closesocket(s);
        return err;
    }
    thread = CreateThread(NULL, 0, emu_reader, (LPVOID)(ULONG_PTR)s, 0, NULL);
    if (thread == NULL)
    {
        return GetLastError();
    }
    CloseHandle(thread);
    emu_log("windivert-emu: connected to the relay at %s:%s", host, port);
    return 0;
}

/* ---- the device functions ----------------------------------------------------------------- */

HANDLE WinDivertOpen(const char *filter, WINDIVERT_LAYER layer, INT16 priority, UINT64 flags)
{
    const char *error = NULL;
    UINT error_pos = 0;
    wchar_t name[96];
    static LONG pipes = 0;
    emu_handle *h;
    DWORD err, mode = PIPE_READMODE_MESSAGE;
    size_t flen;
    UINT8 head[20];

    if (!emu_enabled())
    {
        return WinDivertDriverOpen(filter, layer, priority, flags);
    }
    /* The driver's parameter checks (WinDivertOpen in dll/windivert.c). */
    if (layer != WINDIVERT_LAYER_NETWORK && layer != WINDIVERT_LAYER_NETWORK_FORWARD)
    {
        if (layer == WINDIVERT_LAYER_FLOW || layer == WINDIVERT_LAYER_SOCKET ||
                layer == WINDIVERT_LAYER_REFLECT)
        {
            emu_log("windivert-emu: layer %d is not emulated", (int)layer);
            SetLastError(ERROR_NOT_SUPPORTED);
        }
        else
        {
            SetLastError(ERROR_INVALID_PARAMETER);
        }
        return INVALID_HANDLE_VALUE;
    }
    if (!WINDIVERT_FLAGS_VALID(flags) || priority < WINDIVERT_PRIORITY_MIN ||
            priority > WINDIVERT_PRIORITY_MAX || filter == NULL)
    {
        SetLastError(ERROR_INVALID_PARAMETER);
        return INVALID_HANDLE_VALUE;
    }
    /* The filter must compile as the driver's would (same compiler, same layer). */
    if (!WinDivertHelperCompileFilter(filter, layer, NULL, 0, &error, &error_pos))
    {
        emu_log("windivert-emu: filter refused at %u (%s): %s", error_pos,
            error != NULL? error: "?", filter);
        SetLastError(ERROR_INVALID_PARAMETER);
        return INVALID_HANDLE_VALUE;
    }

    EnterCriticalSection(&emu_lock);
    err = emu_connect();
    if (err != 0)
    {
        LeaveCriticalSection(&emu_lock);
        SetLastError(err);
        return INVALID_HANDLE_VALUE;
    }
    h = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, sizeof(emu_handle));
    flen = strlen(filter);
    if (h == NULL || (h->filter = HeapAlloc(GetProcessHeap(), 0, flen + 1)) == NULL)
    {
        LeaveCriticalSection(&emu_lock);
        SetLastError(ERROR_NOT_ENOUGH_MEMORY);
        return INVALID_HANDLE_VALUE;
    }
    memcpy(h->filter, filter, flen + 1);
    swprintf(name, sizeof(name) / sizeof(name[0]), L"\\\\.\\pipe\\windivert-emu-%lu-%ld",
        GetCurrentProcessId(), InterlockedIncrement(&pipes));
    h->wr = CreateNamedPipeW(name, PIPE_ACCESS_OUTBOUND | FILE_FLAG_FIRST_PIPE_INSTANCE,
        PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1,
        EMU_PIPE_BUFFER, 0, 0, NULL);
    h->rd = (h->wr == INVALID_HANDLE_VALUE)? INVALID_HANDLE_VALUE:
        CreateFileW(name, GENERIC_READ | FILE_WRITE_ATTRIBUTES, 0, NULL, OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED, NULL);
    if (h->rd == INVALID_HANDLE_VALUE || !SetNamedPipeHandleState(h->rd, &mode, NULL, NULL))
    {
        err = GetLastError();
        if (h->rd != INVALID_HANDLE_VALUE)
        {
            CloseHandle(h->rd);
        }
        if (h->wr != INVALID_HANDLE_VALUE)
        {
            CloseHandle(h->wr);
        }
        HeapFree(GetProcessHeap(), 0, h->filter);
        HeapFree(GetProcessHeap(), 0, h);
        LeaveCriticalSection(&emu_lock);
        SetLastError(err);
        return INVALID_HANDLE_VALUE;
    }
    h->id = ++emu_next_id;
    h->layer = layer;
    h->priority = priority;
    /* As the driver's windivert_context_priority: user priority above a per-open counter. */
    h->order = ((UINT32)((INT32)priority + WINDIVERT_PRIORITY_MAX) << 16) |
        (++emu_open_counter & 0xFFFF);
    h->flags = flags;
    h->queue_length = WINDIVERT_PARAM_QUEUE_LENGTH_DEFAULT;
    h->queue_time_ms = WINDIVERT_PARAM_QUEUE_TIME_DEFAULT;
    h->queue_size = WINDIVERT_PARAM_QUEUE_SIZE_DEFAULT;
    h->next = emu_handles;
    emu_handles = h;
    LeaveCriticalSection(&emu_lock);

    put64(head, h->id);
    head[8] = (UINT8)layer;
    head[9] = 0;
    put16(head + 10, (UINT16)priority);
    put64(head + 12, flags);
    emu_send_frame(MSG_OPEN, head, 20, (const UINT8 *)filter, (UINT)flen);
    emu_log("windivert-emu: handle %llu opened: layer %s, priority %d, flags %llu, filter %s",
        (unsigned long long)h->id, layer == WINDIVERT_LAYER_NETWORK? "network": "forward",
        (int)priority, (unsigned long long)flags, filter);
    return h->rd;
}

BOOL WinDivertRecvEx(HANDLE handle, PVOID pPacket, UINT packetLen, UINT *pRecvLen,
    UINT64 flags, PWINDIVERT_ADDRESS pAddr, UINT *pAddrLen, LPOVERLAPPED lpOverlapped)
{
    emu_handle *h;
    OVERLAPPED local, *ov = lpOverlapped;
    HANDLE rd, event = NULL;
    UINT cap;
    BOOL ok;
    DWORD err = 0, n = 0;

    EnterCriticalSection(&emu_lock);
    h = emu_find(handle);
    if (h == NULL)
    {
        LeaveCriticalSection(&emu_lock);
        return WinDivertDriverRecvEx(handle, pPacket, packetLen, pRecvLen, flags, pAddr,
            pAddrLen, lpOverlapped);
    }
    cap = (pAddrLen != NULL? *pAddrLen / sizeof(WINDIVERT_ADDRESS): 1);
    if (cap > WINDIVERT_BATCH_MAX)
    {
        cap = WINDIVERT_BATCH_MAX;
    }
    if (flags != 0 || cap == 0 || pPacket == NULL ||
            (h->flags & (WINDIVERT_FLAG_SEND_ONLY | WINDIVERT_FLAG_DROP)) != 0)
    {
        LeaveCriticalSection(&emu_lock);
        SetLastError(ERROR_INVALID_PARAMETER);
        return FALSE;
    }
    if (h->pending && emu_status(h->ov) == STATUS_PENDING)
    {
        /* The driver queues several receives; netnat keeps one in flight. */
        LeaveCriticalSection(&emu_lock);
        emu_log("windivert-emu: handle %llu: a second receive while one is pending is not "
            "emulated", (unsigned long long)h->id);
        SetLastError(ERROR_BUSY);
        return FALSE;
    }
    if (h->shutdown_recv && h->head == NULL && h->stranded == 0)
    {
        LeaveCriticalSection(&emu_lock);
        SetLastError(ERROR_NO_DATA);
        return FALSE;
    }
    if (ov == NULL)
    {
        memset(&local, 0, sizeof(local));
        event = CreateEventW(NULL, TRUE, FALSE, NULL);
        if (event == NULL)
        {
            LeaveCriticalSection(&emu_lock);
            return FALSE;
        }
        local.hEvent = event;
        ov = &local;
    }
    rd = h->rd;
    if (h->stranded > 0)
    {
        if (pAddr != NULL)
        {
            memcpy(pAddr, h->stranded_addrs, h->stranded * sizeof(WINDIVERT_ADDRESS));
        }
        if (pAddrLen != NULL)
        {
            *pAddrLen = h->stranded * sizeof(WINDIVERT_ADDRESS);
        }
        h->stranded = 0;
    }
    else
    {
        h->pending = TRUE;
        h->p_addr = pAddr;
        h->p_addr_len = pAddrLen;
        h->addr_cap = cap;
        h->buf_len = packetLen;
        h->ov = ov;
    }
    ok = ReadFile(rd, pPacket, packetLen, NULL, ov);
    if (!ok)
    {
        err = GetLastError();
        if (err == ERROR_IO_PENDING)
        {
            emu_deliver(h);
        }
        else
        {
            h->pending = FALSE;
        }
    }
    else
    {
        h->pending = FALSE;
    }
    LeaveCriticalSection(&emu_lock);

    if (lpOverlapped == NULL)
    {
        if (!ok && err != ERROR_IO_PENDING)
        {
            CloseHandle(event);
            SetLastError(err);
            return FALSE;
        }
        ok = GetOverlappedResult(rd, ov, &n, TRUE);
        err = ok? 0: GetLastError();
        CloseHandle(event);
        if (ok && pRecvLen != NULL)
        {
            *pRecvLen = n;
        }
        SetLastError(err);
        return ok;
    }
    if (ok)
    {
        if (pRecvLen != NULL)
        {
            *pRecvLen = (UINT)lpOverlapped->InternalHigh;
        }
        return TRUE;
    }
    SetLastError(err);
    return FALSE;
}

BOOL WinDivertRecv(HANDLE handle, PVOID pPacket, UINT packetLen, UINT *pRecvLen,
    PWINDIVERT_ADDRESS pAddr)
{
    EnterCriticalSection(&emu_lock);
    if (emu_find(handle) == NULL)
    {
        LeaveCriticalSection(&emu_lock);
        return WinDivertDriverRecv(handle, pPacket, packetLen, pRecvLen, pAddr);
    }
    LeaveCriticalSection(&emu_lock);
    return WinDivertRecvEx(handle, pPacket, packetLen, pRecvLen, 0, pAddr, NULL, NULL);
}

BOOL WinDivertSendEx(HANDLE handle, const VOID *pPacket, UINT packetLen, UINT *pSendLen,
    UINT64 flags, const WINDIVERT_ADDRESS *pAddr, UINT addrLen, LPOVERLAPPED lpOverlapped)
{
    emu_handle *h, *got;
    WINDIVERT_LAYER layer;
    UINT32 order;
    UINT64 id;
    UINT count, i, total = 0, left = packetLen, next_len = 0, len, checksums;
    const UINT8 *p = pPacket;
    PVOID next = NULL;
    UINT8 *copy, head[20];
    WINDIVERT_ADDRESS seen;
    int verdict;
    BOOL ok = TRUE;
    DWORD err = 0;

    EnterCriticalSection(&emu_lock);
    h = emu_find(handle);
    if (h == NULL)
    {
        LeaveCriticalSection(&emu_lock);
        return WinDivertDriverSendEx(handle, pPacket, packetLen, pSendLen, flags, pAddr,
            addrLen, lpOverlapped);
    }
    layer = h->layer;
    order = h->order;
    id = h->id;
    if (flags != 0 || pPacket == NULL || pAddr == NULL || addrLen < sizeof(WINDIVERT_ADDRESS) ||
            (h->flags & WINDIVERT_FLAG_RECV_ONLY) != 0 || h->shutdown_send)
    {
        LeaveCriticalSection(&emu_lock);
        SetLastError(ERROR_INVALID_PARAMETER);
        return FALSE;
    }
    LeaveCriticalSection(&emu_lock);

    copy = HeapAlloc(GetProcessHeap(), 0, WINDIVERT_MTU_MAX);
    if (copy == NULL)
    {
        SetLastError(ERROR_NOT_ENOUGH_MEMORY);
        return FALSE;
    }
    count = addrLen / sizeof(WINDIVERT_ADDRESS);
    for (i = 0; i < count && left > 0; i++)
    {
        if (!WinDivertHelperParsePacket(p, left, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, &next, &next_len))
        {
            err = ERROR_INVALID_PARAMETER;
            ok = FALSE;
            break;
        }
        len = left - next_len;
        memcpy(copy, p, len);
        /* As the driver (windivert_write): checksums whose flag is clear are computed. */
        if (pAddr[i].IPChecksum == 0 || pAddr[i].TCPChecksum == 0 || pAddr[i].UDPChecksum == 0)
        {
            checksums =
                (pAddr[i].IPChecksum == 0? 0: WINDIVERT_HELPER_NO_IP_CHECKSUM) |
                (pAddr[i].TCPChecksum == 0? 0: WINDIVERT_HELPER_NO_TCP_CHECKSUM) |
                (pAddr[i].UDPChecksum == 0? 0: WINDIVERT_HELPER_NO_UDP_CHECKSUM) |
                WINDIVERT_HELPER_NO_ICMP_CHECKSUM | WINDIVERT_HELPER_NO_ICMPV6_CHECKSUM;
            WinDivertHelperCalcChecksums(copy, len, NULL, checksums);
        }
        if (pAddr[i].Impostor && !WinDivertHelperDecrementTTL(copy, len))
        {
            err = ERROR_HOST_UNREACHABLE;
            ok = FALSE;
            p = next;
            left = next_len;
            continue;
        }
        /* Where the driver injects it, lower-priority handles of the layer see it again. */
        memset(&seen, 0, sizeof(seen));
        seen.Timestamp = emu_now();
        seen.Layer = layer;
        seen.Outbound = (layer == WINDIVERT_LAYER_NETWORK_FORWARD? 1: pAddr[i].Outbound);
        seen.IPv6 = (copy[0] >> 4) == 6;
        seen.IPChecksum = seen.TCPChecksum = seen.UDPChecksum = 1;
        seen.Network = pAddr[i].Network;
        got = NULL;
        EnterCriticalSection(&emu_lock);
        verdict = emu_classify(&seen, copy, len, order, &got);
        if (got != NULL)
        {
            emu_deliver(got);
        }
        LeaveCriticalSection(&emu_lock);
        if (verdict == VERDICT_PASS)
        {
            head[0] = (UINT8)layer;
            head[1] = (UINT8)seen.Outbound;
            put16(head + 2, 0);
            put32(head + 4, pAddr[i].Network.IfIdx);
            put32(head + 8, pAddr[i].Network.SubIfIdx);
            put64(head + 12, id);
            if (!emu_send_frame(MSG_INJECT, head, 20, copy, len))
            {
                err = GetLastError();
                ok = FALSE;
                break;
            }
        }
        total += len;
        p = next;
        left = next_len;
    }
    HeapFree(GetProcessHeap(), 0, copy);
    if (pSendLen != NULL)
    {
        *pSendLen = total;
    }
    if (lpOverlapped != NULL)
    {
        lpOverlapped->Internal = ok? 0: (ULONG_PTR)0xC0000001 /* STATUS_UNSUCCESSFUL */;
        lpOverlapped->InternalHigh = total;
        if (lpOverlapped->hEvent != NULL)
        {
            SetEvent(lpOverlapped->hEvent);
        }
    }
    if (!ok)
    {
        SetLastError(err);
    }
    return ok;
}

BOOL WinDivertSend(HANDLE handle, const VOID *pPacket, UINT packetLen, UINT *pSendLen,
    const WINDIVERT_ADDRESS *pAddr)
{
    EnterCriticalSection(&emu_lock);
    if (emu_find(handle) == NULL)
    {
        LeaveCriticalSection(&emu_lock);
        return WinDivertDriverSend(handle, pPacket, packetLen, pSendLen, pAddr);
    }
    LeaveCriticalSection(&emu_lock);
    return WinDivertSendEx(handle, pPacket, packetLen, pSendLen, 0, pAddr,
        sizeof(WINDIVERT_ADDRESS), NULL);
}

BOOL WinDivertShutdown(HANDLE handle, WINDIVERT_SHUTDOWN how)
{
    emu_handle *h;
    DWORD written;
    EnterCriticalSection(&emu_lock);
    h = emu_find(handle);
    if (h == NULL)
    {
        LeaveCriticalSection(&emu_lock);
        return WinDivertDriverShutdown(handle, how);
    }
    if ((how & ~WINDIVERT_SHUTDOWN_BOTH) != 0 || how == 0)
    {
        LeaveCriticalSection(&emu_lock);
        SetLastError(ERROR_INVALID_PARAMETER);
        return FALSE;
    }
    if ((how & WINDIVERT_SHUTDOWN_SEND) != 0)
    {
        h->shutdown_send = TRUE;
    }
    if ((how & WINDIVERT_SHUTDOWN_RECV) != 0)
    {
        h->shutdown_recv = TRUE;
        emu_deliver(h);
        if (h->pending && h->head == NULL &&
                emu_status(h->ov) == STATUS_PENDING)
        {
            /* The driver fails it with ERROR_NO_DATA; here it completes with 0 bytes. */
            h->pending = FALSE;
            WriteFile(h->wr, "", 0, &written, NULL);
        }
    }
    LeaveCriticalSection(&emu_lock);
    return TRUE;
}

BOOL WinDivertClose(HANDLE handle)
{
    emu_handle *h, **link;
    UINT8 head[8];
    EnterCriticalSection(&emu_lock);
    for (link = &emu_handles; *link != NULL && (*link)->rd != handle; link = &(*link)->next)
        ;
    h = *link;
    if (h == NULL)
    {
        LeaveCriticalSection(&emu_lock);
        return WinDivertDriverClose(handle);
    }
    *link = h->next;
    emu_free_queue(h);
    LeaveCriticalSection(&emu_lock);
    put64(head, h->id);
    emu_send_frame(MSG_CLOSE, head, 8, NULL, 0);
    emu_log("windivert-emu: handle %llu closed", (unsigned long long)h->id);
    CloseHandle(h->wr);
    CloseHandle(h->rd);
    HeapFree(GetProcessHeap(), 0, h->filter);
    HeapFree(GetProcessHeap(), 0, h);
    return TRUE;
}

BOOL WinDivertSetParam(HANDLE handle, WINDIVERT_PARAM param, UINT64 value)
{
    emu_handle *h;
    BOOL ok = TRUE;
    EnterCriticalSection(&emu_lock);
    h = emu_find(handle);
    if (h == NULL)
    {
        LeaveCriticalSection(&emu_lock);
        return WinDivertDriverSetParam(handle, param, value);
    }
    /* The driver's ranges (windivert.h). */
    switch (param)
    {
        case WINDIVERT_PARAM_QUEUE_LENGTH:
            ok = value >= WINDIVERT_PARAM_QUEUE_LENGTH_MIN &&
                value <= WINDIVERT_PARAM_QUEUE_LENGTH_MAX;
            if (ok) h->queue_length = value;
            break;
        case WINDIVERT_PARAM_QUEUE_TIME:
            ok = value >= WINDIVERT_PARAM_QUEUE_TIME_MIN &&
                value <= WINDIVERT_PARAM_QUEUE_TIME_MAX;
            if (ok) h->queue_time_ms = value;
            break;
        case WINDIVERT_PARAM_QUEUE_SIZE:
            ok = value >= WINDIVERT_PARAM_QUEUE_SIZE_MIN &&
                value <= WINDIVERT_PARAM_QUEUE_SIZE_MAX;
            if (ok) h->queue_size = value;
            break;
        default:
            ok = FALSE;
            break;
    }
    LeaveCriticalSection(&emu_lock);
    if (!ok)
    {
        SetLastError(ERROR_INVALID_PARAMETER);
    }
    return ok;
}

BOOL WinDivertGetParam(HANDLE handle, WINDIVERT_PARAM param, UINT64 *pValue)
{
    emu_handle *h;
    BOOL ok = TRUE;
    EnterCriticalSection(&emu_lock);
    h = emu_find(handle);
    if (h == NULL)
    {
        LeaveCriticalSection(&emu_lock);
        return WinDivertDriverGetParam(handle, param, pValue);
    }
    switch (param)
    {
        case WINDIVERT_PARAM_QUEUE_LENGTH: *pValue = h->queue_length; break;
        case WINDIVERT_PARAM_QUEUE_TIME:   *pValue = h->queue_time_ms; break;
        case WINDIVERT_PARAM_QUEUE_SIZE:   *pValue = h->queue_size; break;
        case WINDIVERT_PARAM_VERSION_MAJOR: *pValue = WINDIVERT_VERSION_MAJOR; break;
        case WINDIVERT_PARAM_VERSION_MINOR: *pValue = WINDIVERT_VERSION_MINOR; break;
        default: ok = FALSE; break;
    }
    LeaveCriticalSection(&emu_lock);
    if (!ok)
    {
        SetLastError(ERROR_INVALID_PARAMETER);
    }
    return ok;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    char value[8];
    if (reason == DLL_PROCESS_ATTACH)
    {
        InitializeCriticalSection(&emu_lock);
        InitializeCriticalSection(&emu_send_lock);
        QueryPerformanceFrequency(&emu_qpf);
        emu_debug = GetEnvironmentVariableA(EMU_ENV_DEBUG, value, sizeof(value)) != 0;
    }
    /* WinDivert's own entry: the per-thread event its device I/O (used without the emulator)
     * needs. */
    return WinDivertDllEntry(instance, reason, reserved);
}
